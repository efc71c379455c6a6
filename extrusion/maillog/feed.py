"""`LogFeed`: log lines in, engine events out — the one object the live feed and replay share.

    feed = LogFeed(engine)           # or LogFeed.from_config(engine, cfg)
    feed.line(text)                  # per line from a file follower or stdin
    feed.lines(texts)                # a batch of lines (a replay's reader): the same
    feed.entry(t, host, prog, pid, msg)   # per syslog datagram, already split
    feed.finish()                    # end of input / shutdown: flush what is pending

Each line is split (timestamp, host, program), handed to the parser for its
MTA (chosen by the program name: the last component of the tag for Postfix),
and the records are joined per queue id into `Submission`/`Outcome` events;
Postfix's commonest lines go straight into the joiner (`postfixlanes.py`).
Nothing a line contains can raise out of `line()`: unreadable lines are
counted in `stats.garbled` (a few kept in `stats.examples`, escaped), lines of
other programs or of no interest in `stats.ignored`. A parser that fails on a
line anyway (a bug) costs that line only: it is counted as garbled and in
`stats.parser_errors`, and the feed goes on. A line longer than
`lines.MAX_LINE` is garbled too (`stats.too_long`), whatever it holds.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from collections.abc import Iterable

from extrusion import identity
from extrusion.config import Config
from extrusion.maillog.feedsink import FeedEngine, FeedStats, GuardedSink
from extrusion.maillog.join import JoinSettings
from extrusion.maillog.lines import (
    CLASSIC_LINE,
    MAX_HEADS,
    MAX_LINE,
    SECONDS,
    ClassicShortcut,
    LineSplitter,
)
from extrusion.maillog.postfixlanes import QUEUE_ID_CHARS, Lane, LaneJoiner, queue_id
from extrusion.maillog.programs import Format, Parser, choose_parser, postfix_service
from extrusion.maillog.timestamps import log_zone
from extrusion.scoring.helo import safe_text

log = logging.getLogger(__name__)
_classic_line = CLASSIC_LINE.match
# The shortcut's expression (`AFTER_MINUTE`) with its seconds and `host prog` in one
# group, `SS host prog` (one look-up reads both), then the message to the end of its line
# (`.` stops at a newline, as `text.find("\n")` did) and, inside it, the queue id it
# starts with (`QUEUE_ID`, matched with its ": " rather than looked ahead for: cheaper;
# None when there is none, `groups("")`' ""): one match gives all three, no slicing after.
_after_minute = re.compile(
    r"(\d\d [^\[]*)\[\d+\]: ((?:(" + QUEUE_ID_CHARS + "): )?.*)").match
# `lines()`' routes are per second and head: up to 100 seconds ("00" to "99") of each head.
MAX_STAMPED_HEADS = 100 * MAX_HEADS
_SECONDS = SECONDS

Route = tuple[Lane | None, Parser | None]  # a tag's lane (Postfix's commonest lines), parser
StampedRoute = tuple[float, str, Lane | None, Parser | None]  # seconds, host, Route
# Garbled lines kept for the operator to look at, each cut to this length.
EXAMPLES_KEPT = 5
EXAMPLE_CHARS = 300
# Parser failures logged with their exception: the first few, then every this many.
FAILURES_LOGGED = 5
FAILURES_LOG_EVERY = 10_000


def join_settings(cfg: Config, *, submissions: bool = True,
                  live: bool = False) -> JoinSettings:
    """The joiner's settings from a config's `[maillog]` and `[general]` sections.

    `live`: the log of a running MTA, whose milter (when `[milter] enabled`) reports
    the same connections; a replayed log has no milter beside it.
    """
    m = cfg.maillog
    return JoinSettings(
        submissions=submissions,
        client_evidence=not (live and cfg.milter.enabled),
        live=live,
        wait_seconds=m.submission_wait_seconds,
        ttl_seconds=m.queue_id_ttl_seconds,
        max_queue_ids=m.max_queue_ids,
        mta=cfg.general.hostname,
        local_mta=identity.mta_name(cfg),
        local_hosts=identity.local_names(cfg),
        handoff_relays=m.handoff_relays,
        skip_replies=m.skip_replies,
    )


class LogFeed:
    def __init__(
        self,
        engine: FeedEngine,
        *,
        fmt: Format = "auto",
        settings: JoinSettings | None = None,
        reference_time: float | None = None,
        tz: dt.tzinfo | None = None,
        guard: bool = True,
    ) -> None:
        """`reference_time` anchors the year of classic syslog stamps (default: now);
        `settings.submissions=False` when the milter already records submissions."""
        self.engine = engine
        self.fmt: Format = fmt
        self._guard = guard
        self.stats = FeedStats()
        self._splitter = LineSplitter(reference_time, tz)
        self._split = self._splitter.parts
        self._clock = self._splitter.clock
        self._classic = self._clock.classic
        self._shortcut = ClassicShortcut()
        self._fast = self._shortcut.split
        # Unguarded (a replay, which stops at an engine error), the joiner calls the
        # engine itself: one call less per event.
        self._sink = GuardedSink(engine, self.stats, guard) if guard else engine
        self.joiner = LaneJoiner(self._sink, self._key, settings)
        self.stats.join = self.joiner.stats
        self._add = self.joiner.add
        # False: every Postfix line goes through its parser and the joiner's `add()`
        # instead of a lane (the lanes' tests and benchmarks compare the two ways).
        # Set before the first line: routes are cached.
        self.lanes = True
        self._routes: dict[str, Route] = {}
        # `lines()`' look-up of a line's seconds and head (`SS host prog`): the seconds'
        # value, its host, lane and parser at once.
        self._head_routes: dict[str, StampedRoute] = {}

    @classmethod
    def from_config(
        cls,
        engine: FeedEngine,
        cfg: Config,
        *,
        submissions: bool = True,
        reference_time: float | None = None,
        guard: bool = True,
        live: bool = False,
    ) -> LogFeed:
        """Settings from the `[maillog]` and `[general]` sections of a `Config`
        (`live`: see `join_settings`)."""
        m = cfg.maillog
        settings = join_settings(cfg, submissions=submissions, live=live)
        return cls(engine, fmt=m.format, settings=settings, reference_time=reference_time,
                   tz=log_zone(m.timezone), guard=guard)

    def _key(self, client_addr: str, sasl_user: str) -> str:
        return self.engine.sender_key(client_addr=client_addr, sasl_user=sasl_user)

    @property
    def now(self) -> float:
        """The latest log time seen (0.0 before the first line)."""
        return self.joiner.now

    def line(self, text: str) -> None:
        """One raw log line (with or without its newline)."""
        self.stats.lines += 1
        self._line(text)

    def lines(self, texts: Iterable[str]) -> None:
        """`line()` for each of many lines (a replay's): the same, with the common line
        (one `ClassicShortcut` reads, of a Postfix lane) handled here in one piece
        instead of a call per step."""
        stats = self.stats
        by_head = self._head_routes
        joiner = self.joiner
        guard = self._guard
        shortcut = self._shortcut
        prefix, at, base = shortcut.minute()
        # Lines counted into the stats once, at the end (or at an error); so are the lanes'
        # joined and ignored lines (the slow way counts its own as it goes).
        n = parsed = ignored = 0
        try:
            for text in texts:
                n += 1
                # `ClassicShortcut.split()`, inline; its minute read again after any line
                # read the slow way (which may have learned another).
                m = _after_minute(text, at) if text.startswith(prefix) else None
                if m is None or len(text) > MAX_LINE:
                    self._line(text)
                    prefix, at, base = shortcut.minute()
                    continue
                stamped_head, message, qid = m.groups("")
                route = by_head.get(stamped_head) or self._head_route(stamped_head)
                if route is None:
                    self._line(text)
                    prefix, at, base = shortcut.minute()
                    continue
                if message[-1:] == "\r":
                    message = message[:-1]
                second, host, lane, parser = route
                t = base + second
                if lane is None:
                    self._parse(text, t, host, parser, message)
                    continue
                # `_message()`, inline.
                try:
                    joined = lane(t, host, message, qid)
                except Exception as exc:  # the engine's (a lane itself does not raise)
                    if not guard:
                        raise  # a replay stops at the engine's error
                    self._parser_failed(text, exc)
                    continue
                if joined:
                    parsed += 1
                elif joined is None:
                    self._parse(text, t, host, parser, message)
                else:
                    ignored += 1
                    if t > joiner.now:
                        joiner.advance(t)
        finally:
            stats.lines += n
            stats.parsed += parsed
            stats.ignored += ignored

    def _head_route(self, stamped_head: str) -> StampedRoute | None:
        """The seconds' value, host, lane and parser of `SS host prog`, seconds the table
        reads and a head the shortcut learned (None: not both, read the line the slow
        way); kept for the next line of those seconds and head."""
        second = _SECONDS.get(stamped_head[:2])
        tag = self._shortcut.heads.get(stamped_head[3:])
        if second is None or tag is None:
            return None
        host, program = tag
        lane, parser = self._routes.get(program) or self._route(program)
        route = (second, host, lane, parser)
        if len(self._head_routes) < MAX_STAMPED_HEADS:  # as the shortcut's heads: bounded
            self._head_routes[stamped_head] = route
        return route

    def _line(self, text: str) -> None:
        """`line()` but for its count."""
        if len(text) > MAX_LINE and len(text.rstrip("\r\n")) > MAX_LINE:
            self._too_long(text)
            return
        # Classic syslog is nearly every line, and nearly every one has the minute and
        # the tag of the line before: the shortcut reads those without the expression.
        fast = self._fast(text)
        if fast is not None:
            t, host, program, message = fast
        elif (m := _classic_line(text)) is not None:
            mon, day, hh, mm, ss, host, program, _pid, message = m.groups()
            try:
                t = self._classic(mon, day, hh, mm, ss)
            except (ValueError, OverflowError):
                self._garbled(text)
                return
            self._shortcut.learn(text, m, self._clock.minute)
        else:
            self._shortcut.forget_minute()  # the splitter may convert a classic stamp
            try:
                parts = self._split(text)
            except Exception as exc:  # the splitter's bug must not stop the feed
                self._parser_failed(text, exc)
                return
            if parts is None:
                self._garbled(text)
                return
            t, host, program, _pid, message = parts
        if message[-1:] == "\r":
            message = message[:-1]
        self._message(text, t, host, program, message)

    def too_long(self, head: str) -> None:
        """A line longer than `MAX_LINE` that its reader skipped; `head` is its start."""
        self.stats.lines += 1
        self._too_long(head)

    def entry(self, t: float, host: str, program: str, pid: str, message: str) -> None:
        """One message already split by a syslog receiver."""
        self.stats.lines += 1
        self._message(message, t, host, program, message)

    def _route(self, program: str) -> Route:
        """The lane and the parser for a tag's lines (see `postfixlanes`)."""
        service = postfix_service(program, self.fmt)
        lane = None if service is None or not self.lanes else self.joiner.lane(service)
        route = (lane, choose_parser(program, self.fmt))
        if len(self._routes) < 1000:  # tags are few; a flood of odd ones is not cached
            self._routes[program] = route
        return route

    def _message(self, text: str, t: float, host: str, program: str, message: str) -> None:
        lane, parser = self._routes.get(program) or self._route(program)
        if lane is not None:
            try:
                joined = lane(t, host, message, queue_id(message))
            except Exception as exc:  # the engine's (a lane itself does not raise)
                if not self._guard:
                    raise  # a replay stops at the engine's error
                self._parser_failed(text, exc)
                return
            if joined:
                self.stats.parsed += 1
                return
            if joined is False:
                parser = None  # of no interest
        self._parse(text, t, host, parser, message)

    def _parse(self, text: str, t: float, host: str, parser: Parser | None,
               message: str) -> None:
        """The line's records from its parser (None: another program's) into the joiner."""
        if parser is not None:
            try:
                records = parser(message)
            except Exception as exc:  # a parser's bug costs this line, never the feed
                self._parser_failed(text, exc)
                return
            if records:
                add = self._add
                try:
                    for record in records:
                        add(t, host, record)
                except Exception as exc:
                    if not self._guard:
                        raise  # a replay stops at the engine's error (called in here)
                    self._parser_failed(text, exc)
                    return
                self.stats.parsed += 1
                return
            if records is None:
                self._garbled(text)
                return
        # Another program's line, or one of no interest: it only moves the clock on.
        self.stats.ignored += 1
        if t > self.joiner.now:
            self.joiner.advance(t)

    def _garbled(self, text: str) -> None:
        self.stats.garbled += 1
        if len(self.stats.examples) < EXAMPLES_KEPT:
            # Escaped: an example goes to a terminal or a log, and a forged line may
            # carry escape sequences or newlines.
            self.stats.examples.append(safe_text(text.rstrip("\r\n"), EXAMPLE_CHARS))

    def _too_long(self, text: str) -> None:
        self.stats.too_long += 1
        self._garbled(text[: EXAMPLE_CHARS + 1])  # one more: the example shows the cut

    def _parser_failed(self, text: str, exc: Exception) -> None:
        self.stats.parser_errors += 1
        self._garbled(text)
        n = self.stats.parser_errors
        if n <= FAILURES_LOGGED or not n % FAILURES_LOG_EVERY:  # logged, not flooded
            log.warning("a log line could not be read (%s: %s; %d so far); skipped: %s",
                        type(exc).__name__, safe_text(str(exc), EXAMPLE_CHARS), n,
                        safe_text(text.rstrip("\r\n"), EXAMPLE_CHARS))

    def tick(self, now: float) -> None:
        """Let pending submissions and idle queue ids expire when no line comes
        (a quiet syslog feed); `now` in the log's clock."""
        self.joiner.advance(now)

    def finish(self) -> None:
        """Emit what is still waiting (submissions held for their recipient count)."""
        self.joiner.finish()

    def reload(self) -> None:
        """Forget cached sender keys after the engine's customer map changed."""
        self.joiner.forget_keys()


