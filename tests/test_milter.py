"""The milter driven by pymilter's TestCtx: events reaching the engine, replies going back."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import Milter
import pytest
from Milter import testctx

from extrusion.milter.adapter import ExtrusionMilter, Runtime, Settings
from extrusion.milter.guard import EngineGuard
from extrusion.scoring.events import (
    Action,
    Connection,
    Decision,
    OperatorAction,
    Outcome,
    Stage,
    State,
    StateChange,
    Submission,
)

NOW = 1_700_000_000.0
# Every protocol step TestCtx knows, without the "no reply" ones: TestCtx takes
# a NOREPLY answer for a hang-up, so it plays an MTA that does not offer them.
NO_NR = 0x1FFFFF & ~(
    Milter.P_NR_CONN | Milter.P_NR_HELO | Milter.P_NR_MAIL | Milter.P_NR_RCPT
    | Milter.P_NR_DATA | Milter.P_NR_UNKN | Milter.P_NR_EOH | Milter.P_NR_BODY | Milter.P_NR_HDR
)


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


def decision(action: Action, state: State = State.OK, **kw: object) -> Decision:
    codes = {
        Action.TEMPFAIL: (451, "4.7.1", "Too many failed recipients, try again later"),
        Action.REJECT: (550, "5.7.1", "Sender blocked by provider"),
    }
    code, enhanced, text = codes.get(action, (250, "2.0.0", ""))
    values: dict[str, object] = {"smtp_code": code, "enhanced_code": enhanced, "text": text,
                                 "reason": f"test {action.value}"}
    values.update(kw)
    return Decision(action, state, 3.0, **values)  # type: ignore[arg-type]


@dataclass
class RecordingEngine:
    """Implements EngineAPI; answers from a script and records every call."""

    answers: dict[Stage, Decision] = field(default_factory=dict)
    connections: list[Connection] = field(default_factory=list)
    submissions: list[Submission] = field(default_factory=list)
    decides: list[tuple[str, Stage, int, dict[str, object]]] = field(default_factory=list)
    fail: Callable[[], None] | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)

    def _maybe_fail(self) -> None:
        if self.fail is not None:
            self.fail()

    def sender_key(self, *, client_addr: str, sasl_user: str = "") -> str:
        self._maybe_fail()
        return f"sasl:{sasl_user}" if sasl_user else f"ip:{client_addr}"

    def connection(self, event: Connection) -> None:
        self._maybe_fail()
        with self.lock:
            self.connections.append(event)

    def submission(self, event: Submission) -> None:
        self._maybe_fail()
        with self.lock:
            self.submissions.append(event)

    def outcome(self, event: Outcome) -> None:
        raise AssertionError("the milter never reports outcomes")

    def operator(self, event: OperatorAction) -> StateChange | None:
        raise AssertionError("the milter never acts as an operator")

    def decide(self, sender: str, stage: Stage, recipient_count: int = 1,
               now: float | None = None, **kw: object) -> Decision:
        self._maybe_fail()
        with self.lock:
            self.decides.append((sender, stage, recipient_count, dict(kw, now=now)))
        return self.answers.get(stage, decision(Action.CONTINUE))

    def undelivered_queue_ids(self, sender: str, mta: str = "") -> list[str]:
        return []

    def add_listener(self, listener: Callable[[StateChange], None]) -> None:
        pass

    def refresh(self, now: float | None = None) -> None:
        pass

    def flush(self) -> None:
        pass

    def close(self) -> None:
        pass


@pytest.fixture
def engine() -> RecordingEngine:
    return RecordingEngine()


@pytest.fixture
def make_ctx(engine: RecordingEngine) -> Iterator[Callable[..., Ctx]]:
    guards: list[EngineGuard] = []

    def make(**settings: object) -> Ctx:
        guard = EngineGuard(engine, timeout=2.0)
        guards.append(guard)
        runtime = Runtime(guard, Settings(mta="mta1.example", **settings),  # type: ignore[arg-type]
                          clock=lambda: NOW)
        Milter.factory = lambda: ExtrusionMilter(runtime)
        return Ctx()

    yield make
    for g in guards:
        g.close()


def send(ctx: Ctx, *, sasl: str = "", ip: str = "192.0.2.10", helo: str = "pc1.example.net",
         mail: str = "<alice@example.net>", rcpts: tuple[str, ...] = ("<bob@example.org>",),
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
    rcs.append(ctx._feed_body(__import__("io").BytesIO(b"hello\r\n" * 10)))
    rcs.append(ctx._eom())
    return rcs


# --- events ---------------------------------------------------------------------------------


def test_accepted_message_reaches_the_engine_as_connection_and_submission(
    make_ctx: Callable[..., Ctx], engine: RecordingEngine
) -> None:
    ctx = make_ctx()
    rcs = send(ctx, sasl="alice@example.net",
               rcpts=("<bob@example.org>", "carol@example.com", "<dave@example.com>"),
               headers=(("Received", "from a"), ("Received", "from b"),
                        ("Precedence", "bulk"), ("List-Id", "<news.example.net>"),
                        ("Subject", "never kept"), ("Message-ID", "<m1@example.net>")))
    ctx._close()
    assert set(rcs) == {Milter.CONTINUE}
    assert ctx._reply is None and ctx.quarantined == []
    (conn,) = engine.connections
    assert conn == Connection(time=NOW, client_addr="192.0.2.10",
                              client_name="client.example.net", helos=("pc1.example.net",),
                              sasl_user="alice@example.net", mta="mta1.example")
    (sub,) = engine.submissions
    assert sub.sender == "sasl:alice@example.net"
    assert sub.queue_id == "4ABC123"
    assert sub.envelope_from == "alice@example.net"
    assert sub.recipients == ("bob@example.org", "carol@example.com", "dave@example.com")
    assert sub.headers.received_count == 2
    assert sub.headers.precedence == "bulk"
    assert sub.headers.list_id == "<news.example.net>"
    assert sub.message_id == "<m1@example.net>"
    assert sub.helos == ("pc1.example.net",)
    assert sub.size > 70  # headers + 70 body bytes, the body itself is not kept
    assert [(s, st, n) for s, st, n, _ in engine.decides] == [
        ("sasl:alice@example.net", Stage.MAIL, 0),
        ("sasl:alice@example.net", Stage.RCPT, 1),
        ("sasl:alice@example.net", Stage.RCPT, 1),
        ("sasl:alice@example.net", Stage.RCPT, 1),
        ("sasl:alice@example.net", Stage.EOM, 3),
    ]
    assert all(kw["now"] == NOW and kw["count"] is False for *_, kw in engine.decides)


def test_unauthenticated_client_is_keyed_by_address_ipv6_too(
    make_ctx: Callable[..., Ctx], engine: RecordingEngine
) -> None:
    send(make_ctx(), ip="2001:db8::25")
    assert engine.submissions[0].sender == "ip:2001:db8::25"
    assert engine.connections[0].client_addr == "2001:db8::25"


def test_null_sender_is_recorded_as_empty(make_ctx: Callable[..., Ctx],
                                          engine: RecordingEngine) -> None:
    send(make_ctx(), mail="<>")
    assert engine.submissions[0].envelope_from == ""


def test_rate_limits_setting_makes_the_milter_count(make_ctx: Callable[..., Ctx],
                                                    engine: RecordingEngine) -> None:
    send(make_ctx(rate_limits=True))
    assert all(kw["count"] is True for *_, kw in engine.decides)


# --- replies --------------------------------------------------------------------------------


def test_throttled_sender_is_tempfailed_at_rcpt_with_the_engines_text(
    make_ctx: Callable[..., Ctx], engine: RecordingEngine
) -> None:
    engine.answers[Stage.RCPT] = decision(Action.TEMPFAIL, State.THROTTLED)
    ctx = make_ctx()
    rcs = send(ctx, rcpts=("<a@example.org>",))
    assert rcs[2] == Milter.TEMPFAIL
    assert ctx._reply == ("451", "4.7.1", "Too many failed recipients, try again later")


def test_blocked_sender_is_rejected_at_mail(make_ctx: Callable[..., Ctx],
                                            engine: RecordingEngine) -> None:
    engine.answers[Stage.MAIL] = decision(Action.REJECT, State.BLOCKED)
    ctx = make_ctx()
    rcs = send(ctx)
    assert rcs[-1] == Milter.REJECT
    assert ctx._reply == ("550", "5.7.1", "Sender blocked by provider")
    assert engine.submissions == []


def test_held_sender_is_quarantined_and_accepted(make_ctx: Callable[..., Ctx],
                                                 engine: RecordingEngine) -> None:
    engine.answers[Stage.RCPT] = decision(Action.HOLD, State.HELD)
    engine.answers[Stage.EOM] = decision(Action.HOLD, State.HELD, reason="held: 31 failed rcpts")
    ctx = make_ctx()
    rcs = send(ctx)
    assert rcs[-1] == Milter.CONTINUE and set(rcs) == {Milter.CONTINUE}
    assert ctx.quarantined == ["held: 31 failed rcpts"]
    assert [s.queue_id for s in engine.submissions] == ["4ABC123"]


def test_reply_codes_from_the_engine_are_checked(make_ctx: Callable[..., Ctx],
                                                 engine: RecordingEngine) -> None:
    engine.answers[Stage.RCPT] = decision(Action.TEMPFAIL, smtp_code=250, enhanced_code="2.0.0",
                                          text="100% \r\nbad")
    ctx = make_ctx()
    send(ctx)
    assert ctx._reply == ("451", "4.7.1", "100? ??bad")


def test_header_is_added_only_when_configured_and_forged_copies_go(
    make_ctx: Callable[..., Ctx], engine: RecordingEngine
) -> None:
    ctx = make_ctx()
    send(ctx)
    assert ctx.added == []
    ctx = make_ctx(add_header=True)
    send(ctx, headers=(("X-Extrusion", "score=0 state=ok"), ("x-extrusion", "forged")))
    assert ctx.added == [("X-Extrusion", "score=3.0 state=ok")]
    assert ctx.changed == [("X-Extrusion", 2, ""), ("X-Extrusion", 1, "")]


# --- sessions -------------------------------------------------------------------------------


def test_every_helo_is_kept_in_order_and_a_session_without_mail_still_counts(
    make_ctx: Callable[..., Ctx], engine: RecordingEngine
) -> None:
    ctx = make_ctx()
    assert ctx._connect(helo="first.example", ip="198.51.100.7") == Milter.CONTINUE
    assert ctx._helo("second.example") == Milter.CONTINUE
    assert ctx._helo("[198.51.100.7]") == Milter.CONTINUE
    ctx._close()
    (conn,) = engine.connections
    assert conn.helos == ("first.example", "second.example", "[198.51.100.7]")
    assert engine.submissions == [] and engine.decides == []


def test_aborted_message_leaves_nothing_and_the_next_one_is_whole(
    make_ctx: Callable[..., Ctx], engine: RecordingEngine
) -> None:
    ctx = make_ctx()
    ctx._setsymval("i", "QID2")
    ctx._connect()
    ctx._envfrom("<first@example.net>")
    ctx._envrcpt("<x@example.org>")
    ctx._priv.abort()  # RSET: the MTA aborts the transaction, the connection stays
    ctx._envfrom("<second@example.net>")
    ctx._envrcpt("<y@example.org>")
    assert ctx._eom() == Milter.CONTINUE
    ctx._close()
    (sub,) = engine.submissions
    assert (sub.envelope_from, sub.recipients, sub.queue_id) == (
        "second@example.net", ("y@example.org",), "QID2")
    assert len(engine.connections) == 1  # one session, one connection event


def test_connection_dropped_mid_message_records_no_submission(
    make_ctx: Callable[..., Ctx], engine: RecordingEngine
) -> None:
    ctx = make_ctx()
    ctx._connect()
    ctx._envfrom("<a@example.net>")
    ctx._envrcpt("<b@example.org>")
    ctx._abort()  # abort + close, as libmilter does when the client goes away
    assert engine.submissions == []
    assert len(engine.connections) == 1


def test_local_submission_takes_the_client_address_from_the_macro(
    make_ctx: Callable[..., Ctx], engine: RecordingEngine
) -> None:
    ctx = make_ctx()
    ctx._setsymval("{client_addr}", "::ffff:192.0.2.99")
    ctx._negotiate()
    ctx._stage = Milter.M_CONNECT
    assert Milter.connect_callback(ctx, "localhost", 0, None) == Milter.CONTINUE
    ctx._stage = None
    ctx._envfrom("<a@example.net>")
    assert engine.decides[0][0] == "ip:192.0.2.99"


# --- hostile input --------------------------------------------------------------------------


class RawCtx(Ctx):
    """Like pymilter's C layer: a macro that is not UTF-8 raises UnicodeDecodeError."""

    def getsymval(self, name: str) -> str | None:
        value = super().getsymval(name)
        if isinstance(value, bytes):
            return value.decode("utf-8")  # raises, carrying the raw bytes
        return value  # type: ignore[no-any-return]


