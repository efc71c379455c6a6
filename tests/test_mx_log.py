"""Incoming MX mode, the log side: HELO evidence from reject lines, postscreen's rejects
and verdicts, own customer ranges seen from outside, spam filters' own verdict lines.

Every line here is in the format Postfix 3.7 (smtpd, postscreen, cleanup), amavisd-new
2.11 and SpamAssassin's spamd write it.
"""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import pytest

from extrusion.config import Config, from_dict
from extrusion.maillog import mxlines, postfix
from extrusion.maillog.evidence import ClientTracker
from extrusion.maillog.feed import LogFeed, join_settings
from extrusion.maillog.records import FAILED_COMMANDS, ClientVerdict, FilterVerdict, Rejected
from extrusion.maillog.recovery import Recovery
from extrusion.notify.notifier import wanted
from extrusion.replay.command import run
from extrusion.replay.output import summary
from extrusion.report.load import Query, load_report
from extrusion.scoring.engine import Engine
from extrusion.scoring.events import ClientEvidence, Seen, State, StateChange
from extrusion.scoring.store import Store
from tests.maillog_helpers import REFERENCE, Recorder, feed_lines

HOST = "mx1"
BOT = "192.0.2.7"
OWN = "203.0.113.5"  # in the [[customers]] range below
SMTPD_REJECT = (
    "NOQUEUE: reject: RCPT from unknown[{ip}]: 550 5.1.1 <{to}>: Recipient address rejected: "
    "User unknown in local recipient table; from=<{frm}> to=<{to}> proto=ESMTP helo=<{helo}>")
PSCREEN_REJECT = (
    "NOQUEUE: reject: RCPT from [{ip}]:{port}: 550 5.7.1 Service unavailable; client [{ip}] "
    "blocked using zen.spamhaus.org; from=<{frm}>, to=<{to}>, proto=ESMTP, helo=<{helo}>")
AMAVIS = ("(12345-01) {action} {{RejectedInbound}}, [{ip}]:5123 [{ip}] <{frm}> -> "
          "<x@our.example>, Queue-ID: {qid}, Message-ID: <{mid}>, mail_id: TsWq1c2B3, "
          "Hits: {hits}, size: 1234, 567 ms")
SPAMD = ("spamd: result: {flag} {score} - BAYES_99,HTML_MESSAGE scantime=0.3,size=1234,"
         "user=x,uid=1000,required_score=5.0,rhost=localhost,raddr=127.0.0.1,rport=45678,"
         "mid=<{mid}>,autolearn=no")


def at(sec: float, prog: str, text: str) -> str:
    """A classic syslog line `sec` seconds after 04:00:00 on Nov 30."""
    s = int(sec)
    m, s = divmod(s, 60)
    h, m = divmod(m, 60)
    return f"Nov 30 {4 + h:02d}:{m:02d}:{s:02d} {HOST} {prog}[{1000 + int(sec) % 9000}]: {text}"


def smtpd_reject(sec: float, to: str, helo: str, ip: str = BOT,
                 frm: str = "a@b.example") -> str:
    return at(sec, "postfix/smtpd", SMTPD_REJECT.format(ip=ip, to=to, helo=helo, frm=frm))


def pscreen_reject(sec: float, to: str, ip: str = BOT, helo: str = "bot") -> str:
    return at(sec, "postfix/postscreen",
              PSCREEN_REJECT.format(ip=ip, port=40000 + int(sec), to=to, helo=helo,
                                    frm="a@b.example"))


def accepted(sec: float, qid: str, ip: str, frm: str, mid: str,
             name: str = "mail.b.example") -> list[str]:
    return [
        at(sec, "postfix/smtpd", f"connect from {name}[{ip}]"),
        at(sec, "postfix/smtpd", f"{qid}: client={name}[{ip}]"),
        at(sec, "postfix/cleanup", f"{qid}: message-id=<{mid}>"),
        at(sec, "postfix/qmgr", f"{qid}: from=<{frm}>, size=2206, nrcpt=1 (queue active)"),
    ]


def mx_config(tmp_path: Path, **extra: Any) -> Config:
    data: dict[str, Any] = {
        "general": {"mode": "mx", "hostname": HOST, "own_domains": ["our.example"]},
        "store": {"url": f"sqlite:///{tmp_path / 'x.db'}", "spool_dir": str(tmp_path / "sp")},
        "customers": [{"name": "dsl", "networks": ["203.0.113.0/24"]}],
    }
    for k, v in extra.items():
        data[k] = {**data.get(k, {}), **v}
    return from_dict(data)


