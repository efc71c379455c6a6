"""Sendmail and Exim lines: enough to attribute each outcome to its sender."""

from __future__ import annotations

import pytest

from extrusion.maillog import exim, sendmail
from extrusion.maillog.records import (
    BounceNotice,
    ClientSeen,
    Delivery,
    MessageIdSeen,
    Queued,
    Rejected,
    Removed,
    SaslSeen,
)

from .maillog_helpers import Recorder, feed_lines

# --- Sendmail --------------------------------------------------------------------------------

SM_FROM = ("4AU41J1a021407: from=<alice@customer.example>, size=2206, class=0, nrcpts=4, "
           "msgid=<20261130040119.GA1@pc7.home>, bodytype=8BITMIME, proto=ESMTPA, daemon=MTA, "
           "relay=dsl-7.isp.example [192.0.2.7]")
SM_AUTH = ("4AU41J1a021407: AUTH=server, relay=dsl-7.isp.example [192.0.2.7], authid=alice, "
           "mech=PLAIN, bits=0")
SM_SENT = ("4AU41J1a021407: to=<bob@example.org>,<carol@example.org>, delay=00:00:02, "
           "xdelay=00:00:02, mailer=esmtp, pri=152206, relay=mx1.example.org. [198.51.100.7], "
           "dsn=2.0.0, stat=Sent (Ok: queued as 4Bx9)")
SM_UNKNOWN = ("4AU41J1a021407: to=<nobody@example.net>, delay=00:00:03, xdelay=00:00:01, "
              "mailer=esmtp, pri=152206, relay=mx.example.net. [198.51.100.9], dsn=5.1.1, "
              "stat=User unknown")
SM_DEFERRED = ("4AU41J1a021407: to=<dave@slow.example>, ctladdr=<alice@customer.example> "
               "(1000/1000), delay=00:00:06, xdelay=00:00:03, mailer=esmtp, pri=152206, "
               "relay=mx.slow.example. [203.0.113.5], dsn=4.0.0, stat=Deferred: Connection "
               "refused by mx.slow.example.")


def test_sendmail_from_line_gives_envelope_client_and_message_id() -> None:
    assert sendmail.parse(SM_FROM) == (
        Queued("4AU41J1a021407", "alice@customer.example", 2206, 4),
        MessageIdSeen("4AU41J1a021407", "20261130040119.GA1@pc7.home"),
        ClientSeen("4AU41J1a021407", "dsl-7.isp.example", "192.0.2.7"),
    )


def test_sendmail_ipv6_client_may_be_forged() -> None:
    records = sendmail.parse("4AU41J1a021408: from=<x@y.example>, size=10, class=0, nrcpts=1, "
                             "msgid=<a@b>, proto=ESMTP, daemon=MTA, relay=pc.example "
                             "[IPv6:2001:db8::7] (may be forged)")
    assert records is not None
    client = records[-1]
    assert isinstance(client, ClientSeen) and client.client_addr == "2001:db8::7"


def test_sendmail_auth_line() -> None:
    assert sendmail.parse(SM_AUTH) == (SaslSeen("4AU41J1a021407", "alice", "PLAIN"),)


def test_sendmail_one_line_several_recipients() -> None:
    records = sendmail.parse(SM_SENT)
    assert records is not None
    assert [r.recipient for r in records if isinstance(r, Delivery)] == [
        "bob@example.org", "carol@example.org"]
    assert all(isinstance(r, Delivery) and r.status == "sent" and r.reply == "Ok: queued as 4Bx9"
               for r in records)


def test_sendmail_failure_and_deferral() -> None:
    (bad,) = sendmail.parse(SM_UNKNOWN) or ()
    assert isinstance(bad, Delivery) and (bad.status, bad.dsn, bad.reply) == (
        "bounced", "5.1.1", "User unknown")
    (later,) = sendmail.parse(SM_DEFERRED) or ()
    assert isinstance(later, Delivery) and (later.recipient, later.status) == (
        "dave@slow.example", "deferred")


def test_sendmail_8_17_reply_field_is_the_remote_reply() -> None:
    # Sendmail 8.17 logs the remote's answer as reply= between dsn= and stat=;
    # the reply itself may contain ", ".
    line = ("4AU41J1a021407: to=<nobody@example.net>, delay=00:00:01, xdelay=00:00:01, "
            "mailer=esmtp, pri=120394, relay=mx.example.net. [198.51.100.9], dsn=5.1.1, "
            "reply=550 5.1.1 <nobody@example.net>... User unknown, sorry, stat=User unknown")
    (bad,) = sendmail.parse(line) or ()
    assert isinstance(bad, Delivery)
    assert (bad.recipient, bad.status, bad.dsn, bad.relay) == (
        "nobody@example.net", "bounced", "5.1.1", "mx.example.net. [198.51.100.9]")
    assert bad.reply == "550 5.1.1 <nobody@example.net>... User unknown, sorry"


