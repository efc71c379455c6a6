"""Postfix queue ids as message identities: when two reports of one queue id are one
message and when they are two (the domain rule; the store applies it as it writes)."""

from __future__ import annotations

# Postfix reuses a short queue id once its message left the queue, which happens
# within maximal_queue_lifetime (5 days): rows further apart are different messages.
QUEUE_ID_REUSE_SECONDS = 6 * 86400.0


def reused(stored_time: float, reported_time: float) -> bool:
    """A report of a queue id this long after the stored row is another message."""
    return reported_time - stored_time > QUEUE_ID_REUSE_SECONDS