def replay(tmp_path: Path, lines: list[str], cfg: Config | None = None,
           parallel: bool = False) -> Any:
    tmp_path.mkdir(parents=True, exist_ok=True)
    log = tmp_path / "mail.log"
    log.write_text("\n".join(lines) + "\n")
    result, _stats = run(cfg or mx_config(tmp_path), [str(log)], parallel=parallel)
    return result


def findings(tmp_path: Path, lines: list[str], cfg: Config | None = None,
             keys: tuple[str, ...] = ()) -> dict[str, Any]:
    """Feed the lines to an engine on a store; the findings per sender key, as stored."""
    cfg = cfg or mx_config(tmp_path)
    store = Store(cfg.store.url)
    box = [REFERENCE]
    engine = Engine(cfg, store, lambda: box[0])
    try:
        feed = LogFeed.from_config(engine, cfg, reference_time=REFERENCE)
        for line in lines:
            feed.line(line)
            box[0] = feed.now or box[0]
        feed.finish()
        engine.flush()
        out: dict[str, Any] = {}
        for key in ("ip:" + BOT, "customer:dsl", *keys):
            row = store.sender(key)
            out[key] = row.findings if row is not None else {}
        return out
    finally:
        engine.close()
        store.close()


# --- the parsers ------------------------------------------------------------------------


def test_the_smtpd_reject_line_gives_its_helo() -> None:
    line = SMTPD_REJECT.format(ip=BOT, to="x@our.example", helo="our.example", frm="a@b.example")
    (r,) = postfix.parse("smtpd", line) or ()
    assert isinstance(r, Rejected)
    assert (r.client_addr, r.recipient, r.envelope_from, r.helo) == (
        BOT, "x@our.example", "a@b.example", "our.example")


def test_postscreens_comma_separated_tail_is_read_whole() -> None:
    line = PSCREEN_REJECT.format(ip=BOT, port=51234, to="x@our.example", helo="bot",
                                 frm="a@b.example")
    (r,) = postfix.parse("postscreen", line) or ()
    assert isinstance(r, Rejected)
    assert (r.client_addr, r.recipient, r.envelope_from, r.helo, r.dsn) == (
        BOT, "x@our.example", "a@b.example", "bot", "5.7.1")
    assert "zen.spamhaus.org" in r.reply


@pytest.mark.parametrize(("message", "kind", "detail"), [
    (f"PREGREET 11 after 0.07 from [{BOT}]:51234: EHLO bot\\r\\n", "PREGREET", "EHLO bot\\r\\n"),
    (f"DNSBL rank 3 for [{BOT}]:51234", "DNSBL", "DNSBL rank 3"),
    (f"COMMAND PIPELINING from [{BOT}]:51234 after EHLO: MAIL FROM:<a@b>\\r\\n",
     "COMMAND PIPELINING", "after EHLO: MAIL FROM:<a@b>\\r\\n"),
    (f"NON-SMTP COMMAND from [{BOT}]:51234 after CONNECT: GET / HTTP/1.1",
     "NON-SMTP COMMAND", "after CONNECT: GET / HTTP/1.1"),
    (f"BARE NEWLINE from [{BOT}]:51234 after DATA", "BARE NEWLINE", "after DATA"),
    (f"HANGUP after 0.5 from [{BOT}]:51234 in tests before SMTP handshake", "HANGUP",
     "in tests before SMTP handshake"),
    ("DNSBL rank 4 for [2001:db8::7]:51234", "DNSBL", "DNSBL rank 4"),
])
def test_postscreen_verdicts(message: str, kind: str, detail: str) -> None:
    (v,) = postfix.parse("postscreen", message) or ()
    assert isinstance(v, ClientVerdict)
    assert (v.kind, v.detail) == (kind, detail)
    assert v.client_addr in (BOT, "2001:db8::7")


def test_postscreens_other_lines_say_nothing_and_a_broken_verdict_is_garbled() -> None:
    for quiet in (f"CONNECT from [{BOT}]:51234 to [198.51.100.1]:25", f"PASS NEW [{BOT}]:51234",
                  f"DISCONNECT [{BOT}]:51234", f"WHITELISTED [{BOT}]:51234"):
        assert postfix.parse("postscreen", quiet) == ()
    assert postfix.parse("postscreen", "PREGREET 11 after 0.07 from [bogus]:1: EHLO x") is None
    assert postfix.parse("postscreen", "DNSBL rank 3") is None


