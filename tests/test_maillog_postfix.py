"""Postfix log lines to records: every kind of line the feed reads, and the ones it must not."""

from __future__ import annotations

import pytest

from extrusion.maillog import postfix
from extrusion.maillog.feed import _choose_parser
from extrusion.maillog.records import (
    BounceNotice,
    ClientSeen,
    Delivery,
    Expired,
    Held,
    LocalSubmission,
    MessageIdSeen,
    Queued,
    Rejected,
    Removed,
)


def one(service: str, message: str) -> object:
    records = postfix.parse(service, message)
    assert records is not None and len(records) == 1, records
    return records[0]


# --- smtpd -----------------------------------------------------------------------------------


def test_client_line_with_sasl() -> None:
    r = one("smtpd", "4BxK2v0Hv5z9abc: client=dsl-7.isp.example[192.0.2.7], sasl_method=PLAIN, "
                     "sasl_username=alice@customer.example")
    assert r == ClientSeen("4BxK2v0Hv5z9abc", "dsl-7.isp.example", "192.0.2.7",
                           sasl_user="alice@customer.example", sasl_method="PLAIN")


def test_client_line_ipv6_without_sasl() -> None:
    r = one("smtpd", "3F2A1B0C9D: client=unknown[2001:db8:1::25]")
    assert isinstance(r, ClientSeen)
    assert (r.client_name, r.client_addr, r.sasl_user) == ("unknown", "2001:db8:1::25", "")


def test_client_line_behind_content_filter_keeps_original_client() -> None:
    r = one("smtpd", "9C3D2E1F0A: client=localhost[127.0.0.1], orig_queue_id=3F2A1B0C9D, "
                     "orig_client=dsl-7.isp.example[192.0.2.7]")
    assert isinstance(r, ClientSeen)
    assert r.orig_queue_id == "3F2A1B0C9D"
    assert (r.orig_client_name, r.orig_client_addr) == ("dsl-7.isp.example", "192.0.2.7")


def test_utf8_sasl_username() -> None:
    r = one("smtpd", "3F2A1B0C9D: client=unknown[192.0.2.9], sasl_method=LOGIN, "
                     "sasl_username=jürgen@müller.example")
    assert isinstance(r, ClientSeen) and r.sasl_user == "jürgen@müller.example"


def test_noqueue_reject_rcpt() -> None:
    r = one("smtpd", "NOQUEUE: reject: RCPT from unknown[198.18.7.20]: 554 5.7.1 "
                     "<victim@example.org>: Relay access denied; from=<spam@198.18.7.20.example> "
                     "to=<victim@example.org> proto=ESMTP helo=<198.18.7.20>")
    assert r == Rejected("", "reject", "RCPT", "unknown", "198.18.7.20", "554", "5.7.1",
                         "<victim@example.org>: Relay access denied", "victim@example.org",
                         "spam@198.18.7.20.example", "198.18.7.20")


def test_noqueue_reject_with_ipv6_client_and_port() -> None:
    r = one("submission/smtpd",
            "NOQUEUE: reject: RCPT from unknown[2001:db8::bad]:41234: 450 4.1.2 "
            "<x@nodomain.example>: Recipient address rejected: Domain not found; "
            "from=<a@b.example> to=<x@nodomain.example> proto=ESMTP helo=<pc>")
    assert isinstance(r, Rejected)
    assert (r.client_addr, r.code, r.dsn, r.recipient) == (
        "2001:db8::bad", "450", "4.1.2", "x@nodomain.example")


def test_reject_with_queue_id_after_first_recipient() -> None:
    r = one("smtpd", "3F2A1B0C9D: reject: RCPT from dsl-7.isp.example[192.0.2.7]: 550 5.1.1 "
                     "<nobody@example.org>: Recipient address rejected: User unknown; "
                     "from=<a@b.example> to=<nobody@example.org> proto=ESMTP helo=<pc7>")
    assert isinstance(r, Rejected) and r.queue_id == "3F2A1B0C9D" and r.stage == "RCPT"


