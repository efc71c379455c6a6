"""The milter driven by pymilter's TestCtx against the real engine (SQLite store in tmp_path).

Each test plays SMTP sessions through the callbacks and checks three things:
the replies the MTA gets, the events that reach the engine, and what the
engine made of them (its answers and the rows in its store).
"""

from __future__ import annotations

import io
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import Milter
import pytest
from Milter import testctx

from extrusion import config as configmod
from extrusion.milter.adapter import ExtrusionMilter, Runtime, Settings
from extrusion.milter.guard import EngineGuard
from extrusion.scoring.engine import Engine, open_engine
from extrusion.scoring.events import Connection, Decision, Stage, Submission

from . import helpers

# Every protocol step TestCtx knows, without the "no reply" ones: TestCtx takes
# a NOREPLY answer for a hang-up, so it plays an MTA that does not offer them.
NO_NR = 0x1FFFFF & ~(
    Milter.P_NR_CONN | Milter.P_NR_HELO | Milter.P_NR_MAIL | Milter.P_NR_RCPT
    | Milter.P_NR_DATA | Milter.P_NR_UNKN | Milter.P_NR_EOH | Milter.P_NR_BODY | Milter.P_NR_HDR
)
MTA = "mta1.example"
OVERRIDES = [
    {"match": "sasl:blocked@example.net", "action": "block", "reason": "abuse desk ticket 1234"},
    {"match": "sasl:held@example.net", "action": "hold", "reason": "abuse desk ticket 1235"},
    {"match": "sasl:tiny@example.net", "action": "limits", "limits": "tiny"},
]


class Ctx(testctx.TestCtx):  # type: ignore[misc]
    """TestCtx that records quarantine and header edits (the stock one cannot)."""

    def __init__(self) -> None:
        super().__init__()
        self.quarantined: list[str] = []
        self.added: list[tuple[str, str]] = []
        self.changed: list[tuple[str, int, str]] = []

    def _negotiate(self) -> int:
        self._body = None
        self._bodyreplaced = False
        self._priv = None
        self._opts = [Milter.CURR_ACTS, NO_NR, 0, 0]
        self._stage = -1
        rc: int = Milter.negotiate_callback(self, self._opts)
        self._protocol = self._opts[1]
        return rc

    def quarantine(self, reason: str) -> None:
        self.quarantined.append(reason)

    def addheader(self, name: str, value: str, idx: int) -> None:
        self.added.append((name, value))

    def chgheader(self, name: str, idx: int, value: str) -> None:
        self.changed.append((name, idx, value))


class RawCtx(Ctx):
    """Like pymilter's C layer: a macro that is not UTF-8 raises UnicodeDecodeError."""

    def getsymval(self, name: str) -> str | None:
        value = super().getsymval(name)
        if isinstance(value, bytes):
            return value.decode("utf-8")  # raises, carrying the raw bytes
        return value  # type: ignore[no-any-return]


class Observed:
    """The real engine, with the events and questions it receives kept for the test.

    `fail`, when set, runs before each call: the fault-injection tests use it to
    make the engine raise, the one fault that cannot be caused for real.
    """

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.connections: list[Connection] = []
        self._submissions: list[Submission] = []
        self.decides: list[tuple[str, Stage, int, dict[str, Any], Decision]] = []
        self.fail: Callable[[], None] | None = None
        self._lock = threading.Lock()

    @property
    def submissions(self) -> list[Submission]:
        return self._submissions

    def _check(self) -> None:
        if self.fail is not None:
            self.fail()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)

    def sender_key(self, *, client_addr: str, sasl_user: str = "") -> str:
        self._check()
        return self.engine.sender_key(client_addr=client_addr, sasl_user=sasl_user)

    def connection(self, event: Connection) -> None:
        self._check()
        with self._lock:
            self.connections.append(event)
        self.engine.connection(event)

    def submission(self, event: Submission) -> None:
        self._check()
        with self._lock:
            self._submissions.append(event)
        self.engine.submission(event)

    def decide(self, sender: str, stage: Stage, recipient_count: int = 1,
               now: float | None = None, **kw: Any) -> Decision:
        self._check()
        d = self.engine.decide(sender, stage, recipient_count, now, **kw)
        with self._lock:
            self.decides.append((sender, stage, recipient_count, dict(kw, now=now), d))
        return d


