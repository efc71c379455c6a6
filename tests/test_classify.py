"""Outcome classification against real replies of the big providers and of common MTAs.

The reply texts are as the providers publish them or as they appear in
bounces and MTA logs (addresses and IPs replaced by documentation values);
the comment on each group says where the wording comes from.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from extrusion.scoring.classify import (
    MAX_REPLY_CHARS,
    RULES,
    OutcomeClass,
    classify,
    is_failure,
)
from extrusion.scoring.events import Status

C = OutcomeClass
B = Status.BOUNCED

# (id, status, dsn, reply, expected)
REAL_REPLIES = [
    # --- Gmail (support.google.com "SMTP errors and codes", bounces) -------------------------
    ("gmail-no-such-user", B, "5.1.1",
     "host gmail-smtp-in.l.google.com[142.250.1.26] said: 550-5.1.1 The email account that "
     "you tried to reach does not exist. Please try\n550-5.1.1 double-checking the recipient's "
     "email address for typos or\n550-5.1.1 unnecessary spaces. Learn more at\n550 5.1.1 "
     "https://support.google.com/mail/?p=NoSuchUser d2e1a72fcca58-70d1a2b3c4si123.45 - gsmtp "
     "(in reply to RCPT TO command)", C.UNKNOWN_USER),
    ("gmail-disabled", B, "5.2.1",
     "550-5.2.1 The email account that you tried to reach is disabled. Learn more at\n"
     "550 5.2.1 https://support.google.com/mail/?p=DisabledUser - gsmtp", C.UNKNOWN_USER),
    ("gmail-unsolicited", B, "5.7.1",
     "550-5.7.1 [192.0.2.25] Our system has detected that this message is\n550-5.7.1 likely "
     "unsolicited mail. To reduce the amount of spam sent to Gmail,\n550-5.7.1 this message has "
     "been blocked. Please visit\n550 5.7.1 https://support.google.com/mail/?p=UnsolicitedMessageError"
     " - gsmtp", C.SPAM_POLICY),
    ("gmail-unusual-rate", B, "5.7.1",
     "550 5.7.1 Our system has detected an unusual rate of unsolicited mail originating from "
     "your IP address. To protect our users from spam, mail sent from your IP address has been "
     "blocked. Review https://support.google.com/mail/answer/81126", C.SPAM_POLICY),
    ("gmail-unauthenticated", B, "5.7.26",
     "550-5.7.26 This mail has been blocked because the sender is unauthenticated. Gmail "
     "requires all senders to authenticate with either SPF or DKIM. - gsmtp", C.SPAM_POLICY),
    ("gmail-security-issue", B, "5.7.0",
     "552-5.7.0 This message was blocked because its content presents a potential\n552-5.7.0 "
     "security issue. Please visit\n552-5.7.0  https://support.google.com/mail/?p=BlockedMessage "
     "to review our\n552 5.7.0 message content and attachment content guidelines. - gsmtp",
     C.VIRUS),
    ("gmail-illegal-attachment", B, "5.7.0",
     "552-5.7.0 Our system detected an illegal attachment on your message. Please\n552-5.7.0 "
     "visit https://support.google.com/mail/?p=BlockedMessage to review our\n552 5.7.0 "
     "attachment guidelines. - gsmtp", C.VIRUS),
    ("gmail-over-quota", B, "5.2.2",
     "552-5.2.2 The email account that you tried to reach is over quota. Please direct\n"
     "552 5.2.2 the recipient to https://support.google.com/mail/?p=OverQuotaPerm - gsmtp",
     C.MAILBOX_FULL),
    ("gmail-over-quota-temporary-expired", Status.EXPIRED, "4.2.2",
     "452-4.2.2 The email account that you tried to reach is over quota. Please direct\n"
     "452 4.2.2 the recipient to https://support.google.com/mail/?p=OverQuotaTemp - gsmtp",
     C.MAILBOX_FULL),
    ("gmail-rate-limited-expired", Status.EXPIRED, "4.7.28",
     "421-4.7.28 [192.0.2.25] Our system has detected an unusual rate of unsolicited mail "
     "originating from your IP address. To protect our users from spam, mail sent from your IP "
     "address has been temporarily rate limited. - gsmtp", C.SPAM_POLICY),
    # --- Microsoft: Outlook.com / Hotmail and Exchange Online --------------------------------
    ("outlook-mailbox-unavailable", B, "5.5.0",
     "550 5.5.0 Requested action not taken: mailbox unavailable (S2017062302). "
     "[HE1EUR01FT020.eop-EUR01.prod.protection.outlook.com 2023-09-19T15:05:34.324Z "
     "08DBB71928CA8F8E]", C.UNKNOWN_USER),
    ("o365-recipient-not-found", B, "5.1.10",
     "550 5.1.10 RESOLVER.ADR.RecipientNotFound; Recipient user@company.example not found by "
     "SMTP address lookup", C.UNKNOWN_USER),
    ("o365-access-denied", B, "5.4.1",
     "host company-com.mail.protection.outlook.com[52.101.40.6] said: 550 5.4.1 Recipient "
     "address rejected: Access denied. [CY4PEPF0000EE3C.namprd03.prod.outlook.com "
     "2023-09-18T12:48:32.808Z 08DBB45899852BA7] (in reply to RCPT TO command)", C.UNKNOWN_USER),
    ("outlook-s3150-block-list", B, "5.7.1",
     "550 5.7.1 Unfortunately, messages from [192.0.2.25] weren't sent. Please contact your "
     "Internet service provider since part of their network is on our block list (S3150). You "
     "can also refer your provider to http://mail.live.com/mail/troubleshooting.aspx#errors.",
     C.SPAM_POLICY),
    ("hotmail-sc001-block-list", B, "5.0.0",
     "550 SC-001 (COL0-MC4-F44) Unfortunately, messages from 192.0.2.25 weren't sent. Please "
     "contact your Internet service provider since part of their network is on our block list. "
     "You can also refer your provider to http://mail.live.com/mail/troubleshooting.aspx#errors.",
     C.SPAM_POLICY),
    ("o365-banned-sending-ip", B, "5.7.606",
     "550 5.7.606 Access denied, banned sending IP [192.0.2.25]. To request removal from this "
     "list please visit https://sender.office.com/ and follow the directions.", C.SPAM_POLICY),
    ("exchange-mailbox-full", B, "5.2.2",
     "554 5.2.2 mailbox full; STOREDRV.Deliver.Exception:QuotaExceededException."
     "MapiExceptionShutoffQuotaExceeded; Failed to process message due to a permanent exception",
     C.MAILBOX_FULL),
    # --- Yahoo / AOL (help.yahoo.com, postmaster.yahooinc.com error codes) ------------------
    ("yahoo-no-account", B, "5.0.0",
     "554 delivery error: dd This user doesn't have a yahoo.com account (0930456496@yahoo.com) "
     "[0] - mta1234.mail.gq1.yahoo.com", C.UNKNOWN_USER),
    ("yahoo-tw-no-account", B, "5.0.0",
     "554 delivery error: dd This user doesn't have a yahoo.com.tw account "
     "(peter548@yahoo.com.tw) [-5] - mta1022.mail.tw.yahoo.com", C.UNKNOWN_USER),
    ("yahoo-no-longer-valid", B, "5.0.0",
     "554 delivery error: dd kwntefsqhi@yahoo.com is no longer valid. [-20] - "
     "mta4012.mail.bf1.yahoo.com", C.UNKNOWN_USER),
    ("yahoo-over-quota", B, "5.0.0",
     "554 delivery error: dd Sorry, your message to jo@yahoo.com cannot be delivered. This "
     "account is over quota.", C.MAILBOX_FULL),
    ("yahoo-tss09", B, "5.7.2",
     "553 5.7.2 [TSS09] All messages from 192.0.2.25 will be permanently deferred; Retrying "
     "will NOT succeed. See https://postmaster.yahooinc.com/error-codes", C.SPAM_POLICY),
    ("yahoo-policy", B, "5.7.9",
     "554 5.7.9 Message not accepted for policy reasons.  See "
     "https://postmaster.yahooinc.com/error-codes", C.SPAM_POLICY),
    ("yahoo-bl21-spamhaus", B, "5.7.1",
     "553 5.7.1 [BL21] Connections will not be accepted from 192.0.2.25, because the ip is in "
     "Spamhaus's list; see http://postmaster.yahoo.com/550-bl23.html", C.SPAM_POLICY),
    ("aol-mailbox-disabled", B, "5.0.0",
     "554 30 Sorry, your message to jo@aol.jp cannot be delivered. This mailbox is disabled "
     "(554.30)", C.UNKNOWN_USER),
    ("aol-mailbox-not-found", B, "5.0.0", "550 MAILBOX NOT FOUND", C.UNKNOWN_USER),
    # --- Postfix's own messages and Postfix-run receivers ------------------------------------
    ("postfix-no-such-domain", B, "5.4.4",
     "Host or domain name not found. Name service error for name=fdf.sdfads type=A: Host not "
     "found", C.NO_SUCH_DOMAIN),
    ("postfix-no-such-domain-mx", B, "5.4.4",
     "Host or domain name not found. Name service error for name=ms.cy.edw.tw type=MX: Host not "
     "found", C.NO_SUCH_DOMAIN),
    ("postfix-virtual-mailbox", B, "5.1.1",
     "host mx.example.net[192.0.2.1] said: 550 5.1.1 <jo@example.net>: Recipient address "
     "rejected: User unknown in virtual mailbox table (in reply to RCPT TO command)",
     C.UNKNOWN_USER),
    ("postfix-local-recipient", B, "5.1.1",
     "host mx.example.net[192.0.2.1] said: 550 5.1.1 <jo@example.net>: Recipient address "
     "rejected: User unknown in local recipient table (in reply to RCPT TO command)",
     C.UNKNOWN_USER),
    ("postfix-null-mx", B, "5.1.10",
     "Domain example.com does not accept mail (nullMX)", C.NO_SUCH_DOMAIN),
    ("postfix-relay-denied", B, "5.7.1",
     "host mx.example.net[192.0.2.1] said: 554 5.7.1 <jo@example.net>: Relay access denied "
     "(in reply to RCPT TO command)", C.OTHER_PERMANENT),
    ("postfix-loop", B, "5.4.6", "mail for example.org loops back to myself", C.OTHER_PERMANENT),
    ("postfix-recipient-domain", Status.REJECTED, "5.1.2",
     "550 5.1.2 <jo@fdf.sdfads>: Recipient address rejected: Domain not found", C.NO_SUCH_DOMAIN),
    ("postfix-sender-domain", Status.REJECTED, "5.1.8",
     "550 5.1.8 <kijitora@example.jp>: Sender address rejected: Domain not found",
     C.OTHER_PERMANENT),
    ("spamhaus-zen", B, "5.7.1",
     "host mx.example.net[192.0.2.1] said: 554 5.7.1 Service unavailable; Client host "
     "[192.0.2.25] blocked using zen.spamhaus.org; https://www.spamhaus.org/query/ip/192.0.2.25 "
     "(in reply to RCPT TO command)", C.SPAM_POLICY),
    ("manitu-dnsbl", B, "5.7.1",
     "554 5.7.1 Service unavailable; Client host [192.0.2.25] blocked using ix.dnsbl.manitu.net",
     C.SPAM_POLICY),
    ("barracuda-user-unknown", B, "5.1.1",
     "550 cuda_nsu 5.1.1 <email@example.com> Recipient address rejected: User unknown",
     C.UNKNOWN_USER),
    ("barracuda-no-such-user", B, "", "550 No such user (email@example.com)", C.UNKNOWN_USER),
    ("att-addressee-unknown", B, "5.2.1",
     "550 5.2.1 <EXAMPLE@PRODIGY.NET>... Addressee unknown, relay=[192.0.2.25]",
     C.UNKNOWN_USER),
    # --- Exim, qmail, Domino, amavisd ----------------------------------------------------------
    ("exim-unrouteable-remote", B, "5.0.0", "550 Unrouteable address", C.UNKNOWN_USER),
    ("exim-unrouteable-local", B, "", "Unrouteable address", C.NO_SUCH_DOMAIN),
    ("cpanel-no-such-user", B, "5.0.0", "550 No Such User Here", C.UNKNOWN_USER),
    ("exim-clamav-virus", B, "5.0.0",
     "550 This message contains a virus or other harmful content (Eicar-Test-Signature)",
     C.VIRUS),
    ("rspamd-virus-over-5.7.1", B, "5.7.1",
     "554 5.7.1 This message contains a virus and has been rejected.", C.VIRUS),
    ("amavis-infected", B, "5.7.0",
     "554 5.7.0 Reject, id=07554-01 - INFECTED: Eicar-Test-Signature", C.VIRUS),
    ("amavis-bad-header", B, "5.0.0",
     "554 (Reject, id=18169-17 - BAD_HEADER: Header field occurs more than once: \"Cc\" occurs "
     "5 times)", C.OTHER_PERMANENT),
    ("clamav-phishing-heuristic", B, "5.0.0",
     "550 Message contained unsafe content (Heuristics.Phishing.Email.SpoofedDomain)", C.VIRUS),
    ("qmail-no-mailbox", B, "5.1.1",
     "554 Sorry, no mailbox here by that name. (#5.1.1)", C.UNKNOWN_USER),
    ("domino-directory", B, "5.1.1",
     "550 5.1.1 User jo@example.com not listed in Domino Directory", C.UNKNOWN_USER),
    ("depot-over-quota", B, "5.0.0",
     "500 5.0.0 Depot returns error: <552 5.2.2 Over quota>", C.MAILBOX_FULL),
    ("content-filter-spam", B, "5.7.1",
     "550 5.7.1 Message rejected as spam by Content Filtering", C.SPAM_POLICY),
    ("domain-blacklist", B, "5.0.0", "551 Sender is on domain's blacklist", C.SPAM_POLICY),
    ("compuserve-reverse-dns", B, "5.0.0",
     "554 Refused. Your reverse DNS entry contains your IP address and a country code.",
     C.SPAM_POLICY),
    # --- GMX / WEB.DE / T-Online / freenet -----------------------------------------------------
    ("gmx-mailbox-unavailable", B, "5.0.0",
     "550 <jo@gmx.de>: Requested action not taken: mailbox unavailable", C.UNKNOWN_USER),
    ("gmx-user-is-unknown", B, "5.1.1", "550 5.1.1 <jo@gmx.de>... User is unknown",
     C.UNKNOWN_USER),
    ("gmx-block-listed", B, "5.0.0",
     "554-gmx.net (mxgmx104) Nemesis ESMTP Service not available\n554-No SMTP service\n"
     "554-IP address is block listed.\n554 For explanation visit https://postmaster.gmx.net/en/"
     "case?c=r0201&i=ip&v=198.51.100.42&r=1MNcgj-1ue23t3pyV-00S2YR", C.SPAM_POLICY),
    ("gmx-spf-policy", B, "5.0.0",
     "550 <jo@gmx.de>: Reject due to SPF policy. The originating IP of the message is not "
     "permitted by the domain owner", C.SPAM_POLICY),
    ("webde-storage", B, "5.0.0",
     "550 Benutzer hat das Speichervolumen ueberschritten. / User has exhausted allowed storage "
     "space.", C.MAILBOX_FULL),
    ("webde-too-many-messages", B, "5.0.0",
     "550 Benutzer hat zuviele Mails auf dem Server. / User has too many messages on the server.",
     C.MAILBOX_FULL),
    ("webde-unknown-local-part", B, "5.0.0",
     "550 Unknown local part jo in <jo@web.de>", C.UNKNOWN_USER),
    ("tonline-storage-quota", B, "5.2.2", "552 5.2.2 Over STORAGE quota", C.MAILBOX_FULL),
    ("freenet-unrouteable", B, "5.0.0", "550 unrouteable address", C.UNKNOWN_USER),
    # --- Orange / La Poste (OFR and LPN codes) -------------------------------------------------
    ("orange-invalid-recipient", B, "5.1.1",
     "550 5.1.1 Adresse d au moins un destinataire invalide. Invalid recipient. OFR_416 [416] "
     "(in reply to RCPT TO command)", C.UNKNOWN_USER),
    ("orange-overquota-despite-5.1.1", B, "5.1.1",
     "552 5.1.1 Boite du destinataire pleine. Recipient overquota. OFR_417 [417] (in reply to "
     "RCPT TO command)", C.MAILBOX_FULL),
    ("orange-ip-blocked-spam", B, "5.0.0",
     "550 mwinf5c04 ME Adresse IP source bloquee pour incident de spam. Client host blocked for "
     "spamming issues. OFR006_102 Ref http://csi.cloudmark.com", C.SPAM_POLICY),
    ("laposte-account-blocked", B, "5.5.0",
     "550 5.5.0 Le compte du destinataire est bloque. The recipient account isblocked. "
     "LPN007_426 (in reply to RCPT TO command)", C.UNKNOWN_USER),
    # --- Comcast ---------------------------------------------------------------------------------
    ("comcast-not-our-customer", B, "5.1.1", "550 5.1.1 <jo@comcast.net> Not our Customer",
     C.UNKNOWN_USER),
    ("comcast-block-for-spam", B, "5.0.0",
     "554 resimta-ch2-18v.sys.comcast.net comcast 192.0.2.25 Comcast block for spam. Please see "
     "http://postmaster.comcast.net/smtp-error-codes.php#BL000000", C.SPAM_POLICY),
    # --- iCloud --------------------------------------------------------------------------------
    ("icloud-user-does-not-exist", B, "5.1.1", "550 5.1.1 <jo@icloud.com>: user does not exist",
     C.UNKNOWN_USER),
    ("icloud-inactive", B, "5.1.1",
     "550 5.1.1 <jo@icloud.com>: inactive email address (in reply to RCPT TO command)",
     C.UNKNOWN_USER),
    ("icloud-over-quota", B, "5.2.2",
     "552 5.2.2 <jo@icloud.com>: user is over quota (in reply to RCPT TO command)",
     C.MAILBOX_FULL),
    ("icloud-local-policy", B, "5.7.1",
     "550 5.7.1 [CS01] Message rejected due to local policy. Please visit "
     "https://support.apple.com/en-us/HT204137", C.SPAM_POLICY),
    ("icloud-proofpoint-blocked", B, "5.7.0",
     "550 5.7.0 Blocked - see https://support.proofpoint.com/dnsbl-lookup.cgi?ip=192.0.2.25",
     C.SPAM_POLICY),
]

# Replies that are temporary while the MTA still retries (status deferred, or a 4xx at RCPT).
TEMPORARY_REPLIES = [
    ("gmail-rate-limited", Status.DEFERRED, "4.7.28",
     "421-4.7.28 [192.0.2.25] Our system has detected an unusual rate of unsolicited mail "
     "originating from your IP address. - gsmtp"),
    ("gmail-over-quota-temp", Status.DEFERRED, "4.2.2",
     "452-4.2.2 The email account that you tried to reach is over quota. - gsmtp"),
    ("yahoo-tss04", Status.DEFERRED, "4.7.0",
     "421 4.7.0 [TSS04] Messages from 192.0.2.25 temporarily deferred due to unexpected volume "
     "or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes"),
    ("outlook-ip-reputation", Status.DEFERRED, "4.7.650",
     "451 4.7.650 The mail server [192.0.2.5] has been temporarily rate limited due to IP "
     "reputation. For e-mail delivery information, see https://postmaster.live.com (S775)"),
    ("icloud-excessive-volume", Status.DEFERRED, "4.7.1",
     "421 4.7.1 Messages to jo@icloud.com deferred due to excessive volume. Try again later - "
     "https://support.apple.com/en-us/HT204137"),
    ("postfix-dns-try-again", Status.DEFERRED, "4.4.3",
     "Host or domain name not found. Name service error for name=example.com type=MX: Host not "
     "found, try again"),
    ("postgrey", Status.REJECTED, "4.2.0",
     "450 4.2.0 <jo@example.net>: Recipient address rejected: Greylisted, see "
     "http://postgrey.schweikert.ch/help/example.net.html"),
    ("rdns-missing-at-rcpt", Status.REJECTED, "",
     "450 4.7.1 Client host rejected: cannot find your hostname, [192.0.2.25]"),
    ("deferred-even-with-5xx-text", Status.DEFERRED, "5.1.1",
     "550 5.1.1 <jo@example.net>: Recipient address rejected: User unknown"),
]


def test_the_real_reply_table_is_large() -> None:
    assert len(REAL_REPLIES) >= 40


@pytest.mark.parametrize(
    ("status", "dsn", "reply", "expected"),
    [pytest.param(s, d, r, e, id=i) for i, s, d, r, e in REAL_REPLIES],
)
def test_real_replies(status: Status, dsn: str, reply: str, expected: OutcomeClass) -> None:
    assert classify(status, dsn, reply) is expected


@pytest.mark.parametrize(
    ("status", "dsn", "reply"),
    [pytest.param(s, d, r, id=i) for i, s, d, r in TEMPORARY_REPLIES],
)
def test_temporary_while_the_mta_retries(status: Status, dsn: str, reply: str) -> None:
    assert classify(status, dsn, reply) is OutcomeClass.TEMPORARY


@pytest.mark.parametrize(
    "reply",
    [
        "250 2.0.0 OK  1716812345 d2e1a72fcca58-70d1a2b3c4si123.45 - gsmtp",
        # amavisd's own hop: a discarded virus is logged status=sent by Postfix
        "250 2.7.0 Ok, discarded, id=07554-01 - INFECTED: Eicar-Test-Signature",
        "550 5.1.1 User unknown",
        "",
    ],
)
def test_sent_is_delivered_whatever_the_text(reply: str) -> None:
    assert classify(Status.SENT, "2.0.0", reply) is OutcomeClass.DELIVERED


@pytest.mark.parametrize(
    ("dsn", "expected"),
    [
        ("5.1.1", C.UNKNOWN_USER),
        ("5.1.6", C.UNKNOWN_USER),
        ("5.2.1", C.UNKNOWN_USER),
        ("5.1.2", C.NO_SUCH_DOMAIN),
        ("5.4.4", C.NO_SUCH_DOMAIN),
        ("5.1.10", C.NO_SUCH_DOMAIN),
        ("5.2.2", C.MAILBOX_FULL),
        ("4.2.2", C.MAILBOX_FULL),  # a full mailbox that finally bounced
        ("5.7.1", C.SPAM_POLICY),
        ("5.7.606", C.SPAM_POLICY),
        ("5.1.8", C.OTHER_PERMANENT),
        ("5.0.0", C.OTHER_PERMANENT),
        ("5.3.4", C.OTHER_PERMANENT),
        ("", C.OTHER_PERMANENT),
        ("garbage", C.OTHER_PERMANENT),
        ("5.1.1.1", C.OTHER_PERMANENT),  # not an enhanced code
    ],
)
def test_the_code_decides_when_the_text_says_nothing(dsn: str, expected: OutcomeClass) -> None:
    assert classify(Status.BOUNCED, dsn, "") is expected


def test_code_in_the_reply_is_used_when_the_dsn_is_generic() -> None:
    # Postfix logs dsn=5.0.0 when it found no enhanced code of its own.
    assert classify(Status.BOUNCED, "5.0.0", "550 5.1.1 no thanks") is C.UNKNOWN_USER
    assert classify(Status.BOUNCED, "", "550 5.2.2 no room") is C.MAILBOX_FULL


def test_an_ip_address_is_not_an_enhanced_code() -> None:
    # 10.5.1.1 must not read as 5.1.1
    assert classify(Status.BOUNCED, "", "550 rejected for 10.5.1.1") is C.OTHER_PERMANENT


def test_virus_and_spam_text_win_over_a_generic_code() -> None:
    assert classify(Status.BOUNCED, "5.7.1", "550 5.7.1 infected with W32/Mydoom") is C.VIRUS
    assert classify(Status.BOUNCED, "5.1.1", "550 5.1.1 blocked using bl.spamcop.net") is (
        C.SPAM_POLICY
    )


def test_host_names_in_the_log_text_do_not_count_as_words() -> None:
    timed_out = "connect to spamfilter.example.net[192.0.2.9]:25: Connection timed out"
    assert classify(Status.EXPIRED, "4.4.1", timed_out) is C.OTHER_PERMANENT
    said = (
        "host spam.example.net[192.0.2.9] said: 550 5.1.1 <jo@example.net>: Recipient address "
        "rejected: User unknown (in reply to RCPT TO command)"
    )
    assert classify(Status.BOUNCED, "5.1.1", said) is C.UNKNOWN_USER


def test_rejected_with_a_permanent_code_is_classified() -> None:
    reply = "554 5.7.1 Service unavailable; Client host [192.0.2.25] blocked using zen.spamhaus.org"
    assert classify(Status.REJECTED, "5.7.1", reply) is C.SPAM_POLICY


def test_expired_without_a_reason_is_a_permanent_failure() -> None:
    assert classify(Status.EXPIRED, "", "") is C.OTHER_PERMANENT
    assert is_failure(classify(Status.EXPIRED, "4.4.1", "Connection refused"))


def test_an_unknown_status_is_not_counted() -> None:
    assert classify("queued", "5.1.1", "550 5.1.1 user unknown") is C.TEMPORARY  # type: ignore[arg-type]


def test_matching_is_case_insensitive() -> None:
    assert classify(Status.BOUNCED, "", "550 USER UNKNOWN") is C.UNKNOWN_USER
    assert classify(Status.BOUNCED, "", "550 Blocked Using ZEN.SPAMHAUS.ORG") is C.SPAM_POLICY


@pytest.mark.parametrize(
    ("cls", "failure"),
    [
        (C.DELIVERED, False),
        (C.TEMPORARY, False),
        (C.UNKNOWN_USER, True),
        (C.NO_SUCH_DOMAIN, True),
        (C.SPAM_POLICY, True),
        (C.VIRUS, True),
        (C.MAILBOX_FULL, True),
        (C.OTHER_PERMANENT, True),
    ],
)
def test_is_failure(cls: OutcomeClass, failure: bool) -> None:
    assert is_failure(cls) is failure


def test_every_rule_can_match_something() -> None:
    assert all(rule.phrases or rule.code is not None for rule in RULES)


def test_every_anchor_is_lower_case_text_its_pattern_requires() -> None:
    # The anchor gates the regex, so it must be literal text of the pattern
    # (a typo would silently disable the phrase) and lower-case like the reply.
    for rule in RULES:
        for phrase in rule.phrases:
            assert phrase.anchor and phrase.anchor == phrase.anchor.lower()
            if phrase.regex is not None:
                assert phrase.anchor in phrase.regex.pattern, phrase


def test_a_huge_reply_is_cut_before_matching() -> None:
    # The phrase sits beyond the bound, so only the code is seen.
    reply = "550 5.7.1 " + "x" * (MAX_REPLY_CHARS * 500) + " user unknown"
    assert classify(Status.BOUNCED, "", reply) is C.SPAM_POLICY


@settings(max_examples=300, deadline=None)
@given(
    status=st.sampled_from(list(Status)),
    dsn=st.text(max_size=20),
    reply=st.text(max_size=600),
)
def test_never_raises_on_arbitrary_text(status: Status, dsn: str, reply: str) -> None:
    result = classify(status, dsn, reply)
    assert isinstance(result, OutcomeClass)
    if status is Status.SENT:
        assert result is C.DELIVERED
    if status is Status.DEFERRED:
        assert result is C.TEMPORARY
    if status in (Status.BOUNCED, Status.EXPIRED):
        assert is_failure(result)


@settings(max_examples=200, deadline=None)
@given(reply=st.binary(max_size=400).map(lambda b: b.decode("utf-8", "surrogateescape")))
def test_never_raises_on_undecodable_bytes(reply: str) -> None:
    assert is_failure(classify(Status.BOUNCED, "", reply))
