"""Lines to events: the per-queue-id join of Postfix logs, as the engine receives it."""

from __future__ import annotations

import pytest

from extrusion.maillog.feed import LogFeed
from extrusion.maillog.join import JoinSettings
from extrusion.scoring.events import Outcome, Status, Submission

from .maillog_helpers import REFERENCE, Recorder, feed_lines

HOST = "smtp1"


def at(sec: int, prog: str, text: str, host: str = HOST) -> str:
    """A classic syslog line `sec` seconds after 04:00:00 on Nov 30."""
    m, s = divmod(sec, 60)
    h, m = divmod(m, 60)
    return f"Nov 30 {4 + h:02d}:{m:02d}:{s:02d} {host} {prog}[{1000 + sec}]: {text}"


def sent(q: str, rcpt: str) -> str:
    return (f"{q}: to=<{rcpt}>, relay=mx.example.org[198.51.100.7]:25, delay=1.1, "
            f"delays=0.1/0/0.5/0.5, dsn=2.0.0, status=sent (250 2.0.0 Ok)")


def bounced(q: str, rcpt: str) -> str:
    return (f"{q}: to=<{rcpt}>, relay=mx.example.net[198.51.100.9]:25, delay=0.9, "
            f"delays=0.1/0/0.4/0.4, dsn=5.1.1, status=bounced (host mx.example.net"
            f"[198.51.100.9] said: 550 5.1.1 <{rcpt}>: Recipient address rejected: "
            f"User unknown (in reply to RCPT TO command))")


def deferred(q: str, rcpt: str) -> str:
    return (f"{q}: to=<{rcpt}>, relay=none, delay=30, delays=0.1/0/30/0, dsn=4.4.1, "
            f"status=deferred (connect to mx.slow.example[203.0.113.5]:25: Connection timed out)")


def accepted(sec: int, q: str, client: str = "dsl-7.isp.example[192.0.2.7]", sasl: str = "",
             sender: str = "alice@customer.example", nrcpt: int = 2,
             service: str = "postfix/smtpd") -> list[str]:
    auth = f", sasl_method=PLAIN, sasl_username={sasl}" if sasl else ""
    return [
        at(sec, service, f"connect from {client}"),
        at(sec, service, f"{q}: client={client}{auth}"),
        at(sec, "postfix/cleanup", f"{q}: message-id=<{q}@pc7.home>"),
        at(sec, "postfix/qmgr", f"{q}: from=<{sender}>, size=2206, nrcpt={nrcpt} (queue active)"),
        at(sec + 1, service, f"disconnect from {client} ehlo=1 mail=1 rcpt={nrcpt} data=1 quit=1"),
    ]


def statuses(outcomes: list[Outcome]) -> list[tuple[str, str, str]]:
    return [(o.recipient, o.status.value, o.sender) for o in outcomes]


# --- the ordinary message --------------------------------------------------------------------


def test_message_becomes_one_submission_then_its_outcomes() -> None:
    rec = Recorder()
    lines = [
        *accepted(0, "3F2A1B0C9D", sasl="alice@customer.example"),
        at(2, "postfix/smtp", sent("3F2A1B0C9D", "bob@example.org")),
        at(3, "postfix/smtp", bounced("3F2A1B0C9D", "nobody@example.net")),
        at(3, "postfix/qmgr", "3F2A1B0C9D: removed"),
    ]
    feed = feed_lines(rec, lines, finish=False)
    (sub,) = rec.submissions
    assert sub == Submission(
        time=sub.time, sender="sasl:alice@customer.example", queue_id="3F2A1B0C9D",
        envelope_from="alice@customer.example",
        recipients=("bob@example.org", "nobody@example.net"),
        size=2206, mta=HOST, client_addr="192.0.2.7", client_name="dsl-7.isp.example",
        message_id="3F2A1B0C9D@pc7.home",
    )
    assert isinstance(rec.events[0], Submission)
    assert statuses(rec.outcomes) == [
        ("bob@example.org", "sent", "sasl:alice@customer.example"),
        ("nobody@example.net", "bounced", "sasl:alice@customer.example"),
    ]
    bad = rec.outcomes[1]
    assert (bad.dsn, bad.envelope_from, bad.mta, bad.queue_id) == (
        "5.1.1", "alice@customer.example", HOST, "3F2A1B0C9D")
    assert "User unknown" in bad.reply
    assert rec.outcomes[0].time - sub.time == pytest.approx(2.0)
    assert len(feed.joiner) == 0  # `removed` dropped the state
    assert (feed.stats.lines, feed.stats.garbled) == (8, 0)


