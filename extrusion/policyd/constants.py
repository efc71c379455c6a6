"""Hard protocol facts of the Postfix policy delegation protocol and the replies we send.

User-tunable values (limits, timeouts, addresses) live in `extrusion.config`;
what is fixed by Postfix's SMTPD_POLICY_README and access(5) lives here.
"""

from __future__ import annotations

from typing import Final

#: The only request type the Postfix SMTP server sends (`request=smtpd_access_policy`).
POLICY_REQUEST: Final = "smtpd_access_policy"

#: A request is name=value lines ended by an empty line; the reply is one
#: `action=...` line ended by an empty line.
LINE_END: Final = b"\n"
REPLY_TEMPLATE: Final = "action={}\n\n"

# access(5) actions we answer with.
DUNNO: Final = "DUNNO"
DEFER_IF_PERMIT: Final = "DEFER_IF_PERMIT"
HOLD: Final = "HOLD"
REJECT: Final = "REJECT"
INFO: Final = "INFO"  # logged by Postfix with the queue id and helo=<…>, then like DUNNO

# Enhanced status codes (RFC 3463) used when the engine's decision carries
# none of the right class: 4.7.1 / 5.7.1 "delivery not authorized".
TEMPFAIL_ENHANCED: Final = "4.7.1"
REJECT_ENHANCED: Final = "5.7.1"

#: Actions an operator may configure as `[policyd] default_action` (the
#: answer when the engine cannot be asked). A subset of access(5) that makes
#: sense without knowing the request.
DEFAULT_ACTION_VERBS: Final = frozenset(
    {"DUNNO", "OK", "DEFER_IF_PERMIT", "DEFER_IF_REJECT", "DEFER", "HOLD", "REJECT", "WARN"}
)

#: `protocol_state` values as Postfix sends them (upper case).
STATE_CONNECT: Final = "CONNECT"
STATE_EHLO: Final = "EHLO"
STATE_HELO: Final = "HELO"
STATE_MAIL: Final = "MAIL"
STATE_RCPT: Final = "RCPT"
STATE_DATA: Final = "DATA"
STATE_EOM: Final = "END-OF-MESSAGE"

#: Longest reply text we send; Postfix truncates SMTP replies anyway and a
#: short text keeps the reply line well under smtpd's line limits.
MAX_REPLY_TEXT: Final = 200
