"""An operator's action as the CLI and the API both take it: one check of the verb, the
sender key and the words, one bound on their length, before either applies it (the API
through the running engine, the CLI straight into the store, `scoring.admin`).

The words go into the audit trail and the logs, so they are bounded here: whatever a
script or a form sends, one action is at most a few kilobytes.
"""

from __future__ import annotations

from collections.abc import Callable

from extrusion.keys import SenderKeyError
from extrusion.scoring.events import OperatorAction, OperatorVerb

MAX_WHO_CHARS = 200
MAX_REASON_CHARS = 1000


class OperatorError(ValueError):
    """An action refused before anything is written; phrased for the operator.
    `status` is the exit status the CLI leaves with (None: a usage error, as click's)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


def operator_request(verb: str | OperatorVerb, sender: str, why: str, who: str, now: float,
                     key_of: Callable[[str], str]) -> OperatorAction:
    """The action, checked and bounded. `key_of` is `SenderMap.operator_key` (or the bare
    `keys.operator_key`): the key traffic has, or a SenderKeyError, so that a pin never
    lands on a key no traffic has (listed as held while the sender goes through)."""
    try:
        v = OperatorVerb(verb)
    except ValueError:
        raise OperatorError(f"unknown action {verb!r}") from None
    try:
        key = key_of(sender)
    except SenderKeyError as exc:
        raise OperatorError(str(exc), exc.status) from None
    if not why.strip():
        raise OperatorError("a reason is required (it is kept in the audit trail)")
    if not who.strip():
        raise OperatorError("the operator's name must not be empty")
    return OperatorAction(time=now, sender=key, verb=v, who=who.strip()[:MAX_WHO_CHARS],
                          why=why.strip()[:MAX_REASON_CHARS])
