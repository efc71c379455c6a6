"""The engine listener that turns state changes into rate-limited digests, sent off-thread.

`Notifier.__call__` is what `engine.add_listener` gets: it only records the
change under a lock and returns, so the engine (and the MTA waiting on it) is
never held up by a slow relay. A worker thread collects changes for
`collect_seconds` after the first one, sends at most one digest per
`min_interval_seconds`, and retries a channel that failed with a doubling
delay. Changes beyond `max_pending` senders are counted and the count is
reported in the next digest, so memory stays bounded in any outbreak.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, tzinfo

from extrusion.config import Notify
from extrusion.notify.channels import Channel, PermanentError, TransientError
from extrusion.notify.claims import Claim
from extrusion.notify.digest import Digest, build_digest, report_from_changes
from extrusion.report.clean import clean
from extrusion.report.model import FLAGGED_STATES, Report
from extrusion.report.text import DEFAULT_MAX_DESTINATIONS
from extrusion.report.words import seen_from_outside
from extrusion.scoring.events import State, StateChange

log = logging.getLogger("extrusion.notify")

# Builds the evidence for the given sender keys (highest scores first), e.g. from the store.
ReportBuilder = Callable[[Sequence[str]], Report]

# How long close() waits for the worker to send what is pending.
CLOSE_TIMEOUT_SECONDS = 30.0


def wanted(change: StateChange) -> bool:
    """Only the engine moving a sender up into throttled, held or blocked is news, or into
    `watch` for an own customer seen from outside the network (mx mode).

    Falling back (evidence decayed) is not, and an operator's own action is
    already known to the abuse desk.
    """
    if change.who != "engine" or change.new.rank <= change.old.rank:
        return False
    if change.new is State.WATCH:
        return seen_from_outside(change.evidence.get("findings"))
    return change.new in FLAGGED_STATES


@dataclass(slots=True)
class _Attempt:
    digest: Digest
    tries: int = 0
    next_try: float = 0.0


class Notifier:
    """Collects state changes and sends digests through `channels` from a worker thread."""

    def __init__(
        self,
        settings: Notify,
        channels: Sequence[Channel],
        *,
        build: ReportBuilder | None = None,
        hostname: str = "",
        tz: tzinfo = UTC,
        max_destinations: int = DEFAULT_MAX_DESTINATIONS,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        claim: Claim | None = None,
    ) -> None:
        self.settings = settings
        self.channels = tuple(channels)
        self._build = build
        self._hostname = hostname
        self._tz = tz
        self._max_destinations = max_destinations
        self._clock = clock
        self._wall = wall_clock
        self._claim = claim
        self._cond = threading.Condition()
        self._pending: dict[str, StateChange] = {}
        self._first_at: float | None = None
        self._last_digest_at = float("-inf")
        self._dropped = 0
        self._stopping = False
        self._outboxes: dict[str, deque[_Attempt]] = {ch.name: deque() for ch in self.channels}
        # Counters for metrics and tests: "<channel>.sent", "<channel>.failed", "digests", ...
        self.stats: Counter[str] = Counter()
        self._thread = threading.Thread(target=self._run, name="extrusion-notify", daemon=True)

    # --- the listener (engine threads) --------------------------------------------------

    def __call__(self, change: StateChange) -> None:
        if not wanted(change):
            return
        with self._cond:
            if self._stopping:
                self.stats["dropped"] += 1
                return
            full = len(self._pending) >= self.settings.max_pending
            if full and change.sender not in self._pending:
                self._dropped += 1
                self.stats["dropped"] += 1
                return
            # A sender that climbs throttled -> held within one window is one line: the latest.
            self._pending[change.sender] = change
            if self._first_at is None:
                self._first_at = self._clock()
            self._cond.notify()

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> Notifier:
        """Start the worker (once; later calls do nothing)."""
        if self._thread.ident is None:
            self._thread.start()
        return self

    def close(self, timeout: float = CLOSE_TIMEOUT_SECONDS) -> None:
        """Send what is pending (one try per channel, no waiting for the interval), then stop."""
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread.is_alive():
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.error("notifications: worker still sending after %.0f s; giving up", timeout)

    def __enter__(self) -> Notifier:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # --- the worker ---------------------------------------------------------------------

    def _due(self) -> float | None:
        if self._first_at is None:
            return None
        return max(
            self._first_at + self.settings.collect_seconds,
            self._last_digest_at + self.settings.min_interval_seconds,
        )

    def _next_retry(self) -> float | None:
        heads = [box[0].next_try for box in self._outboxes.values() if box]
        return min(heads) if heads else None

    def _run(self) -> None:
        while True:
            with self._cond:
                while True:
                    now = self._clock()
                    due = self._due()
                    take = due is not None and (self._stopping or now >= due)
                    retry = self._next_retry()
                    ready = retry is not None and (self._stopping or now >= retry)
                    if take or ready:
                        break
                    if self._stopping:
                        return
                    wake = min((t for t in (due, retry) if t is not None), default=None)
                    self._cond.wait(None if wake is None else max(wake - now, 0.0))
                batch: list[StateChange] = []
                dropped = 0
                if take:
                    batch = list(self._pending.values())
                    dropped, self._dropped = self._dropped, 0
                    self._pending.clear()
                    self._first_at = None
                    self._last_digest_at = now
                stopping = self._stopping
            if batch and self._claim is not None:
                # Hosts sharing a store: only the changes this host claimed (claims.py).
                mine = self._claim(batch)
                self.stats["claimed_elsewhere"] += len(batch) - len(mine)
                batch = mine
            if batch or dropped:
                self._enqueue(self._digest(batch, dropped), now)
            self._send_ready(stopping)

    def _digest(self, batch: list[StateChange], dropped: int) -> Digest:
        generated = self._wall()
        top = sorted(batch, key=lambda ch: (-ch.new.rank, -ch.score))
        keys = [ch.sender for ch in top[: self.settings.max_reports_per_digest]]
        report: Report | None = None
        if self._build is not None and keys:
            try:
                report = self._build(keys)
            except Exception as exc:  # the store may be down: the digest still goes out
                log.warning("notifications: no evidence from the store (%s); "
                            "sending the state changes alone", exc)
                self.stats["report_failed"] += 1
        if report is None:
            by_key = {ch.sender: ch for ch in top}
            report = report_from_changes([by_key[k] for k in keys], generated)
        self.stats["digests"] += 1
        return build_digest(
            batch, report, generated_at=generated, prefix=self.settings.subject_prefix,
            hostname=self._hostname, dropped=dropped, tz=self._tz,
            max_destinations=self._max_destinations,
        )

    def _enqueue(self, digest: Digest, now: float) -> None:
        for box in self._outboxes.values():
            box.append(_Attempt(digest, 0, now))

    def _send_ready(self, stopping: bool) -> None:
        for channel in self.channels:
            box = self._outboxes[channel.name]
            # In order: a later digest waits behind an earlier one that is being retried.
            while box and (stopping or box[0].next_try <= self._clock()):
                attempt = box[0]
                attempt.tries += 1
                if self._try(channel, attempt, final=stopping):
                    box.popleft()
                else:
                    break

    def _try(self, channel: Channel, attempt: _Attempt, *, final: bool) -> bool:
        """Send once; True when the attempt is finished (sent or given up)."""
        digest = attempt.digest
        try:
            channel.send(digest)
        except (TransientError, PermanentError) as exc:
            self.stats[f"{channel.name}.failed"] += 1
            last = (
                isinstance(exc, PermanentError)
                or final
                or attempt.tries >= self.settings.max_attempts
            )
            if last:
                # Given up: the log keeps what the abuse desk did not get.
                log.error("notifications: %s digest not sent after %d tries (%s); it named: %s",
                          channel.name, attempt.tries, exc,
                          ", ".join(clean(k) for k in digest.senders[:50]))
                self.stats[f"{channel.name}.given_up"] += 1
                return True
            delay = self.settings.retry_seconds * 2 ** (attempt.tries - 1)
            log.warning("notifications: %s failed (%s); retrying in %.0f s",
                        channel.name, exc, delay)
            attempt.next_try = self._clock() + delay
            return False
        except Exception:  # a bug in a channel must not kill the worker
            log.exception("notifications: %s channel failed unexpectedly", channel.name)
            self.stats[f"{channel.name}.given_up"] += 1
            return True
        self.stats[f"{channel.name}.sent"] += 1
        log.info("notifications: %s digest sent (%d senders)", channel.name, digest.changes)
        return True