HOSTILE_HELOS = [
    ("evil\x1b[2J\r\nMAIL FROM:<x>", "evil\\x1b[2J\\x0d\\x0aMAIL FROM:<x>"),
    ("a" * 10_000, "a" * 255 + "..."),  # cut, and marked so the engine sees it was longer
    ("caf\udce9.example", "caf\\xe9.example"),  # pymilter's surrogateescape of b"caf\xe9"
    ("back\\slash", "back\\\\slash"),
]


@pytest.mark.parametrize(("helo", "recorded"), HOSTILE_HELOS)
def test_hostile_helo_is_recorded_escaped_and_bounded(
    make_ctx: Callable[..., Ctx], engine: RecordingEngine, helo: str, recorded: str
) -> None:
    ctx = make_ctx()
    assert set(send(ctx, helo=helo)) == {Milter.CONTINUE}
    assert engine.connections[0].helos == (recorded,)
    assert engine.submissions[0].helos == (recorded,)


def test_hostile_envelope_and_headers_are_recorded_escaped(
    make_ctx: Callable[..., Ctx], engine: RecordingEngine
) -> None:
    ctx = make_ctx()
    rcs = send(ctx, mail="bare@example.net",
               rcpts=("no-brackets@example.org", "<\udcff\udcfe@example.org>",
                      "<" + "x" * 5000 + "@example.org>", "<@relay.example:user@example.org>"),
               headers=(("Precedence", "bulk\x00\x07"), ("X-Spam-Status", "Yes\udc80 " * 500)))
    assert set(rcs) == {Milter.CONTINUE}
    (sub,) = engine.submissions
    assert sub.envelope_from == "bare@example.net"
    assert sub.recipients[0] == "no-brackets@example.org"
    assert sub.recipients[1] == "\\xff\\xfe@example.org"
    assert sub.recipients[2] == "x" * 320 + "..."
    assert sub.recipients[3] == "user@example.org"
    assert sub.headers.precedence == "bulk\\x00\\x07"
    assert sub.headers.x_spam_status.startswith("Yes\\x80 Yes\\x80")
    assert len(sub.headers.x_spam_status) == 256 + 3