def test_sendmail_dsn_line_names_the_bounce() -> None:
    assert sendmail.parse("4AU41J1a021407: 4AU41M1b021409: DSN: User unknown") == (
        BounceNotice("4AU41J1a021407", "4AU41M1b021409", "DSN"),)


def test_sendmail_check_rcpt_reject_with_and_without_queue_id() -> None:
    (r,) = sendmail.parse("4AU42003021500: ruleset=check_rcpt, arg1=<victim@example.org>, "
                          "relay=unknown [198.18.7.20], reject=550 5.7.1 <victim@example.org>... "
                          "Relaying denied") or ()
    assert isinstance(r, Rejected)
    assert (r.client_addr, r.code, r.dsn, r.recipient) == (
        "198.18.7.20", "550", "5.7.1", "victim@example.org")
    (r6,) = sendmail.parse("ruleset=check_rcpt, arg1=<x@example.org>, relay=[IPv6:2001:db8::bad], "
                           "reject=553 5.1.8 <x@example.org>... Domain of sender address "
                           "does not exist") or ()
    assert isinstance(r6, Rejected) and r6.client_addr == "2001:db8::bad" and r6.queue_id == ""


@pytest.mark.parametrize("line", [SM_FROM[:60], SM_UNKNOWN[:70], "4AU41J1a021407: from=<a@b>, si"])
def test_sendmail_cut_lines_are_garbled(line: str) -> None:
    assert sendmail.parse(line) is None


def test_sendmail_noise_is_ignored() -> None:
    assert sendmail.parse("starting daemon (8.17.1.9): SMTP+queueing@00:10:00") == ()
    assert sendmail.parse("4AU41J1a021407: lost input channel from pc [192.0.2.7] to MTA after "
                          "rcpt") == ()


def test_sendmail_log_attributes_outcomes_to_the_authenticated_user() -> None:
    rec = Recorder()
    prefix = "Nov 30 04:01:{:02d} mx1 sm-mta[21407]: "
    feed = feed_lines(rec, [prefix.format(i) + text for i, text in enumerate(
        [SM_FROM, SM_AUTH, SM_SENT, SM_UNKNOWN, SM_DEFERRED,
         "4AU41J1a021407: 4AU41M1b021409: DSN: User unknown"])])
    assert [s.sender for s in rec.submissions] == ["sasl:alice"]
    assert rec.submissions[0].recipients == (
        "bob@example.org", "carol@example.org", "nobody@example.net", "dave@slow.example")
    assert [(o.recipient, o.status.value, o.sender) for o in rec.outcomes] == [
        ("bob@example.org", "sent", "sasl:alice"),
        ("carol@example.org", "sent", "sasl:alice"),
        ("nobody@example.net", "bounced", "sasl:alice"),
        ("dave@slow.example", "deferred", "sasl:alice"),
    ]
    assert feed.stats.garbled == 0


# --- Exim ------------------------------------------------------------------------------------

EX_ARRIVAL = ("1tHxyz-000ABC-12 <= alice@customer.example H=dsl-7.isp.example (pc7) "
              "[192.0.2.7]:54321 I=[192.0.2.1]:587 P=esmtpsa X=TLS1.3:TLS_AES_256_GCM_SHA384:256 "
              "CV=no A=dovecot_plain:alice S=2206 id=20261130.GA1@pc7.home")
EX_SENT = ('1tHxyz-000ABC-12 => bob@example.org R=dnslookup T=remote_smtp H=mx1.example.org '
           '[198.51.100.7] X=TLS1.3:TLS_AES_256_GCM_SHA384:256 CV=yes C="250 2.0.0 Ok: queued '
           'as 4Bx9"')
EX_MORE = ('1tHxyz-000ABC-12 -> carol@example.org R=dnslookup T=remote_smtp H=mx1.example.org '
           '[198.51.100.7] C="250 2.0.0 Ok"')