def test_connect_reject_has_no_envelope_and_is_ignored() -> None:
    assert postfix.parse("smtpd", "NOQUEUE: reject: CONNECT from unknown[198.18.0.1]: 554 5.7.1 "
                                  "Service unavailable; Client host [198.18.0.1] blocked; "
                                  "proto=SMTP") == ()


def test_milter_reject_at_rcpt() -> None:
    r = one("smtpd", "NOQUEUE: milter-reject: RCPT from unknown[192.0.2.66]: 550 5.7.1 "
                     "Command rejected; from=<bot@x.example> to=<a@example.org> proto=ESMTP "
                     "helo=<localhost>")
    assert isinstance(r, Rejected) and r.kind == "milter-reject" and r.helo == "localhost"


def test_milter_reject_at_end_of_message_without_basic_code() -> None:
    r = one("cleanup", "3F2A1B0C9D: milter-reject: END-OF-MESSAGE from unknown[192.0.2.66]: "
                       "5.7.1 Spam message rejected; from=<bot@x.example> to=<a@example.org> "
                       "proto=ESMTP helo=<localhost>")
    assert isinstance(r, Rejected)
    assert (r.stage, r.code, r.dsn, r.reply) == (
        "END-OF-MESSAGE", "550", "5.7.1", "Spam message rejected")


def test_milter_hold() -> None:
    r = one("cleanup", "3F2A1B0C9D: milter-hold: END-OF-MESSAGE from unknown[192.0.2.66]: "
                       "milter triggers HOLD action; from=<bot@x.example> to=<a@example.org> "
                       "proto=ESMTP helo=<localhost>")
    assert r == Held("3F2A1B0C9D", "milter-hold", "milter triggers HOLD action", "unknown",
                     "192.0.2.66", "a@example.org", "bot@x.example", "localhost")


def test_policy_hold_keeps_the_envelope() -> None:
    r = one("smtpd", "3F2A1B0C9D: hold: RCPT from bot.example[192.0.2.66]: <a@example.org>: "
                     "Recipient address triggers HOLD action; from=<bot@x.example> "
                     "to=<a@example.org> proto=ESMTP helo=<localhost>")
    assert isinstance(r, Held)
    assert (r.kind, r.client_name, r.client_addr, r.recipient, r.envelope_from, r.helo) == (
        "hold", "bot.example", "192.0.2.66", "a@example.org", "bot@x.example", "localhost")


def test_header_check_reject_takes_code_from_the_end() -> None:
    r = one("cleanup", "3F2A1B0C9D: reject: header Subject: cheap pills from unknown[192.0.2.66]; "
                       "from=<bot@x.example> to=<a@example.org> proto=ESMTP helo=<localhost>: "
                       "5.7.1 message content rejected")
    assert isinstance(r, Rejected)
    assert (r.client_addr, r.dsn, r.reply) == ("192.0.2.66", "5.7.1", "message content rejected")


def test_header_check_hold() -> None:
    r = one("cleanup", "3F2A1B0C9D: hold: header Subject: invoice from unknown[192.0.2.66]; "
                       "from=<bot@x.example> to=<a@example.org> proto=ESMTP helo=<localhost>")
    assert isinstance(r, Held) and r.kind == "hold"


# --- cleanup, qmgr, bounce, postsuper, pickup ------------------------------------------------


def test_message_id() -> None:
    assert one("cleanup", "3F2A1B0C9D: message-id=<20261130.abc@pc7.home>") == MessageIdSeen(
        "3F2A1B0C9D", "20261130.abc@pc7.home")


def test_qmgr_from() -> None:
    assert one("qmgr", "3F2A1B0C9D: from=<alice@customer.example>, size=18551, nrcpt=3 "
                       "(queue active)") == Queued("3F2A1B0C9D", "alice@customer.example", 18551, 3)


def test_qmgr_null_sender() -> None:
    r = one("qmgr", "3F2A1B0C9D: from=<>, size=3051, nrcpt=1 (queue active)")
    assert isinstance(r, Queued) and r.envelope_from == ""