def test_smtpds_disconnect_line_with_failed_commands() -> None:
    (v,) = postfix.parse("smtpd", f"disconnect from unknown[{OWN}] ehlo=1 auth=0/1 "
                                  "rcpt=0/3 quit=1 commands=2/6") or ()
    assert v == ClientVerdict(OWN, FAILED_COMMANDS, "ehlo=1 auth=0/1 rcpt=0/3 quit=1 commands=2/6")
    assert postfix.parse("smtpd", f"disconnect from a.example[{OWN}] ehlo=1 mail=1 rcpt=1 "
                                  "data=1 quit=1 commands=5") == ()
    # Counted N/M only in the last place, or all of M succeeded, or no counts: nothing.
    assert postfix.parse("smtpd", f"disconnect from a[{OWN}] commands=1/2") == (
        ClientVerdict(OWN, FAILED_COMMANDS, "commands=1/2"),)
    for counts in (" rcpt=0/1 commands=5", " commands=3/3", " quit=1 commands=1/2 x", ""):
        assert postfix.parse("smtpd", f"disconnect from a[{OWN}]{counts}") == ()
    assert postfix.parse("smtpd", f"disconnect from a[{OWN}] 5/6") == ()


def test_amavis_verdicts() -> None:
    def one(action: str, hits: str = "12.3") -> FilterVerdict:
        (v,) = mxlines.parse_filter("amavis", AMAVIS.format(
            action=action, ip=BOT, frm="a@b.example", qid="4AbCd5", mid="m1@b.example",
            hits=hits)) or ()
        assert isinstance(v, FilterVerdict)
        return v

    blocked = one("Blocked SPAM")
    assert blocked == FilterVerdict("amavis", True, queue_id="4AbCd5", message_id="m1@b.example",
                                    client_addr=BOT, envelope_from="a@b.example", score=12.3)
    assert one("Passed SPAMMY").spam and not one("Passed CLEAN", "-1.2").spam
    assert one("Passed CLEAN", "-").score is None
    # Without XFORWARD the first address is the MTA on loopback; the older format has no {…}.
    (old,) = mxlines.parse_filter("amavis", (
        "(04711-02) Passed SPAM, [127.0.0.1]:40000 [198.51.100.9] <x@y.example> -> "
        "<u@our.example>, Message-ID: <m2@y>, Hits: 7.1, 310 ms")) or ()
    assert isinstance(old, FilterVerdict)
    assert (old.spam, old.client_addr, old.queue_id, old.message_id) == (
        True, "198.51.100.9", "", "m2@y")
    assert mxlines.parse_filter("amavis", "starting. /usr/sbin/amavisd at mx1 amavisd-new") == ()
    assert mxlines.parse_filter("amavis", "(1-01) Passed SPAM, garbage") is None


def test_spamd_verdicts() -> None:
    assert mxlines.parse_filter("spamd", SPAMD.format(flag="Y", score=15, mid="m@b")) == (
        FilterVerdict("spamd", True, message_id="m@b", score=15.0),)
    (ham,) = mxlines.parse_filter("spamd", SPAMD.format(flag=".", score=-2, mid="h@b")) or ()
    assert isinstance(ham, FilterVerdict) and not ham.spam
    assert mxlines.parse_filter("spamd", "spamd: clean message (-2.0/5.0) for x:1000") == ()
    assert mxlines.parse_filter("spamd", "spamd: result: Y lots - X") is None
    assert mxlines.parse_filter("spamd", "spamd: result: Y 15 - X scantime=1") == ()


def test_garbage_never_raises() -> None:
    rnd = random.Random(19)
    pieces = ["[", "]", ":", "<", ">", ", ", " ", "PREGREET", "DNSBL rank", "HANGUP", "from",
              BOT, "::1", "Queue-ID: ", "Hits: ", "Passed SPAM", "(1-01) ", "mid=<", "result: Y",
              "\x00", "\udcff", "é", "9" * 30, "disconnect from ", "commands=1/2", "-"]
    for _ in range(3000):
        text = "".join(rnd.choice(pieces) for _ in range(rnd.randint(0, 30)))
        for prog in ("amavis", "spamd"):
            assert mxlines.parse_filter(prog, text) in ((), None) or isinstance(
                mxlines.parse_filter(prog, text), tuple)
        postfix.parse("postscreen", text)
        postfix.parse("smtpd", "disconnect from " + text)


# --- the joiner -------------------------------------------------------------------------


def test_25_postscreen_rejects_to_distinct_recipients_are_25_outcomes() -> None:
    rec = Recorder()
    feed_lines(rec, [pscreen_reject(i * 2, f"u{i}@our.example") for i in range(25)])
    assert len({o.recipient for o in rec.outcomes}) == 25
    assert {o.sender for o in rec.outcomes} == {"ip:" + BOT}


