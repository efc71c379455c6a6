"""Failures in proportion: failed distinct recipients against those attempted.

Spam goes to ancient and invented addresses, so most of a bot's recipients
fail; a business's mail-merge mailshot to 400 customers with 12% dead
addresses fails 48 times, more than the talk's floor of 20, and is still
legitimate. So a count alone cannot tell them apart, the share can. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ShareRule:
    min_failures: int  # [scoring] share_min_failures
    share: float  # [scoring] failure_share
    floor: int  # [scoring] failure_trigger: more than this many fail
    list_share: float  # [scoring] list_max_failure_share: what a list post may fail


@dataclass(frozen=True, slots=True)
class Verdict:
    trigger: bool  # throttle now
    above_lists: bool  # more fail than a mailing list's share: the failures weigh
    rule: str  # which test fired, for the report ("share", "floor", "")


def failure_verdict(failed: int, attempted: int, rule: ShareRule) -> Verdict:
    """Whether `failed` of `attempted` distinct recipients in the window throttle.

    - `share`: at least `min_failures` failed and they are at least `share` of
      the attempts (a bot at 40-90% is caught within a few dozen recipients);
    - `floor`: more than `floor` failed (the talk's "more than 20") and more
      than a list post's share of the attempts.
    """
    attempted = max(attempted, failed, 1)
    share = failed / attempted
    above_lists = share > rule.list_share
    if failed >= rule.min_failures and share >= rule.share:
        return Verdict(True, above_lists, "share")
    if failed > rule.floor and above_lists:
        return Verdict(True, above_lists, "floor")
    return Verdict(False, above_lists, "")