def test_qmgr_expired() -> None:
    assert one("qmgr", "3F2A1B0C9D: from=<alice@customer.example>, status=expired, returned to "
                       "sender") == Expired("3F2A1B0C9D", "alice@customer.example")


def test_qmgr_removed_and_postsuper() -> None:
    assert one("qmgr", "3F2A1B0C9D: removed") == Removed("3F2A1B0C9D")
    assert one("postsuper", "3F2A1B0C9D: removed") == Removed("3F2A1B0C9D")
    assert one("postsuper", "3F2A1B0C9D: placed on hold") == Held("3F2A1B0C9D", "postsuper")


def test_bounce_notification() -> None:
    assert one("bounce", "3F2A1B0C9D: sender non-delivery notification: 7E6D5C4B3A") == (
        BounceNotice("3F2A1B0C9D", "7E6D5C4B3A", "sender non-delivery notification"))


def test_pickup() -> None:
    assert one("pickup", "3F2A1B0C9D: uid=1000 from=<root>") == LocalSubmission(
        "3F2A1B0C9D", "1000", "root")


# --- delivery agents -------------------------------------------------------------------------

SENT = ("3F2A1B0C9D: to=<bob@example.org>, relay=mx1.example.org[198.51.100.7]:25, delay=1.2, "
        "delays=0.1/0.01/0.5/0.6, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 4Bx9)")


def test_delivery_sent() -> None:
    assert one("smtp", SENT) == Delivery(
        "3F2A1B0C9D", "bob@example.org", "sent", "2.0.0", "mx1.example.org[198.51.100.7]:25",
        "250 2.0.0 Ok: queued as 4Bx9")


def test_delivery_bounced_with_orig_to_and_tls_and_conn_use() -> None:
    r = one("smtp", "3F2A1B0C9D: to=<carol@example.net>, orig_to=<carol@alias.example>, "
                    "relay=mx.example.net[2001:db8::25]:25, conn_use=2, delay=0.9, "
                    "delays=0.1/0/0.4/0.4, tls=TLSv1.3, dsn=5.1.1, status=bounced (host "
                    "mx.example.net[2001:db8::25] said: 550 5.1.1 <carol@example.net>: Recipient "
                    "address rejected: User unknown (in reply to RCPT TO command))")
    assert isinstance(r, Delivery)
    assert (r.recipient, r.orig_to, r.status, r.dsn) == (
        "carol@example.net", "carol@alias.example", "bounced", "5.1.1")
    assert r.reply.endswith("(in reply to RCPT TO command)")


def test_delivery_deferred_relay_none() -> None:
    r = one("smtp", "3F2A1B0C9D: to=<d@nodomain.example>, relay=none, delay=30, "
                    "delays=0.1/0/30/0, dsn=4.4.1, status=deferred (connect to "
                    "mx.nodomain.example[203.0.113.5]:25: Connection timed out)")
    assert isinstance(r, Delivery) and (r.status, r.relay) == ("deferred", "none")


def test_delivery_from_qmgr_and_local_and_lmtp() -> None:
    assert isinstance(one("qmgr", "3F2A1B0C9D: to=<x@example.org>, relay=none, delay=0.1, "
                                  "delays=0.1/0/0/0, dsn=4.3.2, status=deferred (delivery "
                                  "temporarily suspended)"), Delivery)
    assert isinstance(one("local", "3F2A1B0C9D: to=<root@smtp1.isp.example>, orig_to=<root>, "
                                   "relay=local, delay=0.01, delays=0/0/0/0, dsn=2.0.0, "
                                   "status=sent (delivered to mailbox)"), Delivery)
    assert isinstance(one("lmtp", "3F2A1B0C9D: to=<ann@isp.example>, relay=mail.isp.example"
                                  "[private/dovecot-lmtp], delay=0.2, delays=0.1/0/0/0.1, "
                                  "dsn=2.0.0, status=sent (250 2.0.0 <ann@isp.example> Saved)"),
                      Delivery)