def test_a_sessions_helos_reach_the_engine_once_each() -> None:
    rec = Recorder()
    lines = [smtpd_reject(0, "a@our.example", "our.example"),
             smtpd_reject(5, "b@our.example", "our.example"),  # nothing new: no event
             smtpd_reject(9, "c@our.example", "b.example"),  # a second HELO in the session
             smtpd_reject(75, "d@our.example", "b.example"),  # a minute on: news again
             smtpd_reject(2000, "e@our.example", "x.example")]  # a new session
    feed_lines(rec, lines)
    ev = rec.evidence_seen
    assert [e.kind for e in ev] == [Seen.SESSION] * 4
    assert [e.helos for e in ev] == [("our.example",), ("our.example", "b.example"),
                                     ("our.example", "b.example"), ("x.example",)]
    assert ev[0].envelope_from == "a@b.example" and ev[0].recipients == ("a@our.example",)


def test_a_clients_memory_is_bounded() -> None:
    t = ClientTracker(max_clients=100)
    for i in range(1000):
        t.session(float(i), f"192.0.2.{i % 250}x{i}", "h", "a@b")
    assert len(t) == 100 and t.evicted == 900
    for i in range(50):
        t.session(5000.0, BOT, f"helo{i}.example", f"a@d{i}.example")
    assert t._clients[BOT].helos == [f"helo{i}.example" for i in range(8)]
    assert len(t._clients[BOT].domains) == 4


def test_hangup_counts_only_after_pregreet() -> None:
    rec = Recorder()
    hangup = f"HANGUP after 0.5 from [{BOT}]:5 in tests before SMTP handshake"
    feed_lines(rec, [
        at(0, "postfix/postscreen", hangup),
        at(100, "postfix/postscreen", f"PREGREET 11 after 0.07 from [{BOT}]:6: EHLO bot\\r\\n"),
        at(101, "postfix/postscreen", hangup),
        at(102, "postfix/postscreen", f"DNSBL rank 3 for [{BOT}]:6"),
        at(110, "postfix/postscreen", f"DNSBL rank 3 for [{BOT}]:7")])  # same minute: once
    assert [e.detail for e in rec.evidence_seen] == [
        "EHLO bot\\r\\n", "in tests before SMTP handshake", "DNSBL rank 3"]
    assert {e.kind for e in rec.evidence_seen} == {Seen.POSTSCREEN}


def test_filter_verdicts_join_their_message_once() -> None:
    rec = Recorder()
    lines = [
        *accepted(0, "4AbCd5", BOT, "a@b.example", "m1@b.example"),
        at(1, "amavis", AMAVIS.format(action="Blocked SPAM", ip=BOT, frm="a@b.example",
                                      qid="4AbCd5", mid="m1@b.example", hits="12.3")),
        at(1, "spamd", SPAMD.format(flag="Y", score=15, mid="m1@b.example")),  # same message
        *accepted(2, "5BcDe6", "198.51.100.9", "n@c.example", "m2@c.example"),
        at(3, "spamd", SPAMD.format(flag="Y", score=9, mid="m2@c.example")),
        *accepted(4, "6CdEf7", "198.51.100.10", "o@d.example", "m3@d.example"),
        at(5, "spamd", SPAMD.format(flag=".", score=-1, mid="m3@d.example")),
        at(6, "spamd", SPAMD.format(flag="Y", score=9, mid="never@seen")),
    ]
    feed = feed_lines(rec, lines)
    got = [(e.sender, e.queue_id, e.envelope_from, e.detail) for e in rec.evidence_seen]
    assert got == [("ip:" + BOT, "4AbCd5", "a@b.example", "amavis score 12.3"),
                   ("ip:198.51.100.9", "5BcDe6", "n@c.example", "spamd score 9")]
    assert feed.stats.join.clients.verdicts_unjoined == 1


# --- the engine, through replay ---------------------------------------------------------


def _bot_lines(start: float = 0.0) -> list[str]:
    """A dictionary-attack bot saying our own domain, then the recipients' domain."""
    return [smtpd_reject(start + i * 3, f"user{i}@our.example",
                         "our.example" if i < 10 else "mail.b.example") for i in range(20)]


