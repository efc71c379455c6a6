"""Turns events into weighted findings on a sender (the heuristics, composed).

- Failures to distinct recipients in the window, in proportion to the distinct
  recipients attempted (`share.py`): a high share throttles early, more than
  `failure_trigger` throttles unless no more fail than a list post's share.
- Bounces (null sender) never count.
- Auto-replies sent without <> (rejection daemons) never count as spam; they
  make the sender `misconfigured` in the report instead.
- Possible mailing-list posts hold their failures until the failure share is
  known; a list post's failures are discounted, but a second distinct list
  from one sender in the window raises the score.
- Virus rejections and HELO anomalies weigh heavily (mass-mailing worms);
  spam-filter verdicts and own ranges seen from outside count in mx mode.

Pure bookkeeping on `SenderMemory` and `MessageInfo`: no locks, no store, no
clock (times come with the events).
"""

from __future__ import annotations

from collections.abc import Sequence

from extrusion.scoring import shown
from extrusion.scoring.classify import OutcomeClass
from extrusion.scoring.events import Headers
from extrusion.scoring.helocache import domain_tail
from extrusion.scoring.helocache import helo_note as helo_note  # re-exported for the engine
from extrusion.scoring.helocache import judge_helos as judge_helos  # and the generators
from extrusion.scoring.heuristics import (
    is_list_like,
    judged_by_outcomes,
    mentions_own_network,
)
from extrusion.scoring.kinds import Kind
from extrusion.scoring.memory import SenderMemory
from extrusion.scoring.probation import Probation
from extrusion.scoring.settings import EngineSettings
from extrusion.scoring.share import ShareRule, Verdict, failure_verdict
from extrusion.scoring.shown import (
    SaslAddresses,
    envelope_domain,
    freemail_unauthenticated,
    recipient_spread,
    too_many_envelope_domains,
)
from extrusion.scoring.standing import forwarded_reason, is_list_server
from extrusion.scoring.tracker import MessageInfo
from extrusion.scoring.verdicts import spam_verdict
from extrusion.scoring.wording import phrase

# A HELO anomaly counts once per kind per this many half-lives: a customer whose
# mail client says a dotless HELO every hour stays in `watch`, never beyond.
HELO_MEMORY_HALF_LIVES = 4.0

FAILURE_KINDS = {
    OutcomeClass.SPAM_POLICY: Kind.SPAM_REJECTIONS,
    OutcomeClass.VIRUS: Kind.VIRUS_REJECTIONS,
}
# Distinct attempted recipients remembered per sender at most: beyond this the share
# of a few dozen failures is negligible anyway (a list of thousands posting hourly).
MAX_ATTEMPTED = 20_000
# Distinct refused recipients remembered per sender at most: with any sane weight
# the sender is held (and no longer refused) long before.
MAX_REFUSED = 10_000