def test_delivery_utf8_recipient() -> None:
    r = one("smtp", "3F2A1B0C9D: to=<θεόδωρος@παράδειγμα.δοκιμή>, relay=mx.example[192.0.2.1]:25, "
                    "delay=1, delays=0/0/0.5/0.5, dsn=2.0.0, status=sent (250 OK)")
    assert isinstance(r, Delivery) and r.recipient == "θεόδωρος@παράδειγμα.δοκιμή"


def test_expired_per_recipient_status() -> None:
    r = one("smtp", "3F2A1B0C9D: to=<d@x.example>, relay=none, delay=432000, delays=432000/0/0/0, "
                    "dsn=4.4.1, status=expired, returned to sender")
    # Postfix's wording here is not "(reply)": read as expired with no reply.
    assert isinstance(r, Delivery) and (r.status, r.reply) == ("expired", "")


# --- cut and garbled lines -------------------------------------------------------------------


@pytest.mark.parametrize("cut", [20, 60, 120, len(SENT) - 10])
def test_delivery_cut_in_half_is_garbled_not_misread(cut: int) -> None:
    assert postfix.parse("smtp", SENT[:cut]) is None


@pytest.mark.parametrize(
    ("service", "message"),
    [
        ("smtp", "3F2A1B0C9D: to=<bob@example.org>, relay=x[1.2.3.4]:25, delay=1, "
                 "delays=0/0/0/1, dsn=2.0.0, status=delivered (250 Ok)"),  # unknown status
        ("qmgr", "3F2A1B0C9D: from=<a@b.example>, size=, nrcpt=1 (queue active)"),
        ("qmgr", "3F2A1B0C9D: from=<a@b.exam"),
        ("smtpd", "3F2A1B0C9D: client=dsl-7.isp.example 192.0.2.7"),
        ("pickup", "3F2A1B0C9D: uid=1000 fr"),
        ("smtpd", "NOQUEUE: reject: RCPT from unknown[198.18.7.20]: 554 5.7.1 <victim@exa"),
    ],
)
def test_garbled_relevant_lines(service: str, message: str) -> None:
    assert postfix.parse(service, message) is None


@pytest.mark.parametrize(
    ("service", "message"),
    [
        ("smtpd", "connect from unknown[192.0.2.7]"),
        ("smtpd", "disconnect from unknown[192.0.2.7] ehlo=1 mail=1 rcpt=1 data=1 commands=4"),
        ("smtpd", "warning: hostname x.example does not resolve to address 192.0.2.7"),
        ("smtpd", "lost connection after DATA from unknown[192.0.2.7]"),
        ("anvil", "statistics: max connection rate 3/60s for (smtp:192.0.2.7) at Nov 30 04:01:19"),
        ("smtp", "Trusted TLS connection established to mx[192.0.2.1]:25: TLSv1.3 with cipher X"),
        ("postscreen", "CONNECT from [192.0.2.7]:41234 to [192.0.2.1]:25"),
        ("master", "daemon started -- version 3.7.11, configuration /etc/postfix"),
        ("cleanup", "3F2A1B0C9D: resent-message-id=<x@y>"),
        ("qmgr", "3F2A1B0C9D: skipped, still being delivered"),
    ],
)
def test_lines_of_no_interest_are_ignored(service: str, message: str) -> None:
    assert postfix.parse(service, message) == ()


# --- service names ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "program",
    ["postfix/smtp", "postfix-out/smtp", "postfix/relay/smtp", "mta2/smtp", "postfix/amavis/smtp"],
)
def test_multi_instance_and_custom_syslog_names_reach_the_postfix_parser(program: str) -> None:
    parser = _choose_parser(program, "auto")
    assert parser is not None
    assert parser(SENT) is not None and len(parser(SENT) or ()) == 1


def test_postfix_sendmail_command_is_not_taken_for_sendmail() -> None:
    parser = _choose_parser("postfix/sendmail", "auto")
    assert parser is not None
    assert parser("fatal: usage: sendmail [options]") == ()


def test_programs_of_other_daemons_have_no_parser() -> None:
    assert _choose_parser("CRON", "auto") is None
    assert _choose_parser("dovecot", "auto") is None
    assert _choose_parser("postfix/smtp", "sendmail") is None
