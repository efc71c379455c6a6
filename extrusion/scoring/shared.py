"""Budgets shared by the hosts of one store: a restricted sender's budget holds cluster-wide.

An ISP's bot spreads its connections over every smarthost behind one name;
with per-host windows alone a throttled sender gets the budget once per host.
So each host writes what it let a *restricted* sender send (watched,
throttled or on probation: the small budgets that matter) per minute into
`rate_use` with its ordinary flush, and reads the other hosts' rows back with
each refresh (`[store] refresh_seconds`) and, while such a sender is busy
here or elsewhere, with each flush (about every second). `decide()` then counts the others'
share as if it had been spent here, still from memory: no database round
trip per recipient.

Why counters and not dividing the budget by the number of live hosts: a
sender that reaches one host only (most of them) keeps its whole budget, and
no host needs a heartbeat. The price is a bounded overshoot: what the other
hosts accept between two flushes is not seen yet, so a bot spread over H
hosts can get about the budget plus what the other H-1 hosts let through in
one flush interval, and never more than H times the budget.
tests/test_store_cluster.py drives three engines round-robin and checks it;
benchmarks/cluster_budget.py measures it at several rates.

Use by a sender while it was still `ok` is not shared (that would be a row
per sender per minute for everyone): the generous default budgets are a
safety net, not a cluster-wide cap.
"""

from __future__ import annotations

from extrusion.scoring.events import State
from extrusion.scoring.limits import OthersUse
from extrusion.scoring.memory import SenderMemory

USE_BUCKET = 60  # seconds per rate_use row


__all__ = ["USE_BUCKET", "OthersUse", "restricted", "use_bucket"]


def use_bucket(t: float) -> int:
    return int(t // USE_BUCKET) * USE_BUCKET


def restricted(mem: SenderMemory) -> bool:
    """A sender whose use the other hosts must count (its budget is a small one)."""
    return mem.state is not State.OK or mem.probation is not None