class Judge:
    def __init__(self, cfg: EngineSettings) -> None:
        s, w = cfg.scoring, cfg.weights
        self.half_life = s.half_life_seconds
        self.window = s.window_seconds
        self.trigger = s.failure_trigger
        self.throttle_score = s.throttle_score
        self.list_min = s.list_min_recipients
        self.list_share = s.list_max_failure_share
        self.misconfigured_after = s.misconfigured_failures
        self.share_rule = ShareRule(min_failures=s.share_min_failures, share=s.failure_share,
                                    floor=s.failure_trigger, list_share=s.list_max_failure_share)
        self.probation = Probation(cfg)
        self.submission_window = s.submission_window_seconds
        # The windows of a sender's memory not `window` long (set_windows).
        self.spans = {"helos": self.helo_window, "shown": self.helo_window,
                      "env_domains": self.submission_window}
        self.envelope_domains = s.envelope_domains
        self.spread_domains = s.spread_domains
        self.spread_factor = s.spread_factor
        self.baseline_messages = cfg.probation.baseline_messages
        self.volume_factor = cfg.probation.volume_factor
        self.volume_min = cfg.probation.volume_min_recipients
        self.weights = w
        self.mx = cfg.general.mode == "mx"
        self.own_domains = tuple(d.lower() for d in cfg.general.own_domains)
        # mx mode: the [[customers]] ranges are ours too (an infected customer sending direct).
        self.own_networks = cfg.general.own_networks + (
            tuple(n for c in cfg.customers for n in c.networks) if self.mx else ())

    @property
    def helo_window(self) -> float:
        return self.half_life * HELO_MEMORY_HALF_LIVES

    def set_windows(self, mem: SenderMemory) -> None:
        """The evidence windows of a new sender's memory."""
        # What a sender shows at submission is a habit (its HELO, a freemail sender):
        # shown again it is no new evidence until the first showing has decayed.
        mem.spans = self.spans

    # --- connection and submission ---------------------------------------------------

    def helos(
        self,
        mem: SenderMemory,
        helos: Sequence[str],
        client_addr: str,
        now: float,
        *,
        client_name: str = "",
        envelope_from: str = "",
        recipients: Sequence[str] = (),
        confirmed: tuple[str, ...] = (),
    ) -> None:
        if not helos:
            return
        for f in judge_helos(tuple(helos), client_addr, client_name, envelope_from, recipients,
                             self.own_domains, confirmed):
            weight = self.weights.helo_anomaly if mem.helos.add(f.kind, now) else 0.0
            mem.add(weight, now, self.half_life)
            mem.note(Kind.HELO_ANOMALIES, now, weight, example=f"{f.helo} ({f.kind})")
            if weight > 0.0:
                self.probation.enter(mem, f"suspicious HELO {f.helo} ({f.kind})", now)

    def submitted(self, mem: SenderMemory, *, envelope_from: str, recipients: Sequence[str],
                  client_addr: str, authenticated: bool | None, sasl: SaslAddresses,
                  now: float) -> None:
        """What the sender shows at submission (`shown.py`), from a policy request, the
        milter or the log alike; each kind counts once per HELO memory (`set_windows`)."""
        if judged_by_outcomes(envelope_from):
            return  # bounces and auto-replies: a rejection daemon's, judged by outcomes
        w = self.weights
        domain = envelope_domain(envelope_from)
        found: list[tuple[str, float, str]] = []
        # Submission rules: on an MX no sender authenticates, and gmail.com mail from
        # Google's own servers is the normal case, not a forgery.
        if not self.mx and (family := freemail_unauthenticated(domain, authenticated)):
            found.append((Kind.FREEMAIL_UNAUTHENTICATED, w.freemail_unauthenticated,
                          f"{domain} ({family})"))
        if not self.mx and authenticated is False and sasl.recent(client_addr, now):
            found.append((Kind.UNAUTHENTICATED_FROM_SASL_ADDRESS,
                          w.unauthenticated_from_sasl_address, client_addr))
        # Each window counted once: an add at the same `now` expires nothing more.
        env_domains, spread, grew = mem.env_domains, mem.rcpt_domains, False
        n = env_domains.count(now)
        if domain and n <= self.envelope_domains and env_domains.add(domain, now):
            n += 1
        if too_many_envelope_domains(n, self.envelope_domains):
            found.append((Kind.ENVELOPE_DOMAINS, w.envelope_domains, f"{n} domains"))
        domains = spread.count(now)
        for rcpt in recipients[:shown.MAX_DOMAINS]:
            if domains >= shown.MAX_DOMAINS:
                break
            if spread.add(domain_tail(rcpt.rpartition("@")[2]), now):
                grew, domains = True, domains + 1
        # Only a message that widens the spread is judged by it (not the next ordinary mail).
        if grew and recipient_spread(domains, mem.baseline.typical_hour, self.spread_domains,
                                     self.spread_factor):
            found.append((Kind.RECIPIENT_SPREAD, w.recipient_spread,
                          f"{domains} recipient domains"))
        weigh_shown(self, mem, found, now)
        b = mem.baseline
        if mem.probation is None and b.established(self.baseline_messages):
            departed = b.departures(
                domain=domain, authenticated=authenticated,
                recipients_now=b.this_hour(now) + len(recipients),
                volume_factor=self.volume_factor, volume_min=self.volume_min)
            if departed:
                self.probation.enter(mem, "departs from its own history: "
                                     + "; ".join(departed), now)

    def inbound(self, mem: SenderMemory, client_addr: str, headers: Headers, now: float,
                *, envelope_from: str = "", client_name: str = "") -> None:
        """mx mode: spam verdicts (unless forwarded) and own customers arriving from outside."""
        if not self.mx:
            return
        if spam_verdict(headers) and not self.forwarded(
                mem, envelope_from, client_name, now, origin=headers.forwarded_from):
            mem.add(self.weights.spam_verdict, now, self.half_life)
            mem.note(Kind.SPAM_VERDICTS, now, self.weights.spam_verdict)
        if self.own_networks and mentions_own_network(client_addr, self.own_networks):
            first = mem.helos.add(Kind.OWN_NETWORK_INBOUND, now)
            weight = self.weights.own_network_inbound if first else 0.0
            mem.add(weight, now, self.half_life)
            mem.note(Kind.OWN_NETWORK_INBOUND, now, weight, example=client_addr)

    def forwarded(self, mem: SenderMemory, envelope_from: str, client_name: str, now: float,
                  *, origin: str = "", refusal: OutcomeClass | None = None) -> bool:
        """mx mode: whether a spam verdict, or a spam or virus refusal (`refusal`), is of
        forwarded mail (`standing.py`); if so it is noted as discounted: the original
        sender's, not the forwarder's. Other failures (unknown users) always count."""
        if not self.mx or (refusal is not None and refusal not in FAILURE_KINDS):
            return False
        why = forwarded_reason(mem.baseline, envelope_from, client_name, origin, now)
        if why:
            done = int((mem.findings.get(Kind.FORWARDED_DISCOUNTED) or {}).get("discounted", 0))
            mem.note(Kind.FORWARDED_DISCOUNTED, now, example=why, discounted=done + 1)
        return bool(why)

    def list_candidate(self, rcpt_count: int) -> bool:
        return rcpt_count >= max(self.list_min, 1)

    def refused_while_throttled(self, mem: SenderMemory, rcpt: str, now: float) -> bool:
        """A recipient refused because the sender is throttled and over its trickle.

        A customer's mail client or MTA retries the same few recipients; a bot
        moves on to new ones. Each distinct recipient refused in the window
        counts, so a bot pushing against its throttle gathers the evidence that
        holds it, which its few delivered messages alone may never give. Once
        held it is no longer refused, so this evidence stops there by itself.
        True when the score changed.
        """
        weight = self.weights.throttled_refusal
        if weight <= 0.0 or not rcpt or mem.refused.count(now) >= MAX_REFUSED:
            return False
        if not mem.refused.add(rcpt.lower(), now):
            return False  # the same recipient tried again: a retry, not new evidence
        mem.add(weight, now, self.half_life)
        mem.note(Kind.THROTTLED_REFUSALS, now, weight, example=rcpt)
        return True

    # --- outcomes ----------------------------------------------------------------------

    def failure(
        self, mem: SenderMemory, info: MessageInfo | None, rcpt: str, cls: OutcomeClass,
        now: float, null_sender: bool,
    ) -> None:
        """A permanent failure of one recipient."""
        if null_sender:
            return  # bounces often fail; they say nothing about the sender
        if info is not None and info.auto_reply:
            if mem.auto_failures.add(rcpt, now):
                n = mem.auto_failures.count(now)
                mem.note(Kind.MISCONFIGURED, now, example=rcpt, failed_auto_replies=n,
                         rejection_daemon=n > self.misconfigured_after)
            return
        if info is not None:
            if info.list_like is None:  # what settle_list reads, nothing else does
                info.failed.add(rcpt)
                info.attempted.add(rcpt)
            if info.list_like is None and cls is not OutcomeClass.VIRUS:
                info.held.append((rcpt, cls.value, now))
                self.settle_list(mem, info, now)
                return
            if info.list_like:
                _discount(mem, 1, now)
                return
        self.count_failure(mem, rcpt, cls, now)

    def not_failed(self, mem: SenderMemory, info: MessageInfo | None, rcpt: str,
                   delivered: bool, now: float) -> bool:
        """A recipient delivered or deferred: it counts as attempted, and a delivery
        may end a probation (True when it did)."""
        if info is not None and (info.null_sender or info.auto_reply):
            return False
        self.seen(mem, rcpt, now)
        if not delivered:
            return False
        mem.baseline.outcome(True)
        return self.probation.delivered(mem, rcpt, mem.failed.count(now),
                                        mem.attempted.count(now), now)

    def attempted(self, mem: SenderMemory, info: MessageInfo, rcpt: str, now: float) -> None:
        if info.list_like is None:  # a decided message's recipients are read no more
            info.attempted.add(rcpt)
            self.settle_list(mem, info, now)

    def settle_list(self, mem: SenderMemory, info: MessageInfo, now: float,
                    *, final: bool = False) -> None:
        """Decide whether a possible list post is one, once enough is known (or `final`)."""
        if info.list_like is not None:
            return
        if final and not info.attempted:
            # No outcome ever seen here (the milter's process never sees any): whether it
            # was a list is for the process that follows the log to say, once, not here.
            info.list_like = False
            return
        n = max(info.rcpt_count, len(info.attempted), 1)  # aliases may add recipients
        failed = len(info.failed)
        if failed / n > self.list_share:
            verdict = False  # too many failures already: whatever it is, it is not a list
        elif len(info.attempted) >= n or final:
            verdict = is_list_like(n, failed, self.list_min, self.list_share)
        else:
            return
        info.list_like = verdict
        # The rate budget's list allowance (limits.budget()): a sender whose latest
        # list-sized post came out as a list (at most list_max_failure_share failing)
        # keeps it for a window; a list-sized post that did not ends it at once.
        mem.list_until = now + self.window if verdict else 0.0
        held, info.held = info.held, []
        if not verdict:
            # Not a list post: its failures weigh when the sender's failures over the
            # window, these included, are above a list's share — not on this message's
            # share alone. A list posting in chunks of ten with 9% dead members has
            # chunks with three dead (30%); the post as a whole is a list's.
            fresh = {r.lower() for r, _c, _t in held}
            failed_now = mem.failed.count(now) + sum(1 for r in fresh if r not in mem.failed)
            attempted_now = mem.attempted.count(now) + sum(
                1 for r in fresh if r not in mem.attempted)
            weigh = failed_now > self.list_share * max(attempted_now, failed_now, 1)
            for rcpt, cls, t in held:
                self.count_failure(mem, rcpt, OutcomeClass(cls), t, weigh=weigh)
            return
        if held:
            _discount(mem, len(held), now)
        list_id = info.list_id or info.envelope_from or info.queue_id
        new = mem.lists.add(list_id.lower(), now)
        n_lists = mem.lists.count(now)
        mem.baseline.saw_list(list_id.lower(), now)
        weight, waived = _list_weight(mem, new, n_lists, now, self.weights.extra_mailing_list)
        mem.add(weight, now, self.half_life)
        mem.note(Kind.MAILING_LISTS, now, weight, example=list_id, lists=n_lists, waived=waived)

    def seen(self, mem: SenderMemory, rcpt: str, now: float) -> None:
        """A recipient attempted (any outcome): the denominator of the failure share."""
        if mem.attempted.count(now) < MAX_ATTEMPTED or rcpt in mem.attempted:
            mem.attempted.add(rcpt.lower(), now)

    def count_failure(self, mem: SenderMemory, rcpt: str, cls: OutcomeClass, now: float,
                      *, weigh: bool = False) -> None:
        """A failure that counts: weighted once per distinct recipient in the window, in
        proportion to the distinct recipients attempted (`share.failure_verdict`)."""
        self.seen(mem, rcpt, now)
        if not mem.failed.add(rcpt.lower(), now):
            return
        mem.baseline.outcome(False)
        # The other hosts' windows count as if seen here (failwindow.py): a bot spread
        # over the cluster meets the trigger once, not once per host.
        elsewhere, attempted_elsewhere = mem.others_failed
        distinct = mem.failed.count(now) + elsewhere
        attempted = max(mem.attempted.count(now) + attempted_elsewhere, distinct)
        verdict = failure_verdict(distinct, attempted, self.share_rule)
        kind = FAILURE_KINDS.get(cls, Kind.FAILED_RECIPIENTS)
        if cls is OutcomeClass.VIRUS:
            weight = self.weights.virus_rejection  # a virus refusal weighs whatever the share
        elif not (verdict.above_lists or weigh):
            weight = 0.0  # as few failing as a list post: a mailshot's dead addresses
        elif cls is OutcomeClass.SPAM_POLICY:
            weight = self.weights.spam_rejection
        else:
            weight = self.weights.failed_recipient
        mem.add(weight, now, self.half_life)
        mem.note(kind, now, weight, example=rcpt)
        if self.probation.failure(mem, distinct, attempted, now):
            verdict = Verdict(True, True, "probation")
        if verdict.trigger:
            before = mem.score(now, self.half_life)
            mem.raise_to(self.throttle_score, now, self.half_life)
            raised = max(0.0, mem.score(now, self.half_life) - before)
            mem.note(Kind.TOO_MANY_FAILURES, now, raised, failed_recipients=distinct,
                     trigger=self.trigger, attempted_recipients=attempted,
                     share=round(distinct / attempted, 3), rule=verdict.rule,
                     failed_elsewhere=elsewhere)