def test_beside_a_milter_the_feed_leaves_the_client_to_it() -> None:
    rec = Recorder()
    feed_lines(rec, [*accepted(0, "3F2A1B0C9E"), at(2, "postfix/smtp", sent("3F2A1B0C9E", "b@x"))],
               client_evidence=False)
    (sub,) = rec.submissions
    assert sub.client_evidence is False and sub.client_addr == "192.0.2.7"


def test_submission_waits_until_every_recipient_was_tried() -> None:
    rec = Recorder()
    feed = feed_lines(rec, [
        *accepted(0, "AAAAA11111", nrcpt=3),
        at(2, "postfix/smtp", sent("AAAAA11111", "a@example.org")),
        at(5, "postfix/smtp", sent("AAAAA11111", "b@example.org")),
    ], finish=False)
    assert rec.submissions == [] and rec.outcomes == []
    feed.line(at(20, "postfix/smtp", deferred("AAAAA11111", "c@slow.example")))
    assert rec.submissions[0].recipients == ("a@example.org", "b@example.org", "c@slow.example")
    assert [type(e).__name__ for e in rec.events] == ["Submission", "Outcome", "Outcome", "Outcome"]


def test_submission_goes_out_after_the_wait_even_if_recipients_are_missing() -> None:
    rec = Recorder()
    feed = feed_lines(rec, [
        *accepted(0, "AAAAA11111", nrcpt=3),
        at(2, "postfix/smtp", sent("AAAAA11111", "a@example.org")),
    ], finish=False, wait_seconds=60.0)
    feed.line(at(50, "postfix/anvil", "statistics: max cache size 1 at Nov 30 04:00:50"))
    assert rec.submissions == []
    feed.line(at(70, "postfix/anvil", "statistics: max cache size 1 at Nov 30 04:01:10"))
    assert rec.submissions[0].recipients == ("a@example.org",)
    feed.line(at(90, "postfix/smtp", sent("AAAAA11111", "b@example.org")))
    assert statuses(rec.outcomes)[-1] == ("b@example.org", "sent", "ip:192.0.2.7")
    assert len(rec.submissions) == 1


def test_finish_emits_what_is_still_waiting() -> None:
    rec = Recorder()
    feed = feed_lines(rec, [
        *accepted(0, "AAAAA11111", nrcpt=5),
        at(2, "postfix/smtp", bounced("AAAAA11111", "x@example.net"))], finish=False)
    assert rec.outcomes == []
    feed.finish()
    assert len(rec.submissions) == 1 and statuses(rec.outcomes) == [
        ("x@example.net", "bounced", "ip:192.0.2.7")]


def test_live_feed_without_submissions_emits_outcomes_at_once() -> None:
    rec = Recorder()
    feed_lines(rec, [
        *accepted(0, "AAAAA11111", nrcpt=3),
        at(2, "postfix/smtp", sent("AAAAA11111", "a@example.org"))], finish=False,
        submissions=False)
    assert rec.submissions == []
    assert statuses(rec.outcomes) == [("a@example.org", "sent", "ip:192.0.2.7")]


# --- retries, expiry, bounces ----------------------------------------------------------------