def test_helo_from_reject_lines_is_evidence_in_mx_and_smarthost_replay(tmp_path: Path) -> None:
    kinds = ["our.example (helo_own_name)", "our.example (helo_recipient_domain)",
             "our.example (helo_multiple)"]
    f = findings(tmp_path, _bot_lines())["ip:" + BOT]
    # Each kind once, although 20 lines showed them: 30, not 200.
    assert f["helo_anomalies"]["weight"] == 30.0
    assert f["helo_anomalies"]["examples"] == kinds
    smarthost = mx_config(tmp_path / "s", general={"mode": "smarthost"})
    f2 = findings(tmp_path / "s", _bot_lines(), smarthost)["ip:" + BOT]
    assert f2["helo_anomalies"]["weight"] == 30.0


def test_a_helo_the_policy_servers_info_line_noted_is_not_counted_again(tmp_path: Path) -> None:
    info = at(0, "postfix/cleanup", (
        f"4F2A1B3C9D: info: END-OF-MESSAGE from unknown[{BOT}]: extrusion: suspicious HELO: "
        "helo_own_name; from=<a@b.example> to=<x@our.example> proto=ESMTP helo=<our.example>"))
    lines = [at(0, "postfix/smtpd", f"4F2A1B3C9D: client=unknown[{BOT}]"), info,
             at(0, "postfix/qmgr", "4F2A1B3C9D: from=<a@b.example>, size=300, nrcpt=1 (queue "
                                   "active)"),
             at(1, "postfix/qmgr", "4F2A1B3C9D: removed"),
             smtpd_reject(30, "y@our.example", "our.example"),
             smtpd_reject(200, "z@our.example", "our.example")]
    f = findings(tmp_path, lines)["ip:" + BOT]["helo_anomalies"]
    # helo_own_name once (the INFO line's), although both reject lines showed it too; the
    # reject lines alone know the recipient: HELO = its domain is news, counted once.
    assert f["examples"] == ["our.example (helo_own_name)",
                             "our.example (helo_recipient_domain)"]
    assert f["weight"] == 20.0 and f["count"] == 5


def test_a_bot_refused_by_postscreen_alone_is_seen_and_throttled(tmp_path: Path) -> None:
    lines = []
    for i in range(8):  # reconnecting every two minutes, never past the pregreet test
        lines.append(at(i * 120, "postfix/postscreen",
                        f"PREGREET 11 after 0.07 from [{BOT}]:{4000 + i}: EHLO bot\\r\\n"))
        lines.append(at(i * 120 + 1, "postfix/postscreen", f"DNSBL rank 3 for [{BOT}]:{4000 + i}"))
    result = replay(tmp_path, lines)
    assert result.senders["ip:" + BOT].peak.rank >= State.THROTTLED.rank
    assert "postscreen" in result.senders["ip:" + BOT].reason


def test_an_own_customer_refused_by_postscreen_is_held_within_minutes(tmp_path: Path) -> None:
    # An infected customer on the PBL: every attempt refused, one every 20 seconds.
    lines = [pscreen_reject(i * 20, f"v{i}@elsewhere.example", ip=OWN, helo="pc-17")
             for i in range(40)]
    result = replay(tmp_path, lines)
    held = [c for c in result.changes if c.sender == "customer:dsl" and c.new is State.HELD]
    assert held, result.senders
    assert held[0].time - result.changes[0].time <= 15 * 60
    f = findings(tmp_path / "f", lines, mx_config(tmp_path / "f"))["customer:dsl"]
    assert f["own_network_inbound"]["seen_from_outside"] is True
    assert f["own_network_refused"]["weight"] >= 25.0


def test_an_own_business_mta_with_an_occasional_reject_stays_below_throttle(
    tmp_path: Path,
) -> None:
    lines = [smtpd_reject(i * 3600, f"gone{i}@our.example", "mail.firm.example", ip=OWN,
                          frm="info@firm.example") for i in range(6)]
    result = replay(tmp_path, lines)
    assert result.senders["customer:dsl"].peak is State.WATCH