def weigh_shown(judge: Judge, mem: SenderMemory, found: list[tuple[str, float, str]],
                now: float) -> None:
    """The submission findings: each kind counts once per HELO memory (`set_windows`)."""
    for kind, weight, example in found:
        if not mem.shown.add(kind, now):
            continue
        mem.add(weight, now, judge.half_life)
        mem.note(kind, now, weight, example=example)
        if weight > 0.0:
            judge.probation.enter(mem, f"{phrase(kind, kind)}: {example}", now)


def _list_weight(mem: SenderMemory, new: bool, n_lists: int, now: float,
                 extra: float) -> tuple[float, int]:
    """(weight, lists waived) for a list post: a further list weighs unless the host
    is a list server (`standing.py`); once it no longer is, the lists waived before
    weigh too, so a spammer's first identities are not forgiven. `extra` is the
    weight of a further list."""
    lists = mem.findings.get(Kind.MAILING_LISTS) or {}
    waived = min(int(lists.get("waived", 0)), max(n_lists - 2, 0))
    if not new or n_lists <= 1:
        return 0.0, waived
    if is_list_server(mem.baseline, mem.lists.items(now)):
        return 0.0, waived + 1
    return extra * (waived + 1), 0


def _discount(mem: SenderMemory, n: int, now: float) -> None:
    mem.baseline.outcome(False, n)  # a list's dead addresses still fail
    f = mem.findings.get(Kind.LIST_FAILURES_DISCOUNTED)
    mem.note(Kind.LIST_FAILURES_DISCOUNTED, now, discounted=(f or {}).get("discounted", 0) + n)