def test_repeated_deferrals_count_once_and_expiry_fails_the_recipient() -> None:
    rec = Recorder()
    q = "BBBBB22222"
    lines = [
        *accepted(0, q, nrcpt=2),
        at(2, "postfix/smtp", sent(q, "a@example.org")),
        at(30, "postfix/smtp", deferred(q, "late@slow.example")),
        at(400, "postfix/qmgr", f"{q}: from=<alice@customer.example>, size=2206, nrcpt=1 "
                                "(queue active)"),
        at(430, "postfix/smtp", deferred(q, "late@slow.example")),
        at(2000, "postfix/smtp", deferred(q, "late@slow.example")),
        at(3000, "postfix/qmgr", f"{q}: from=<alice@customer.example>, status=expired, "
                                 "returned to sender"),
        at(3000, "postfix/bounce", f"{q}: sender non-delivery notification: CCCCC33333"),
        at(3001, "postfix/qmgr", f"{q}: removed"),
    ]
    feed = feed_lines(rec, lines)
    assert statuses(rec.outcomes) == [
        ("a@example.org", "sent", "ip:192.0.2.7"),
        ("late@slow.example", "deferred", "ip:192.0.2.7"),
        ("late@slow.example", "expired", "ip:192.0.2.7"),
    ]
    assert feed.stats.join.repeated_deferrals == 2
    assert rec.submissions[0].recipients == ("a@example.org", "late@slow.example")


def test_a_deferred_recipient_later_delivered_is_not_expired() -> None:
    rec = Recorder()
    q = "BBBBB22222"
    feed_lines(rec, [
        *accepted(0, q, nrcpt=1),
        at(30, "postfix/smtp", deferred(q, "late@slow.example")),
        at(900, "postfix/smtp", sent(q, "late@slow.example")),
        at(901, "postfix/qmgr", f"{q}: removed"),
    ])
    assert [o.status for o in rec.outcomes] == [Status.DEFERRED, Status.SENT]


def test_failures_of_the_mtas_own_bounce_are_nobodys_evidence() -> None:
    rec = Recorder()
    q, nq = "DDDDD44444", "EEEEE55555"
    feed = feed_lines(rec, [
        *accepted(0, q, nrcpt=1),
        at(2, "postfix/smtp", bounced(q, "nobody@example.net")),
        at(2, "postfix/bounce", f"{q}: sender non-delivery notification: {nq}"),
        at(2, "postfix/cleanup", f"{nq}: message-id=<{nq}@smtp1>"),
        at(2, "postfix/qmgr", f"{nq}: from=<>, size=4000, nrcpt=1 (queue active)"),
        at(3, "postfix/qmgr", f"{q}: removed"),
        at(4, "postfix/smtp", bounced(nq, "alice@customer.example")),
        at(4, "postfix/qmgr", f"{nq}: removed"),
    ])
    assert statuses(rec.outcomes) == [("nobody@example.net", "bounced", "ip:192.0.2.7")]
    assert len(rec.submissions) == 1
    assert feed.stats.join.null_sender_dropped == 1


def test_customer_relaying_its_own_bounces_is_passed_on_with_the_null_sender() -> None:
    rec = Recorder()
    feed_lines(rec, [
        *accepted(0, "FFFFF66666", sender="", nrcpt=1),
        at(2, "postfix/smtp", bounced("FFFFF66666", "gone@example.net"))])
    (o,) = rec.outcomes
    assert o.envelope_from == "" and o.sender == "ip:192.0.2.7"
    assert rec.submissions[0].envelope_from == ""


# --- refused in the session ------------------------------------------------------------------


def test_noqueue_reject_is_a_rejected_outcome_of_the_client() -> None:
    rec = Recorder()
    feed_lines(rec, [at(0, "postfix/smtpd",
                        "NOQUEUE: reject: RCPT from unknown[2001:db8::bad]: 554 5.7.1 "
                        "<victim@example.org>: Relay access denied; from=<s@x.example> "
                        "to=<victim@example.org> proto=ESMTP helo=<x>")])
    (o,) = rec.outcomes
    assert (o.status, o.sender, o.queue_id, o.dsn, o.recipient, o.envelope_from) == (
        Status.REJECTED, "ip:2001:db8::bad", "", "5.7.1", "victim@example.org", "s@x.example")
    assert o.reply.startswith("554 5.7.1 ")


