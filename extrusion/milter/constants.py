"""Protocol constants of the milter: SMTP replies, macro names, headers, input bounds.

User-tunable values live in `extrusion.config.MilterSection`; what is here is fixed
by the SMTP and milter protocols or by how much hostile input we agree to hold.
"""

from __future__ import annotations

MILTER_NAME = "extrusion"

# --- SMTP replies (RFC 5321 codes, RFC 3463 enhanced codes) --------------------------------

TEMPFAIL_CODE = 451
TEMPFAIL_ENHANCED = "4.7.1"
TEMPFAIL_TEXT = "Too much mail from you, try again later"
REJECT_CODE = 550
REJECT_ENHANCED = "5.7.1"
REJECT_TEXT = "Mail from you is refused, contact your provider"
# When the engine cannot answer and on_error = "tempfail": a local problem (4.3.0).
ERROR_CODE = 451
ERROR_ENHANCED = "4.3.0"
ERROR_TEXT = "Temporary local problem, try again later"
# Reply text the client sees is cut to this many characters (one SMTP line stays < 512).
MAX_REPLY_TEXT = 200

# --- macros ----------------------------------------------------------------------------------
# Requested per stage through milter negotiation (SETSYMLIST); the Postfix
# `milter_*_macros` lines that send the same are in extrusion/milter/adapter.py.

MACRO_CLIENT_ADDR = "{client_addr}"  # connect: when the MTA gives no socket address
MACRO_AUTH_AUTHEN = "{auth_authen}"  # MAIL: SASL login name, the sender key
MACRO_QUEUE_ID = "i"  # MAIL (Sendmail) and end of message (Postfix)
MACRO_HELO = "s"  # MAIL: Sendmail's copy of the HELO argument
NO_QUEUE_ID = "NOQUEUE"  # prefix of the id made up when the MTA sends none
MAX_MACROS_PER_STAGE = 5  # libmilter's limit for a negotiated macro list

# --- headers the heuristics read (everything else, and the body, is never kept) -------------

HEADER_FIELDS = {
    "auto-submitted": "auto_submitted",
    "precedence": "precedence",
    "list-id": "list_id",
    "list-unsubscribe": "list_unsubscribe",
    "x-spam-flag": "x_spam_flag",
    "x-spam-status": "x_spam_status",
    "x-spam": "x_spam",
    "x-spamd-result": "x_spamd_result",
    "x-rspamd-action": "x_rspamd_action",
}
HEADER_RECEIVED = "received"
HEADER_MESSAGE_ID = "message-id"
HEADER_EXTRUSION = "X-Extrusion"

# --- bounds on what one SMTP session may make us hold -----------------------------------------

MAX_HELOS = 10  # HELO/EHLO arguments kept per session (the first ones, in order)
MAX_JUDGEMENTS = 64  # times one session's HELOs are sent to the engine to judge, at most
MAX_JUDGED_DOMAINS = 100  # recipient domains a HELO is compared with (as scoring/helo.py)
MAX_HELO_CHARS = 252  # a host name is at most 255 octets; 252 + "..." fits the column
# A value cut at one of these limits gets "..." after it; with the marker it still fits
# the store's column (schema ADDR_LEN / HOST_LEN), so the store never cuts it again.
MAX_ADDRESS_CHARS = 317  # 64 local part + @ + 255 domain, less the marker
MAX_RECIPIENTS = 1000  # Postfix's smtpd_recipient_limit default
MAX_HEADER_CHARS = 256  # per kept header value
MAX_NAME_CHARS = 252  # client host name, SASL user, queue id, HELO (255 less the marker)