def test_spam_verdicts_from_the_filters_log_count_unless_forwarded(tmp_path: Path) -> None:
    lines: list[str] = []
    for i in range(6):
        q, fq = f"4AA{i:03d}", f"4BB{i:03d}"
        lines += accepted(i * 60, q, BOT, "a@b.example", f"m{i}@b")
        lines.append(at(i * 60 + 1, "amavis", AMAVIS.format(
            action="Blocked SPAM", ip=BOT, frm="a@b.example", qid=q, mid=f"m{i}@b", hits="12")))
        # SRS from the forwarder's own host (its reverse name is the SRS domain's) ...
        srs = "SRS0=HHH=TT=b.example=a@fwd.example"
        lines += accepted(i * 60, fq, "198.51.100.20", srs, f"f{i}@b", name="mx.fwd.example")
        lines.append(at(i * 60 + 2, "spamd", SPAMD.format(flag="Y", score=9, mid=f"f{i}@b")))
        # ... but not the same SRS address written by a host of another name.
        bq = f"4CC{i:03d}"
        lines += accepted(i * 60, bq, "198.51.100.30", srs, f"g{i}@b", name="dsl.isp.example")
        lines.append(at(i * 60 + 3, "spamd", SPAMD.format(flag="Y", score=9, mid=f"g{i}@b")))
    f = findings(tmp_path, lines, keys=("ip:198.51.100.30",))
    assert f["ip:" + BOT]["spam_verdicts"]["weight"] == 12.0  # 6 x spam_verdict
    assert f["ip:198.51.100.30"]["spam_verdicts"]["weight"] == 12.0  # a forged SRS counts
    cfg = mx_config(tmp_path / "g")
    store = Store(cfg.store.url)
    box = [REFERENCE]
    engine = Engine(cfg, store, lambda: box[0])
    try:
        feed = LogFeed.from_config(engine, cfg, reference_time=REFERENCE)
        for line in lines:
            feed.line(line)
        feed.finish()
        engine.flush()
        row = store.sender("ip:198.51.100.20")
        assert row is not None and row.findings["spam_verdicts"]["weight"] == 0.0
        assert row.findings["spam_verdicts"]["count"] == 6
    finally:
        engine.close()
        store.close()


def test_the_live_feed_and_both_replays_agree_on_an_mx_log(tmp_path: Path) -> None:
    lines = [*_bot_lines(),
             *(pscreen_reject(100 + i * 20, f"v{i}@elsewhere.example", ip=OWN)
               for i in range(30)),
             at(700, "postfix/postscreen", "PREGREET 3 after 0.1 from [198.51.100.66]:9: HI"),
             at(701, "postfix/postscreen", "HANGUP after 0.2 from [198.51.100.66]:9 in tests "
                                           "before SMTP handshake"),
             *_forwarder_refusals(40)]
    inline = replay(tmp_path / "a", lines, mx_config(tmp_path / "a"), parallel=False)
    two = replay(tmp_path / "b", lines, mx_config(tmp_path / "b"), parallel=True)
    # Live: the feed as `extrusion serve` runs it (guarded, live, no milter beside it).
    cfg = mx_config(tmp_path / "c")
    store = Store(cfg.store.url)
    box = [REFERENCE]
    engine = Engine(cfg, store, lambda: box[0])
    live_states: dict[str, State] = {}
    engine.add_listener(lambda c: live_states.__setitem__(c.sender, c.new))
    try:
        feed = LogFeed(engine, settings=join_settings(cfg, live=True), reference_time=REFERENCE)
        for line in lines:
            feed.line(line)
            box[0] = feed.now or box[0]
        feed.finish()
        engine.flush()
    finally:
        engine.close()
        store.close()
    expect = {k: v.state for k, v in inline.senders.items() if v.state is not State.OK}
    assert expect == {k: v.state for k, v in two.senders.items() if v.state is not State.OK}
    assert expect == {k: v for k, v in live_states.items() if v is not State.OK}
    assert expect["customer:dsl"] is State.HELD and expect["ip:" + BOT].rank >= 2
    # Our filter's refusals of a forwarder's SRS mail are discounted in all three: the
    # client's name travels with each outcome, also between replay's processes.
    assert "ip:198.51.100.20" not in expect


def _forwarder_refusals(n: int) -> list[str]:
    srs = "SRS0=HHH=TT=b.example=a@fwd.example"
    lines: list[str] = []
    for i in range(n):
        q = f"4FF{i:03d}"
        lines += accepted(800 + i * 30, q, "198.51.100.20", srs, f"r{i}@b",
                          name="mx.fwd.example")[:3]
        lines.append(at(801 + i * 30, "postfix/cleanup", f"{q}: milter-reject: END-OF-MESSAGE "
                        "from mx.fwd.example[198.51.100.20]: 5.7.1 Blocked by SpamAssassin; "
                        f"from=<{srs}> to=<u{i}@our.example> proto=ESMTP helo=<mx.fwd.example>"))
    return lines


# --- what the operator sees -------------------------------------------------------------