def test_reject_after_authentication_is_the_authenticated_users() -> None:
    rec = Recorder()
    q = "GGGGG77777"
    feed_lines(rec, [
        *accepted(0, q, sasl="bob", nrcpt=1),
        at(1, "postfix/smtpd", f"{q}: reject: RCPT from dsl-7.isp.example[192.0.2.7]: 550 5.1.1 "
                               "<x@example.org>: Recipient address rejected: User unknown; "
                               "from=<alice@customer.example> to=<x@example.org> proto=ESMTP "
                               "helo=<pc7>")])
    assert statuses(rec.outcomes)[0] == ("x@example.org", "rejected", "sasl:bob")


def test_milter_reject_at_end_of_message_forgets_the_message() -> None:
    rec = Recorder()
    q = "HHHHH88888"
    lines = [
        *accepted(0, q, nrcpt=1)[:3],
        at(1, "postfix/cleanup", f"{q}: milter-reject: END-OF-MESSAGE from dsl-7.isp.example"
                                 "[192.0.2.7]: 5.7.1 virus found; from=<alice@customer.example> "
                                 "to=<a@example.org> proto=ESMTP helo=<pc7>")]
    feed = feed_lines(rec, lines, finish=False)
    assert statuses(rec.outcomes) == [("a@example.org", "rejected", "ip:192.0.2.7")]
    assert len(feed.joiner) == 0


def test_own_enforcement_replies_are_skipped() -> None:
    rec = Recorder()
    feed = feed_lines(rec, [at(0, "postfix/smtpd",
                               "NOQUEUE: reject: RCPT from unknown[192.0.2.66]: 450 4.7.1 "
                               "<a@example.org>: Recipient address rejected: Extrusion: sending "
                               "rate exceeded; from=<b@x.example> to=<a@example.org> "
                               "proto=ESMTP helo=<x>")], skip_replies=("extrusion",))
    assert rec.outcomes == [] and feed.stats.join.own_rejects_skipped == 1


# --- content filters and instances -----------------------------------------------------------


def test_content_filter_hop_moves_the_identity_to_the_new_queue_id() -> None:
    rec = Recorder()
    q1, q2 = "JJJJJ11111", "KKKKK22222"
    lines = [
        *accepted(0, q1, sasl="carol", nrcpt=2, service="postfix/submission/smtpd"),
        # The filter re-injects before the hop's own line is logged.
        at(2, "postfix/smtpd", f"{q2}: client=localhost[127.0.0.1]"),
        at(2, "postfix/qmgr", f"{q2}: from=<alice@customer.example>, size=2500, nrcpt=2 "
                              "(queue active)"),
        at(2, "postfix/smtp", f"{q1}: to=<a@example.org>, relay=127.0.0.1[127.0.0.1]:10024, "
                              "delay=1, delays=0/0/0/1, dsn=2.0.0, status=sent (250 2.0.0 from "
                              f"MTA(smtp:[127.0.0.1]:10025): 250 2.0.0 Ok: queued as {q2})"),
        at(2, "postfix/smtp", f"{q1}: to=<b@example.net>, relay=127.0.0.1[127.0.0.1]:10024, "
                              "delay=1, delays=0/0/0/1, dsn=2.0.0, status=sent (250 2.0.0 from "
                              f"MTA(smtp:[127.0.0.1]:10025): 250 2.0.0 Ok: queued as {q2})"),
        at(2, "postfix/qmgr", f"{q1}: removed"),
        at(3, "postfix-out/smtp", sent(q2, "a@example.org")),
        at(3, "postfix-out/smtp", bounced(q2, "b@example.net")),
        at(3, "postfix/qmgr", f"{q2}: removed"),
    ]
    feed = feed_lines(rec, lines)
    assert [(s.queue_id, s.sender) for s in rec.submissions] == [(q2, "sasl:carol")]
    assert statuses(rec.outcomes) == [("a@example.org", "sent", "sasl:carol"),
                                      ("b@example.net", "bounced", "sasl:carol")]
    assert feed.stats.join.handoffs == 2


