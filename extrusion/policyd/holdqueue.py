"""Mail already queued: hold it when its sender is held or blocked, release it on release.

A bot queues thousands of messages before its first bounce is logged, so the
engine's verdict arrives when much of the damage is still in Postfix's queue.
On a state change into `held`/`blocked` the sender's undelivered queue ids
(from the store) go to `postsuper -h -` on stdin; on a change out of those
states to `postsuper -H -`. Store look-up and postsuper both block, so they
run in a worker thread, one job at a time and in order (a hold and the
release that follows it must not overtake each other). Every run is logged
on the audit logger and handed to the audit callback.
"""

from __future__ import annotations

import logging
import re
import subprocess
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from twisted.internet import defer, threads

from extrusion.policyd.metrics import Metrics
from extrusion.policyd.responder import EngineSource
from extrusion.scoring.engine import store_of
from extrusion.scoring.events import State, StateChange

log = logging.getLogger("extrusion.policyd.queue")
audit_log = logging.getLogger("extrusion.audit")

#: States whose mail must not leave the queue.
STOPPED = frozenset({State.HELD, State.BLOCKED})

#: Postfix queue ids: short hex form or the long form (enable_long_queue_ids);
#: anything else (including the word ALL) never reaches postsuper.
_QUEUE_ID_RE = re.compile(r"[0-9A-Za-z]{5,32}")

#: Seconds postsuper may take before we give up on it (it normally takes milliseconds).
POSTSUPER_TIMEOUT = 60.0
# Characters of postsuper's words kept in the audit note (the store keeps 4096).
DETAIL_CHARS = 1000
# postsuper's line per message; the queue ids are in the entry's evidence already, and
# a few dozen of these once pushed the summary ("Placed on hold: 7 messages") out of the note.
_PER_MESSAGE = re.compile(r"^postsuper: [0-9A-Za-z]{5,32}: (?:placed on hold|released from hold)$")

#: Queue ids of messages held by our own HOLD answers, remembered for their release.
MAX_REMEMBERED_HELD = 100_000

HOLD = "hold"
RELEASE = "release"
_FLAGS = {HOLD: "-h", RELEASE: "-H"}


@dataclass(frozen=True, slots=True)
class QueueAction:
    """What one postsuper run did; the audit record of it."""

    sender: str
    verb: str
    queue_ids: tuple[str, ...]
    ok: bool
    detail: str
    cause: StateChange


def verb_for(change: StateChange) -> str | None:
    """hold when mail becomes stoppable, release when it stops being so, else nothing."""
    was, now = change.old in STOPPED, change.new in STOPPED
    if now and not was:
        return HOLD
    if was and not now:
        return RELEASE
    return None


def postsuper_argv(postsuper: str, config_dir: str, verb: str) -> list[str]:
    argv = [postsuper]
    if config_dir:
        argv += ["-c", config_dir]
    return [*argv, _FLAGS[verb], "-"]


