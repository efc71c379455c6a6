"""Sendmail and Exim logs through the feed: enough to attribute each outcome to its sender.

What each line parses to is a row of tests/data/maillog/sendmail.jsonl and
exim.jsonl (tests/test_maillog_reference.py)."""

from __future__ import annotations

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