def test_undecodable_macros_are_recorded_escaped(engine: RecordingEngine) -> None:
    guard = EngineGuard(engine, timeout=2.0)
    runtime = Runtime(guard, Settings(), clock=lambda: NOW)
    Milter.factory = lambda: ExtrusionMilter(runtime)
    try:
        ctx = RawCtx()
        ctx._setsymval("{auth_authen}", b"j\xf6rg")
        assert set(send(ctx, queue_id=b"Q\xff1")) == {Milter.CONTINUE}
    finally:
        guard.close()
    assert engine.connections[0].sasl_user == "j\\xf6rg"
    assert engine.submissions[0].sender == "sasl:j\\xf6rg"
    assert engine.submissions[0].queue_id == "Q\\xff1"


def test_helo_pymilter_could_not_decode_is_taken_from_sendmails_macro(
    engine: RecordingEngine,
) -> None:
    guard = EngineGuard(engine, timeout=2.0)
    runtime = Runtime(guard, Settings(), clock=lambda: NOW)
    Milter.factory = lambda: ExtrusionMilter(runtime)
    try:
        ctx = RawCtx()
        ctx._setsymval("s", b"\xff\xfebot")
        # The HELO callback never ran: pymilter failed to decode the name in C.
        ctx._negotiate()
        ctx._stage = Milter.M_CONNECT
        Milter.connect_callback(ctx, "bot.example", 2, "203.0.113.5")
        ctx._stage = None
        assert ctx._envfrom("<a@example.net>") == Milter.CONTINUE
    finally:
        guard.close()
    assert engine.connections[0].helos == ("\\xff\\xfebot",)