def test_xforward_orig_client_from_a_second_instance() -> None:
    rec = Recorder()
    feed_lines(rec, [
        at(0, "postfix-out/smtpd", "LLLLL33333: client=localhost[::1], orig_queue_id=JJJJJ11111, "
                                   "orig_client=host5.v6.example[2001:db8:5::25]"),
        at(0, "postfix-out/qmgr", "LLLLL33333: from=<o@firm.example>, size=9, nrcpt=1 "
                                  "(queue active)"),
        at(1, "postfix-out/smtp", bounced("LLLLL33333", "x@example.net")),
    ])
    assert statuses(rec.outcomes) == [("x@example.net", "bounced", "ip:2001:db8:5::25")]


def handoff(q1: str, q2: str, rcpt: str, relay: str = "filter.isp.example[10.0.0.5]:10024"
            ) -> str:
    return (f"{q1}: to=<{rcpt}>, relay={relay}, delay=1, delays=0/0/0/1, dsn=2.0.0, "
            f"status=sent (250 2.0.0 Ok: queued as {q2})")


def test_configured_handoff_relay_besides_loopback() -> None:
    rec = Recorder()
    q1, q2 = "MMMMM11111", "NNNNN22222"
    feed_lines(rec, [
        *accepted(0, q1, nrcpt=1),
        at(1, "postfix/smtpd", f"{q2}: client=filter.isp.example[10.0.0.5]"),
        at(1, "postfix/smtp", handoff(q1, q2, "a@example.org")),
        at(3, "postfix/smtp", bounced(q2, "a@example.org")),
    ], handoff_relays=("10.0.0.0/24",))
    # The filter's re-injection names the filter as client; the customer stays the sender.
    assert statuses(rec.outcomes) == [("a@example.org", "bounced", "ip:192.0.2.7")]
    assert [s.queue_id for s in rec.submissions] == [q2]


def test_next_queue_logged_only_after_the_hop_still_inherits_the_sender() -> None:
    rec = Recorder()
    q1, q2 = "MMMMM11111", "NNNNN22222"
    feed_lines(rec, [
        *accepted(0, q1, nrcpt=1),
        at(1, "postfix/smtp", handoff(q1, q2, "a@example.org", "127.0.0.1[127.0.0.1]:10024")),
        at(2, "postfix/smtpd", f"{q2}: client=localhost[127.0.0.1]"),
        at(3, "postfix/smtp", bounced(q2, "a@example.org")),
    ])
    # The hop itself could not be told from a delivery when it was logged.
    assert statuses(rec.outcomes) == [("a@example.org", "sent", "ip:192.0.2.7"),
                                      ("a@example.org", "bounced", "ip:192.0.2.7")]


def test_an_unlogged_peer_on_loopback_is_an_ordinary_delivery() -> None:
    rec = Recorder()
    feed = feed_lines(rec, [
        *accepted(0, "PPPPP11111", nrcpt=1),
        at(1, "postfix/smtp", handoff("PPPPP11111", "REMOTE1234", "b@remote.test",
                                      "127.0.0.1[127.0.0.1]:2525")),
        at(1, "postfix/qmgr", "PPPPP11111: removed"),
    ])
    assert statuses(rec.outcomes) == [("b@remote.test", "sent", "ip:192.0.2.7")]
    assert feed.stats.join.handoffs == 0 and len(feed.joiner) == 0


# --- partial logs, several hosts, bounded memory ---------------------------------------------


def test_log_starting_mid_message_gives_unattributed_outcomes() -> None:
    rec = Recorder()
    feed = feed_lines(rec, [at(0, "postfix/smtp", bounced("PPPPP11111", "x@example.net")),
                            at(0, "postfix/qmgr", "PPPPP11111: removed")])
    (o,) = rec.outcomes
    assert o.sender == "" and o.queue_id == "PPPPP11111"
    assert rec.submissions == [] and feed.stats.join.unattributed == 1