def test_an_own_customer_at_watch_is_in_the_report_and_notified(tmp_path: Path) -> None:
    lines = [smtpd_reject(0, "gone@our.example", "mail.firm.example", ip=OWN,
                          frm="info@firm.example"),
             smtpd_reject(0, "gone@our.example", "mail.other.example", ip="198.51.100.3",
                          frm="x@other.example")]
    cfg = mx_config(tmp_path)
    store = Store(cfg.store.url)
    box = [REFERENCE]
    engine = Engine(cfg, store, lambda: box[0])
    changes: list[StateChange] = []
    engine.add_listener(changes.append)
    try:
        feed = LogFeed.from_config(engine, cfg, reference_time=REFERENCE)
        for line in lines:
            feed.line(line)
            box[0] = feed.now
        feed.finish()
        engine.flush()
        report = load_report(store, Query(until=feed.now + 60))
    finally:
        engine.close()
        store.close()
    (own,) = [s for s in report.senders if s.key == "customer:dsl"]
    assert own.state is State.WATCH
    assert any("seen from outside" in r for r in own.reasons)
    assert all(s.key != "ip:198.51.100.3" for s in report.senders)  # ok: not in the report
    (watch,) = [c for c in changes if c.sender == "customer:dsl"]
    assert watch.new is State.WATCH and wanted(watch)
    # A sender at watch for anything else is no news.
    other = StateChange(REFERENCE, "ip:192.0.2.1", State.OK, State.WATCH, 12.0, "HELO",
                        evidence={"findings": {"helo_anomalies": {"weight": 10.0}}})
    assert not wanted(other)


def test_beside_a_milter_the_log_still_gives_what_the_milter_never_sees(tmp_path: Path) -> None:
    """Live with `[milter] enabled`: the first sighting of an own range is the milter's to
    report, but postscreen's refusals never reach it, so they count from the log."""
    cfg = mx_config(tmp_path, milter={"enabled": True})
    store = Store(cfg.store.url)
    box = [REFERENCE]
    engine = Engine(cfg, store, lambda: box[0])
    try:
        feed = LogFeed(engine, settings=join_settings(cfg, live=True), reference_time=REFERENCE)
        for i in range(5):
            feed.line(pscreen_reject(i * 70, f"v{i}@elsewhere.example", ip=OWN))
            box[0] = feed.now
        feed.finish()
        engine.flush()
        row = store.sender("customer:dsl")
    finally:
        engine.close()
        store.close()
    assert row is not None
    assert row.findings["own_network_inbound"]["weight"] == 0.0
    assert row.findings["own_network_refused"]["weight"] == 25.0


def test_cleanups_milter_reject_line_gives_the_sessions_helo() -> None:
    """Postfix 3.7 cleanup, a spam filter milter refusing at end of message."""
    line = ("4AbCd5: milter-reject: END-OF-MESSAGE from mail.b.example[192.0.2.7]: 5.7.1 "
            "Blocked by SpamAssassin; from=<a@b.example> to=<x@our.example> proto=ESMTP "
            "helo=<b.example>")
    (r,) = postfix.parse("cleanup", line) or ()
    assert isinstance(r, Rejected)
    assert (r.queue_id, r.kind, r.stage, r.helo, r.dsn) == (
        "4AbCd5", "milter-reject", "END-OF-MESSAGE", "b.example", "5.7.1")
    rec = Recorder()
    feed_lines(rec, [at(0, "postfix/smtpd", f"4AbCd5: client=mail.b.example[{BOT}]"),
                     at(1, "postfix/cleanup", line)])
    (ev,) = rec.evidence_seen
    assert (ev.sender, ev.helos, ev.envelope_from, ev.kind) == (
        "ip:" + BOT, ("b.example",), "a@b.example", Seen.SESSION)
    assert [o.recipient for o in rec.outcomes] == ["x@our.example"]


def test_evidence_read_again_after_a_restart_is_not_counted_twice() -> None:
    rec = Recorder()
    recovery = Recovery(rec, store=None, mta=HOST)  # type: ignore[arg-type]
    recovery.boundary = 100.0  # lines up to this log time were read before the restart
    seen = [ClientEvidence(t, "ip:" + BOT, BOT, Seen.POSTSCREEN, detail="DNSBL rank 3")
            for t in (99.0, 100.0, 101.0)]
    for e in seen:
        recovery.evidence(e)
    assert rec.evidence_seen == seen[2:]
    assert recovery.stats.evidence_skipped == 2


def test_a_disconnect_without_a_client_address_says_nothing() -> None:
    assert postfix.parse("smtpd", "disconnect from unknown[unknown] ehlo=1 auth=0/1 "
                                  "commands=1/2") == ()