def test_more_than_the_bound_of_helos_and_recipients_is_not_kept(
    make_ctx: Callable[..., Ctx], engine: RecordingEngine
) -> None:
    ctx = make_ctx()
    ctx._connect(helo="h0")
    for n in range(1, 50):
        ctx._helo(f"h{n}")
    ctx._envfrom("<a@example.net>")
    for n in range(1500):
        assert ctx._envrcpt(f"<r{n}@example.org>") == Milter.CONTINUE
    assert ctx._eom() == Milter.CONTINUE
    assert engine.connections[0].helos == tuple(f"h{n}" for n in range(10))
    assert len(engine.submissions[0].recipients) == 1000


# --- failing safe (a stand-in engine: these faults cannot be caused on purpose otherwise) ---


class EngineDown(RuntimeError):
    pass


def _raise() -> None:
    raise EngineDown("store exploded")


def test_engine_errors_let_mail_through_log_once_and_keep_the_events(
    make_ctx: Callable[..., Ctx], engine: RecordingEngine, caplog: pytest.LogCaptureFixture
) -> None:
    engine.fail = _raise
    caplog.set_level("INFO", logger="extrusion.milter")
    ctx = make_ctx()
    for n in range(5):
        ctx = Ctx()  # a new session of the same milter process
        assert set(send(ctx, queue_id=f"Q{n}")) == {Milter.CONTINUE}
        assert ctx._reply is None
        ctx._close()
    errors = [r for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "store exploded" in errors[0].getMessage()
    guard = ctx._priv.rt.guard
    # Nothing reached the engine, nothing is lost: 5 connections and 5 submissions wait.
    assert engine.connections == [] and engine.submissions == []
    assert len(guard.backlog) == 10
    engine.fail = None
    assert guard.replay_backlog() == 10
    assert [s.queue_id for s in engine.submissions] == [f"Q{n}" for n in range(5)]
    # Sent with the address key the milter falls back to.
    assert {s.sender for s in engine.submissions} == {"ip:192.0.2.10"}
    assert any("answers again after" in r.getMessage() for r in caplog.records)


def test_engine_errors_tempfail_when_configured(
    make_ctx: Callable[..., Ctx], engine: RecordingEngine
) -> None:
    engine.fail = _raise
    ctx = make_ctx(on_error="tempfail")
    assert send(ctx)[-1] == Milter.TEMPFAIL
    assert ctx._reply == ("451", "4.3.0", "Temporary local problem, try again later")


def test_slow_engine_is_not_waited_for_and_calls_do_not_pile_up(
    engine: RecordingEngine,
) -> None:
    release = threading.Event()
    engine.fail = lambda: release.wait(5) and None
    guard = EngineGuard(engine, timeout=0.1)
    runtime = Runtime(guard, Settings(), clock=lambda: NOW)
    Milter.factory = lambda: ExtrusionMilter(runtime)
    try:
        ctx = Ctx()
        ctx._connect()
        started = __import__("time").monotonic()
        assert ctx._envfrom("<a@example.net>") == Milter.CONTINUE  # connection record timed out
        assert ctx._envrcpt("<b@example.org>") == Milter.CONTINUE  # breaker open: at once
        assert ctx._eom() == Milter.CONTINUE
        assert __import__("time").monotonic() - started < 1.0
        release.set()
        engine.fail = None
        guard._pool.shutdown(wait=True)  # let the stuck call finish
    finally:
        guard.close()
    # The stuck connection call succeeded in the end; the refused submission was kept and replayed.
    assert len(engine.connections) == 1
    assert [s.recipients for s in engine.submissions] == [("b@example.org",)]


def test_an_event_whose_call_timed_out_and_then_failed_is_kept_once(
    engine: RecordingEngine,
) -> None:
    release = threading.Event()

    def slow_then_fail() -> None:
        release.wait(5)
        raise EngineDown("late failure")

    engine.fail = slow_then_fail
    guard = EngineGuard(engine, timeout=0.05)
    event = Connection(time=NOW, client_addr="192.0.2.1")
    guard.record(event)
    assert len(guard.backlog) == 0  # still running: not kept yet, not doubled later
    release.set()
    guard._pool.shutdown(wait=True)
    assert len(guard.backlog) == 1
    engine.fail = None
    guard.close()
    assert engine.connections == [event]


def test_backlog_survives_a_restart(tmp_path: __import__("pathlib").Path,
                                    engine: RecordingEngine) -> None:
    from extrusion.milter.backlog import Backlog
    from extrusion.scoring.events import Headers

    path = tmp_path / "spool" / "milter-backlog.jsonl"
    events = [
        Connection(time=NOW, client_addr="192.0.2.1", helos=("a\\x00",), sasl_user="u"),
        Submission(time=NOW, sender="ip:192.0.2.1", queue_id="Q1", envelope_from="",
                   recipients=("a@example.org", "b@example.org"), size=10,
                   headers=Headers(precedence="bulk", received_count=2)),
    ]
    engine.fail = _raise
    guard = EngineGuard(engine, timeout=1.0, backlog=Backlog(path))
    for event in events:
        guard.record(event)
    guard.close()  # cannot replay: saved
    assert path.exists()
    engine.fail = None
    backlog = Backlog(path)
    assert backlog.load() == 2 and not path.exists()
    guard = EngineGuard(engine, timeout=1.0, backlog=backlog)
    guard.close()
    assert engine.connections == [events[0]] and engine.submissions == [events[1]]
    assert not path.exists()


def test_unreadable_backlog_lines_are_skipped_with_an_error(
    tmp_path: __import__("pathlib").Path, caplog: pytest.LogCaptureFixture
) -> None:
    from extrusion.milter.backlog import Backlog

    path = tmp_path / "b.jsonl"
    path.write_text('{"type": "Connection", "time": 1.0, "client_addr": "192.0.2.1"}\n'
                    "not json\n"
                    '{"type": "Nonsense"}\n')
    backlog = Backlog(path)
    assert backlog.load() == 1
    assert sum("unreadable event skipped" in r.getMessage() for r in caplog.records) == 2