def make_config(tmp_path: Path, **milter: Any) -> configmod.Config:
    return helpers.config(tmp_path, hostname=MTA, milter=milter,
                          limits={"tiny": {"recipients_per_hour": 1}}, overrides=OVERRIDES)


class Milters:
    """Builds the milter process: real engine, guard, and Milter.factory for TestCtx."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.now = time.time()
        self.engine: Observed | None = None
        self.guard: EngineGuard | None = None

    def start(self, **milter: Any) -> Observed:
        config = make_config(self.tmp_path, **milter)
        self.engine = Observed(open_engine(config, clock=lambda: self.now))
        self.guard = EngineGuard(self.engine, timeout=milter.get("engine_timeout", 2.0))
        runtime = Runtime(self.guard, Settings.from_config(config), clock=lambda: self.now)
        Milter.factory = lambda: ExtrusionMilter(runtime)
        return self.engine

    def close(self) -> None:
        if self.guard is not None:
            self.guard.close()  # closes the engine too
            self.guard = None


@pytest.fixture
def milters(tmp_path: Path) -> Iterator[Milters]:
    m = Milters(tmp_path)
    yield m
    m.close()


@pytest.fixture
def engine(milters: Milters) -> Observed:
    return milters.start()


def send(ctx: Ctx, *, sasl: str | bytes = "", ip: str = "192.0.2.10",
         helo: str = "pc1.example.net", mail: str = "<alice@example.net>",
         rcpts: tuple[str, ...] = ("<bob@example.org>",),
         headers: tuple[tuple[str, str], ...] = (), queue_id: str | bytes = "4ABC123",
         ) -> list[int]:
    """One SMTP session with one message; returns the reply of each step."""
    if sasl:
        ctx._setsymval("{auth_authen}", sasl)
    ctx._setsymval("i", queue_id)
    rcs = [ctx._connect(host="client.example.net", helo=helo, ip=ip)]
    rcs.append(ctx._envfrom(mail, "SIZE=1000"))
    if rcs[-1] != Milter.CONTINUE:
        return rcs
    for r in rcpts:
        rcs.append(ctx._envrcpt(r))
    for name, value in headers:
        rcs.append(ctx._header(name, value))
    rcs.append(ctx._eoh())
    rcs.append(ctx._feed_body(io.BytesIO(b"hello\r\n" * 10)))
    rcs.append(ctx._eom())
    return rcs


def stored(engine: Observed, sender: str) -> list[Any]:
    engine.flush()
    return engine.engine.store.messages(sender)


# --- events ---------------------------------------------------------------------------------


def test_accepted_message_reaches_the_engine_as_connection_and_submission(
    engine: Observed, milters: Milters
) -> None:
    ctx = Ctx()
    rcs = send(ctx, sasl="alice@example.net",
               rcpts=("<bob@example.org>", "carol@example.com", "<dave@example.com>"),
               headers=(("Received", "from a"), ("Received", "from b"),
                        ("Precedence", "bulk"), ("List-Id", "<news.example.net>"),
                        ("Subject", "never kept"), ("Message-ID", "<m1@example.net>")))
    ctx._close()
    assert set(rcs) == {Milter.CONTINUE}
    assert ctx._reply is None and ctx.quarantined == []
    (conn,) = engine.connections
    # Judged at MAIL with its envelope sender (HELO = MAIL FROM needs no accepted RCPT).
    assert conn == Connection(time=milters.now, client_addr="192.0.2.10",
                              client_name="client.example.net", helos=("pc1.example.net",),
                              sasl_user="alice@example.net", mta=MTA,
                              envelope_from="alice@example.net")
    (sub,) = engine.submissions
    assert (sub.sender, sub.queue_id, sub.envelope_from, sub.mta) == (
        "sasl:alice@example.net", "4ABC123", "alice@example.net", MTA)
    assert sub.recipients == ("bob@example.org", "carol@example.com", "dave@example.com")
    assert (sub.headers.received_count, sub.headers.precedence, sub.headers.list_id) == (
        2, "bulk", "<news.example.net>")
    assert sub.message_id == "<m1@example.net>"
    assert sub.size > 70  # headers + 70 body bytes; the body itself is not kept
    assert [(s, st, n) for s, st, n, _kw, _d in engine.decides] == [
        ("sasl:alice@example.net", Stage.MAIL, 0),
        ("sasl:alice@example.net", Stage.RCPT, 1),
        ("sasl:alice@example.net", Stage.RCPT, 1),
        ("sasl:alice@example.net", Stage.RCPT, 1),
        ("sasl:alice@example.net", Stage.EOM, 3),
    ]
    assert [kw.get("recipient") for _s, st, _n, kw, _d in engine.decides if st is Stage.RCPT] == [
        "bob@example.org", "carol@example.com", "dave@example.com"]
    # Postfix counts rate limits in the policy daemon: the milter only asks.
    assert all(kw["now"] == milters.now and kw["count"] is False
               for *_, kw, _d in engine.decides)
    # And the engine recorded it: the queue id ties later log outcomes to the sender.
    (msg,) = stored(engine, "sasl:alice@example.net")
    assert (msg.queue_id, msg.mta, msg.rcpt_count, msg.helo) == (
        "4ABC123", MTA, 3, "pc1.example.net")
    assert msg.message_id == ""  # read from the headers, but not stored (since 0009)
    assert engine.undelivered_queue_ids("sasl:alice@example.net") == ["4ABC123"]


def test_unauthenticated_client_is_keyed_by_address_ipv6_too(engine: Observed) -> None:
    send(Ctx(), ip="2001:db8::25")
    assert engine.connections[0].client_addr == "2001:db8::25"
    assert [m.client_addr for m in stored(engine, "ip:2001:db8::25")] == ["2001:db8::25"]


def test_null_sender_is_recorded_as_a_bounce(engine: Observed) -> None:
    send(Ctx(), mail="<>")
    (msg,) = stored(engine, "ip:192.0.2.10")
    assert msg.envelope_from == "" and msg.null_sender


def test_a_session_without_mail_still_shows_its_helos(engine: Observed) -> None:
    ctx = Ctx()
    assert ctx._connect(helo="first.example", ip="198.51.100.7") == Milter.CONTINUE
    assert ctx._helo("JOHNS-PC") == Milter.CONTINUE
    assert ctx._helo("[198.51.100.7]") == Milter.CONTINUE
    ctx._close()
    (conn,) = engine.connections
    assert conn.helos == ("first.example", "JOHNS-PC", "[198.51.100.7]")
    assert engine.submissions == [] and engine.decides == []
    engine.flush()
    row = engine.engine.store.sender("ip:198.51.100.7")
    assert row is not None and row.score > 0
    examples = row.findings["helo_anomalies"]["examples"]
    assert "JOHNS-PC (helo_no_dot)" in examples


# --- replies --------------------------------------------------------------------------------


def test_sender_over_its_limit_is_tempfailed_at_rcpt_when_the_milter_counts(
    milters: Milters, caplog: pytest.LogCaptureFixture
) -> None:
    engine = milters.start(rate_limits=True)  # Sendmail: the milter enforces the limits
    caplog.set_level("INFO", logger="extrusion.milter")
    ctx = Ctx()
    rcs = send(ctx, sasl="tiny@example.net", queue_id="Q1",
               rcpts=("<a@example.org>", "<b@example.org>", "<c@example.org>"))
    assert rcs[2:5] == [Milter.CONTINUE, Milter.TEMPFAIL, Milter.TEMPFAIL]
    assert ctx._reply == ("451", "4.7.1",
                          "extrusion: rate limited (too many recipients per hour), try again later")
    assert rcs[-1] == Milter.CONTINUE  # the message goes on with the recipient it has
    assert engine.submissions[0].recipients == ("a@example.org",)
    lines = [r.getMessage() for r in caplog.records if "decision" in r.getMessage()]
    assert len(lines) == 2 and lines[0].startswith(
        "decision sender=sasl:tiny@example.net queue_id=Q1 stage=rcpt action=tempfail ")
    assert "reason=rate limit [tiny] recipients" in lines[0]


def test_limits_are_left_to_the_policy_daemon_by_default(engine: Observed) -> None:
    rcs = send(Ctx(), sasl="tiny@example.net",
               rcpts=("<a@example.org>", "<b@example.org>", "<c@example.org>"))
    assert set(rcs) == {Milter.CONTINUE}


def test_blocked_sender_is_rejected_at_mail(engine: Observed,
                                            caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("INFO", logger="extrusion.milter")
    ctx = Ctx()
    rcs = send(ctx, sasl="blocked@example.net", queue_id="Q7")
    assert rcs[-1] == Milter.REJECT
    assert ctx._reply == ("550", "5.7.1",
                          "extrusion: sending refused (by decision of the mail administrator)")
    assert engine.submissions == []
    (line,) = [r.getMessage() for r in caplog.records if "decision" in r.getMessage()]
    assert line.startswith("decision sender=sasl:blocked@example.net queue_id=Q7 stage=mail "
                           "action=reject state=blocked reason=")


def test_held_sender_is_quarantined_accepted_and_recorded(
    engine: Observed, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="extrusion.milter")
    ctx = Ctx()
    rcs = send(ctx, sasl="held@example.net", queue_id="QH1")
    assert set(rcs) == {Milter.CONTINUE}
    (reason,) = ctx.quarantined
    assert reason.startswith("held (score")
    assert [s.queue_id for s in engine.submissions] == ["QH1"]
    assert engine.undelivered_queue_ids("sasl:held@example.net") == ["QH1"]
    (line,) = [r.getMessage() for r in caplog.records if "decision" in r.getMessage()]
    assert "queue_id=QH1 stage=eom action=hold state=held" in line


def test_bad_helo_is_refused_at_mail_when_configured(milters: Milters) -> None:
    milters.start(reject_bad_helo=True)
    ctx = Ctx()
    assert send(ctx, helo="JOHNS-PC")[-1] == Milter.REJECT
    assert ctx._reply == ("550", "5.7.1", "extrusion: HELO/EHLO name rejected (suspicious HELO)")
    ctx = Ctx()
    assert set(send(ctx, helo="pc1.example.net")) == {Milter.CONTINUE}


def test_bad_helo_alone_is_evidence_not_refusal_by_default(engine: Observed) -> None:
    assert set(send(Ctx(), helo="JOHNS-PC")) == {Milter.CONTINUE}


def test_header_is_added_only_when_configured_and_forged_copies_go(
    milters: Milters, tmp_path: Path
) -> None:
    milters.start()
    ctx = Ctx()
    send(ctx)
    assert ctx.added == []
    milters.close()
    milters.start(add_header=True)
    ctx = Ctx()
    send(ctx, headers=(("X-Extrusion", "score=0 state=ok"), ("x-extrusion", "forged")))
    assert ctx.added == [("X-Extrusion", "score=0.0 state=ok")]
    assert ctx.changed == [("X-Extrusion", 2, ""), ("X-Extrusion", 1, "")]


# --- sessions -------------------------------------------------------------------------------


def test_aborted_message_leaves_nothing_and_the_next_one_is_whole(engine: Observed) -> None:
    ctx = Ctx()
    ctx._setsymval("i", "QID2")
    ctx._connect(ip="192.0.2.10")
    ctx._envfrom("<first@example.net>")
    ctx._envrcpt("<x@example.org>")
    ctx._priv.abort()  # RSET: the MTA aborts the transaction, the connection stays
    ctx._envfrom("<second@example.net>")
    ctx._envrcpt("<y@example.org>")
    assert ctx._eom() == Milter.CONTINUE
    ctx._close()
    (msg,) = stored(engine, "ip:192.0.2.10")
    assert (msg.envelope_from, msg.queue_id, [r.recipient for r in msg.recipients]) == (
        "second@example.net", "QID2", ["y@example.org"])
    assert len(engine.connections) == 1  # one session, one connection event


def test_connection_dropped_mid_message_records_no_submission(engine: Observed) -> None:
    ctx = Ctx()
    ctx._connect(ip="192.0.2.10")
    ctx._envfrom("<a@example.net>")
    ctx._envrcpt("<b@example.org>")
    ctx._abort()  # abort + close, as libmilter does when the client goes away
    assert engine.submissions == [] and stored(engine, "ip:192.0.2.10") == []
    assert len(engine.connections) == 1


def test_local_submission_takes_the_client_address_from_the_macro(engine: Observed) -> None:
    ctx = Ctx()
    ctx._setsymval("{client_addr}", "::ffff:192.0.2.99")
    ctx._negotiate()
    ctx._stage = Milter.M_CONNECT
    assert Milter.connect_callback(ctx, "localhost", 0, None) == Milter.CONTINUE
    ctx._stage = None
    ctx._envfrom("<a@example.net>")
    assert engine.decides[0][0] == "ip:192.0.2.99"


def test_a_message_without_queue_id_is_recorded_under_a_made_up_one(
    engine: Observed, caplog: pytest.LogCaptureFixture
) -> None:
    for _ in range(2):
        ctx = Ctx()
        ctx._connect(ip="192.0.2.10")
        ctx._envfrom("<a@example.net>")
        ctx._envrcpt("<b@example.org>")
        assert ctx._eom() == Milter.CONTINUE
        ctx._close()
    ids = [m.queue_id for m in stored(engine, "ip:192.0.2.10")]
    assert len(ids) == 2 and len(set(ids)) == 2 and all(i.startswith("NOQUEUE-") for i in ids)
    assert sum("no queue id" in r.getMessage() for r in caplog.records) == 1


# --- hostile input --------------------------------------------------------------------------


HOSTILE_HELOS = [
    ("evil\x1b[2J\r\nMAIL FROM:<x>", "evil\\x1b[2J\\x0d\\x0aMAIL FROM:<x>"),
    ("a" * 10_000, "a" * 252 + "..."),  # cut, and marked, to the store's 255 characters
    ("caf\udce9.example", "caf\\xe9.example"),  # pymilter's surrogateescape of b"caf\xe9"
    ("back\\slash", "back\\\\slash"),
]


@pytest.mark.parametrize(("helo", "recorded"), HOSTILE_HELOS)
def test_hostile_helo_is_recorded_escaped_and_bounded(
    engine: Observed, helo: str, recorded: str
) -> None:
    assert set(send(Ctx(), helo=helo)) == {Milter.CONTINUE}
    assert engine.connections[0].helos == (recorded,)
    (msg,) = stored(engine, "ip:192.0.2.10")
    assert msg.helo == recorded


def test_hostile_envelope_and_headers_are_recorded_escaped(engine: Observed) -> None:
    rcs = send(Ctx(), mail="bare@example.net",
               rcpts=("no-brackets@example.org", "<\udcff\udcfe@example.org>",
                      "<" + "x" * 5000 + "@example.org>", "<@relay.example:user@example.org>"),
               headers=(("Precedence", "bulk\x00\x07"), ("X-Spam-Status", "Yes\udc80 " * 500),
                        ("List-Id", "<l\x1b.example>")))
    assert set(rcs) == {Milter.CONTINUE}
    (sub,) = engine.submissions
    assert sub.envelope_from == "bare@example.net"
    assert sub.recipients == ("no-brackets@example.org", "\\xff\\xfe@example.org",
                              "x" * 317 + "...", "user@example.org")
    assert sub.headers.precedence == "bulk\\x00\\x07"
    assert sub.headers.x_spam_status.startswith("Yes\\x80 Yes\\x80")
    assert len(sub.headers.x_spam_status) == 256 + 3
    (msg,) = stored(engine, "ip:192.0.2.10")
    assert [r.recipient for r in msg.recipients] == list(sub.recipients)
    assert sub.headers.list_id == "<l\\x1b.example>"


def test_undecodable_macros_are_recorded_escaped(engine: Observed) -> None:
    assert set(send(RawCtx(), sasl=b"j\xf6rg", queue_id=b"Q\xff1")) == {Milter.CONTINUE}
    assert engine.connections[0].sasl_user == "j\\xf6rg"
    (msg,) = stored(engine, "sasl:j\\xf6rg")
    assert msg.queue_id == "Q\\xff1"


def test_helo_pymilter_could_not_decode_is_taken_from_sendmails_macro(engine: Observed) -> None:
    ctx = RawCtx()
    ctx._setsymval("s", b"\xff\xfebot")
    ctx._connect(helo="first.example", ip="203.0.113.5")
    # The second HELO never reached hello(): pymilter failed to decode it in C.
    assert ctx._envfrom("<a@example.net>") == Milter.CONTINUE
    assert engine.connections[0].helos == ("first.example", "\\xff\\xfebot")


def test_more_than_the_bound_of_helos_and_recipients_is_not_kept(engine: Observed) -> None:
    ctx = Ctx()
    ctx._connect(helo="h0")
    for n in range(1, 50):
        ctx._helo(f"h{n}")
    ctx._envfrom("<a@example.net>")
    for n in range(1500):
        assert ctx._envrcpt(f"<r{n}@example.org>") == Milter.CONTINUE
    assert ctx._eom() == Milter.CONTINUE
    assert engine.connections[0].helos == tuple(f"h{n}" for n in range(10))
    assert len(engine.submissions[0].recipients) == 1000


def test_reply_codes_and_texts_are_made_safe_for_the_mta() -> None:
    from extrusion.milter import replies
    from extrusion.scoring.events import Action, State

    odd = Decision(Action.TEMPFAIL, State.THROTTLED, 1.0, 250, "2.0.0", "100% \r\nbad", "r")
    assert replies.for_decision(odd) == replies.Reply("451", "4.7.1", "100? ??bad")
    odd = Decision(Action.REJECT, State.BLOCKED, 1.0, 451, "4.7.1", "", "r")
    assert replies.for_decision(odd) == replies.Reply(
        "550", "5.7.1", "Mail from you is refused, contact your provider")
    assert replies.for_decision(Decision(Action.HOLD, State.HELD, 1.0)) is None


def test_negotiation_asks_for_a_reply_at_data_but_none_for_headers_and_body() -> None:
    # DATA is answered (an unanswered DATA-stage packet costs ~40 ms per SMTP
    # session over TCP: delayed ACK meets Nagle); headers and body are not.
    # protocol_mask() holds the protocol bits the milter does NOT ask the MTA for.
    mask = ExtrusionMilter.protocol_mask()
    assert mask & Milter.P_NODATA, "DATA must be sent to the milter"
    assert mask & Milter.P_NR_DATA, "DATA must be answered"
    assert not mask & Milter.P_NR_HDR and not mask & Milter.P_NR_BODY