def test_a_big_providers_own_server_is_no_liar_but_a_bot_using_its_name_is(
    tmp_path: Path,
) -> None:
    google = "209.85.221.41"
    real = at(0, "postfix/smtpd", (
        f"NOQUEUE: reject: RCPT from mail-wr1-f41.google.com[{google}]: 550 5.1.1 "
        "<gone@our.example>: Recipient address rejected: User unknown in local recipient "
        "table; from=<x@gmail.com> to=<gone@our.example> proto=ESMTP "
        "helo=<mail-wr1-f41.google.com>"))
    forged = smtpd_reject(5, "gone@our.example", "mail-wr1-f41.google.com", frm="x@gmail.com")
    cfg = mx_config(tmp_path)
    store = Store(cfg.store.url)
    box = [REFERENCE]
    engine = Engine(cfg, store, lambda: box[0])
    try:
        feed = LogFeed.from_config(engine, cfg, reference_time=REFERENCE)
        for line in (real, forged):
            feed.line(line)
            box[0] = feed.now
        feed.finish()
        engine.flush()
        ok, bot = store.sender("ip:" + google), store.sender("ip:" + BOT)
    finally:
        engine.close()
        store.close()
    assert ok is not None and "helo_anomalies" not in ok.findings
    assert bot is not None
    assert any("helo_provider_name" in e for e in bot.findings["helo_anomalies"]["examples"])


def test_hosts_of_one_domain_behind_one_address_are_not_several_helos() -> None:
    t = ClientTracker()
    assert t.session(0.0, BOT, "EUR05-VI1-obe.outbound.protection.outlook.com", "a@x.example") \
        == ("EUR05-VI1-obe.outbound.protection.outlook.com",)
    assert t.session(1.0, BOT, "EUR05-AM5-obe.outbound.protection.outlook.com", "a@x.example") \
        is None
    assert t.session(2.0, BOT, "bot.example", "a@x.example") == (
        "EUR05-VI1-obe.outbound.protection.outlook.com", "bot.example")


def test_the_replay_summary_counts_the_client_evidence(tmp_path: Path) -> None:
    lines = [*_bot_lines(), at(99, "spamd", SPAMD.format(flag="Y", score=9, mid="nowhere@x"))]
    log = tmp_path / "mail.log"
    log.write_text("\n".join(lines) + "\n")
    result, stats = run(mx_config(tmp_path), [str(log)], parallel=False)
    out = io.StringIO()
    summary(result, stats, out)
    assert ("client evidence: 2 (refused sessions, postscreen, spam filters; 1 filter "
            "verdicts without their message)") in out.getvalue()


def test_a_filter_milters_verdict_waits_for_the_envelope_logged_after_it(
    tmp_path: Path,
) -> None:
    """spamass-milter's spamd line comes before qmgr's `from=`: the verdict is judged with
    the envelope (a forwarder's SRS), not without it; one whose message ends without an
    envelope still counts."""
    srs = "SRS0=HHH=TT=b.example=a@fwd.example"
    lines: list[str] = []
    for i in range(6):
        q, lone = f"4DD{i:03d}", f"4EE{i:03d}"
        first = accepted(i * 60, q, "198.51.100.20", srs, f"f{i}@b", name="mx.fwd.example")
        # client, message-id, then the filter's verdict, then qmgr's envelope.
        lines += first[:3]
        lines.append(at(i * 60 + 1, "spamd", SPAMD.format(flag="Y", score=9, mid=f"f{i}@b")))
        if i % 2:
            lines.append(first[3])
            lines.append(at(i * 60 + 2, "postfix/qmgr", f"{q}: removed"))
        else:  # refused by the filter milter: only its reject line names the envelope
            lines.append(at(i * 60 + 2, "postfix/cleanup", f"{q}: milter-reject: "
                            "END-OF-MESSAGE from mx.fwd.example[198.51.100.20]: 5.7.1 Blocked;"
                            f" from=<{srs}> to=<u@our.example> proto=ESMTP helo=<fwd.example>"))
        # A message refused by the filter milter: no qmgr line ever names its envelope.
        lines += accepted(i * 60, lone, BOT, "x@b.example", f"l{i}@b")[:3]
        lines.append(at(i * 60 + 1, "spamd", SPAMD.format(flag="Y", score=9, mid=f"l{i}@b")))
        lines.append(at(i * 60 + 2, "postfix/cleanup", f"{lone}: milter-reject: "
                        "END-OF-MESSAGE from mail.b.example[192.0.2.7]: 5.7.1 Blocked; "
                        "from=<x@b.example> to=<u@our.example> proto=ESMTP helo=<b.example>"))
    f = findings(tmp_path, lines, keys=("ip:198.51.100.20",))
    forwarder = f["ip:198.51.100.20"]["spam_verdicts"]
    assert forwarder["count"] == 6 and forwarder["weight"] == 0.0
    assert f["ip:" + BOT]["spam_verdicts"]["weight"] == 12.0