EX_FAIL = ("1tHxyz-000ABC-12 ** nobody@example.net R=dnslookup T=remote_smtp H=mx.example.net "
           "[198.51.100.9]: SMTP error from remote mail server after RCPT TO:<nobody@example.net>: "
           "550 5.1.1 <nobody@example.net>: Recipient address rejected: User unknown")
EX_UNROUTEABLE = "1tHxyz-000ABC-12 ** ghost@nodomain.example: Unrouteable address"
EX_DEFER = ("1tHxyz-000ABC-12 == dave@slow.example R=dnslookup T=remote_smtp defer (111): "
            "Connection refused")


def test_exim_arrival() -> None:
    assert exim.parse(EX_ARRIVAL) == (
        Queued("1tHxyz-000ABC-12", "alice@customer.example", 2206),
        ClientSeen("1tHxyz-000ABC-12", "dsl-7.isp.example", "192.0.2.7", sasl_user="alice"),
        MessageIdSeen("1tHxyz-000ABC-12", "20261130.GA1@pc7.home"),
    )


def test_exim_arrival_ipv6_and_new_style_message_id() -> None:
    (q, c) = exim.parse("1rB8Yx-00000000Abc-1234 <= office@firm.example H=mail.firm.example "
                        "[2001:db8::7]:40000 P=esmtp S=999") or ()
    assert isinstance(c, ClientSeen) and c.client_addr == "2001:db8::7" and c.sasl_user == ""
    assert isinstance(q, Queued) and q.queue_id == "1rB8Yx-00000000Abc-1234"


def test_exim_null_sender_bounce() -> None:
    line = "1tHy00-000ABD-34 <= <> R=1tHxyz-000ABC-12 U=Debian-exim P=local S=3100"
    (q,) = exim.parse(line) or ()
    assert isinstance(q, Queued) and q.envelope_from == ""


def test_exim_deliveries() -> None:
    (d,) = exim.parse(EX_SENT) or ()
    assert isinstance(d, Delivery)
    assert (d.recipient, d.status, d.dsn, d.relay) == (
        "bob@example.org", "sent", "2.0.0", "mx1.example.org[198.51.100.7]")
    (m,) = exim.parse(EX_MORE) or ()
    assert isinstance(m, Delivery) and m.recipient == "carol@example.org"
    (f,) = exim.parse(EX_FAIL) or ()
    assert isinstance(f, Delivery) and (f.status, f.dsn) == ("bounced", "5.1.1")
    assert f.reply.startswith("SMTP error from remote mail server")
    (u,) = exim.parse(EX_UNROUTEABLE) or ()
    assert isinstance(u, Delivery) and (u.recipient, u.status, u.reply) == (
        "ghost@nodomain.example", "bounced", "Unrouteable address")
    (w,) = exim.parse(EX_DEFER) or ()
    assert isinstance(w, Delivery) and (w.status, w.dsn, w.reply) == (
        "deferred", "4.0.0", "Connection refused")


def test_exim_completed_and_session_reject() -> None:
    assert exim.parse("1tHxyz-000ABC-12 Completed") == (Removed("1tHxyz-000ABC-12"),)
    (r,) = exim.parse("H=(198.18.7.20) [198.18.7.20]:40000 F=<spam@x.example> rejected RCPT "
                      "<victim@example.org>: relay not permitted") or ()
    assert isinstance(r, Rejected)
    assert (r.client_addr, r.recipient, r.envelope_from) == (
        "198.18.7.20", "victim@example.org", "spam@x.example")


@pytest.mark.parametrize("line", [EX_ARRIVAL[:50], "1tHxyz-000ABC-12 ** "])
def test_exim_cut_lines_are_garbled(line: str) -> None:
    assert exim.parse(line) is None


def test_exim_main_log_and_syslog_forms_both_attribute_outcomes() -> None:
    for prefix in ("2026-11-30 04:01:{:02d} ", "Nov 30 04:01:{:02d} mx2 exim[3301]: "):
        rec = Recorder()
        lines = [prefix.format(i) + text for i, text in enumerate(
            [EX_ARRIVAL, EX_SENT, EX_MORE, EX_FAIL, EX_DEFER, "1tHxyz-000ABC-12 Completed"])]
        feed_lines(rec, lines)
        assert [s.sender for s in rec.submissions] == ["sasl:alice"]
        assert [(o.recipient, o.status.value) for o in rec.outcomes] == [
            ("bob@example.org", "sent"), ("carol@example.org", "sent"),
            ("nobody@example.net", "bounced"), ("dave@slow.example", "deferred")]
        assert {o.sender for o in rec.outcomes} == {"sasl:alice"}