def test_same_queue_id_on_two_hosts_are_two_messages() -> None:
    rec = Recorder()
    second = [line.replace(HOST, "smtp2")
              for line in accepted(0, "QQQQQ11111", client="b[192.0.2.2]", nrcpt=1)]
    lines = [*accepted(0, "QQQQQ11111", client="a[192.0.2.1]", nrcpt=1), *second,
             at(1, "postfix/smtp", bounced("QQQQQ11111", "x@example.net"), host="smtp2"),
             at(1, "postfix/smtp", sent("QQQQQ11111", "y@example.org"))]
    feed_lines(rec, lines)
    assert {(o.mta, o.sender, o.recipient) for o in rec.outcomes} == {
        ("smtp2", "ip:192.0.2.2", "x@example.net"), (HOST, "ip:192.0.2.1", "y@example.org")}


def test_mta_name_from_settings_overrides_the_log_host() -> None:
    rec = Recorder()
    feed_lines(rec, [
        *accepted(0, "RRRRR11111", nrcpt=1),
        at(1, "postfix/smtp", sent("RRRRR11111", "y@example.org"))], mta="smarthost-a")
    assert rec.outcomes[0].mta == "smarthost-a" and rec.submissions[0].mta == "smarthost-a"


def test_finished_messages_leave_no_state_behind() -> None:
    rec = Recorder()
    feed = LogFeed(rec, reference_time=REFERENCE)
    for i in range(3000):
        q = f"{i:010X}"
        for line in [*accepted(i, q, nrcpt=1), at(i, "postfix/smtp", sent(q, "y@example.org")),
                                               at(i, "postfix/qmgr", f"{q}: removed")]:
            feed.line(line)
    assert len(feed.joiner) == 0
    assert len(rec.submissions) == 3000 and len(rec.outcomes) == 3000


def test_half_seen_queue_ids_age_out_and_the_count_is_capped() -> None:
    rec = Recorder()
    feed = LogFeed(rec, reference_time=REFERENCE,
                   settings=JoinSettings(ttl_seconds=600.0, max_queue_ids=50))
    for i in range(100):
        feed.line(at(i, "postfix/smtpd", f"{i:010X}: client=x[192.0.2.{i}]"))
    assert len(feed.joiner) == 50 and feed.stats.join.evicted == 50
    feed.line(at(2000, "postfix/anvil", "statistics: max cache size 1 at Nov 30 04:33:20"))
    assert len(feed.joiner) == 0 and feed.stats.join.aged_out == 50


# --- bad input -------------------------------------------------------------------------------


def test_garbled_and_foreign_lines_are_counted_and_skipped() -> None:
    rec = Recorder()
    good = [*accepted(0, "SSSSS11111", nrcpt=1), at(2, "postfix/smtp",
                                                    bounced("SSSSS11111", "x@example.net"))]
    cut = at(1, "postfix/smtp", sent("TTTTT22222", "y@example.org"))[:80]
    lines = [good[0], "\x00\xff garbage", cut, "Nov 30 04:00:01 smtp1 CRON[5]: (root) CMD (x)",
             *good[1:], "Nov 30 04:0", "", "Nov 30 04:00:03 smtp1 kernel: [1.2] eth0 up"]
    feed = feed_lines(rec, lines)
    assert statuses(rec.outcomes) == [("x@example.net", "bounced", "ip:192.0.2.7")]
    s = feed.stats
    assert (s.lines, s.garbled) == (len(lines), 4)
    assert s.parsed == 4 and s.ignored == len(lines) - 4 - 4
    assert cut in s.examples


def test_a_failing_engine_is_counted_and_the_feed_goes_on() -> None:
    class Broken(Recorder):
        def outcome(self, event: Outcome) -> None:
            if event.recipient == "boom@example.org":
                raise RuntimeError("store down")
            super().outcome(event)

    rec = Broken()
    feed = feed_lines(rec, [
        *accepted(0, "UUUUU11111", nrcpt=2),
        at(1, "postfix/smtp", sent("UUUUU11111", "boom@example.org")),
        at(1, "postfix/smtp", sent("UUUUU11111", "fine@example.org"))], submissions=True)
    assert feed.stats.engine_errors == 1
    assert statuses(rec.outcomes) == [("fine@example.org", "sent", "ip:192.0.2.7")]