class QueueActions:
    """Engine listener that holds/releases a sender's queued mail with postsuper."""

    def __init__(
        self,
        source: EngineSource,
        *,
        postsuper: str,
        config_dir: str,
        mta: str,
        reactor: Any,
        metrics: Metrics,
        audit: Callable[[QueueAction], None] | None = None,
    ) -> None:
        self.source = source
        self.postsuper = postsuper
        self.config_dir = config_dir
        self.mta = mta
        self.reactor = reactor
        self.metrics = metrics
        self.audit = audit
        self._lock = defer.DeferredLock()
        self.pending: set[defer.Deferred[QueueAction | None]] = set()
        # Messages Postfix put on hold because we answered HOLD: they never reach
        # the queue manager, so the log feed never records them, yet release must
        # release them. Kept in memory (bounded); the answer and queue id are logged.
        self._held_here: dict[str, dict[str, None]] = {}
        self._held_count = 0
        self._held_lock = threading.Lock()

    def held_by_policy(self, sender: str, queue_id: str) -> None:
        """The policy server answered HOLD for this message (reactor thread)."""
        if not _QUEUE_ID_RE.fullmatch(queue_id):
            return
        with self._held_lock:
            ids = self._held_here.setdefault(sender, {})
            if queue_id not in ids and self._held_count < MAX_REMEMBERED_HELD:
                ids[queue_id] = None
                self._held_count += 1

    def _take_held(self, sender: str) -> list[str]:
        with self._held_lock:
            ids = list(self._held_here.pop(sender, {}))
            self._held_count -= len(ids)
            return ids

    def on_state_change(self, change: StateChange) -> None:
        """Engine listener; the engine may call it from any thread."""
        if verb_for(change) is not None:
            self.reactor.callFromThread(self.schedule, change)

    def schedule(self, change: StateChange) -> defer.Deferred[QueueAction | None]:
        """Queue one postsuper job (reactor thread); fires with its record."""
        d: defer.Deferred[QueueAction | None] = self._lock.run(
            threads.deferToThreadPool, self.reactor, self.reactor.getThreadPool(),
            self.run, change,
        )
        self.pending.add(d)

        def done(result: Any) -> Any:
            self.pending.discard(d)
            return result

        d.addBoth(done)
        d.addErrback(self._crashed, change)
        return d

    def _crashed(self, failure: Any, change: StateChange) -> None:
        log.error("queue action for %s failed: %s", change.sender, failure.getErrorMessage())
        self.metrics.queue_actions.labels(verb_for(change) or "?", "error").inc()

    def run(self, change: StateChange) -> QueueAction | None:
        """Look up the sender's queued mail and run postsuper on it (worker thread)."""
        verb = verb_for(change)
        engine = self.source.engine
        if verb is None or engine is None:
            return None
        ids = engine.undelivered_queue_ids(change.sender, self.mta)
        if verb == RELEASE:
            ids = list(dict.fromkeys([*ids, *self._take_held(change.sender)]))
        good = tuple(q for q in ids if _QUEUE_ID_RE.fullmatch(q))
        if len(good) != len(ids):
            log.warning("ignored %d malformed queue ids of %s", len(ids) - len(good), change.sender)
        if not good:
            action = QueueAction(change.sender, verb, (), True, "no queued mail", change)
        else:
            ok, detail = self._postsuper(verb, good)
            action = QueueAction(change.sender, verb, good, ok, detail, change)
        self._record(action, engine)
        return action

    def _postsuper(self, verb: str, ids: Sequence[str]) -> tuple[bool, str]:
        argv = postsuper_argv(self.postsuper, self.config_dir, verb)
        try:
            proc = subprocess.run(
                argv,
                input="".join(f"{q}\n" for q in ids),
                capture_output=True,
                text=True,
                timeout=POSTSUPER_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return False, f"{argv[0]}: {exc}"
        return proc.returncode == 0, postsuper_detail(proc.stderr, proc.returncode)

    def _record(self, action: QueueAction, engine: Any) -> None:
        """Metrics, the audit log line, and an entry in the store's audit trail."""
        result = "ok" if action.ok else "error"
        self.metrics.queue_actions.labels(action.verb, result).inc()
        level = logging.INFO if action.ok else logging.ERROR
        audit_log.log(
            level,
            "queue %s sender=%s state=%s->%s messages=%d result=%s detail=%s",
            action.verb, action.sender, action.cause.old.value, action.cause.new.value,
            len(action.queue_ids), result, action.detail,
        )
        store = store_of(engine)
        if store is not None:
            try:
                store.add_state_change(audit_entry(action))
            except Exception as exc:  # the log line above still has it
                log.error("could not write the queue action to the audit trail: %s", exc)
        if self.audit is not None:
            self.audit(action)


def postsuper_detail(stderr: str, returncode: int) -> str:
    """postsuper's words for the audit note: its summary ("Placed on hold: N messages" /
    "Released from hold: N messages") and any warning, whole; its line per message left out."""
    lines = [" ".join(line.split()) for line in stderr.splitlines()]
    kept = [line for line in lines if line and not _PER_MESSAGE.match(line)]
    if not kept:
        return f"exit status {returncode}"
    detail = "; ".join(kept)
    if len(detail) > DETAIL_CHARS:
        # The last line is the summary: keep it whole, cut what comes before.
        last = kept[-1][-DETAIL_CHARS // 2:]
        detail = detail[: DETAIL_CHARS - len(last) - 3] + " … " + last
    return detail


def audit_entry(action: QueueAction) -> StateChange:
    """A queue action as an audit-trail entry: the state does not change (old == new),
    `who` is "postsuper", and the evidence lists the queue ids acted on."""
    state = action.cause.new
    verb = "held" if action.verb == HOLD else "released"
    outcome = "" if action.ok else " (failed)"
    return StateChange(
        time=action.cause.time,
        sender=action.sender,
        old=state,
        new=state,
        score=action.cause.score,
        reason=f"{len(action.queue_ids)} queued messages {verb}{outcome}: {action.detail}",
        who="postsuper",
        evidence={"queue_action": action.verb, "queue_ids": list(action.queue_ids),
                  "ok": action.ok},
    )
