"""Judging what an MTA's log shows about a client besides outcomes (`ClientEvidence`).

- A refused session's HELOs go through the same checks as the milter's and the policy
  server's (`Judge.helos`): each anomaly kind counts once per HELO memory, so a HELO the
  policy server's INFO line or the milter already reported is not counted again.
- mx mode: postscreen's verdict on a client (`[weights] postscreen_verdict` each time the
  log gives it anew, see maillog/evidence.py) and a spam filter's verdict logged by the
  filter itself (`spam_verdict`, as the milter's spam headers weigh; forwarded mail is
  discounted by `Judge.forwarded`, the milter's rule).
- mx mode: a client in our own ranges (`[general] own_networks` and the `[[customers]]`
  networks) is one of our customers sending straight to the Internet: the first sighting
  weighs `own_network_inbound` (as a delivered message does), each refused session,
  postscreen verdict or spam verdict of it `own_network_refusal` more.

Pure bookkeeping on `SenderMemory`, like judge.py.
"""

from __future__ import annotations

from extrusion.scoring.events import ClientEvidence, Seen
from extrusion.scoring.heuristics import is_null_sender, mentions_own_network
from extrusion.scoring.judge import Judge
from extrusion.scoring.kinds import Kind
from extrusion.scoring.memory import SenderMemory


def judge_evidence(judge: Judge, mem: SenderMemory, event: ClientEvidence, now: float) -> None:
    w, half_life = judge.weights, judge.half_life
    if event.kind is Seen.SESSION:
        judge.helos(mem, event.helos, event.client_addr, now, client_name=event.client_name,
                    envelope_from=event.envelope_from, recipients=event.recipients)
    elif not judge.mx:
        return  # postscreen and spam filters judge Internet senders: an MX's evidence
    elif event.kind is Seen.POSTSCREEN:
        mem.add(w.postscreen_verdict, now, half_life)
        mem.note(Kind.POSTSCREEN_VERDICTS, now, w.postscreen_verdict, example=event.detail)
    elif event.kind is Seen.SPAM_VERDICT:
        if is_null_sender(event.envelope_from) and not event.client_addr:
            return
        # The milter's verdicts and the log's share one rule (standing.py): SRS from the
        # forwarder's own host or a stable forwarder, never an SRS address a bot wrote.
        forwarded = judge.forwarded(mem, event.envelope_from, event.client_name, now)
        weight = 0.0 if forwarded else w.spam_verdict
        mem.add(weight, now, half_life)
        mem.note(Kind.SPAM_VERDICTS, now, weight, example=event.detail)
    own_range(judge, mem, event, now)


def own_range(judge: Judge, mem: SenderMemory, event: ClientEvidence, now: float) -> None:
    """mx mode: an own customer's address seen from outside in a refused session, a
    postscreen verdict or a spam verdict. The first sighting is left to the milter when
    one reports the same connections (`client_evidence` False); the refusals and verdicts
    it never sees (postscreen's come before smtpd) count here either way."""
    if not (judge.mx and judge.own_networks
            and mentions_own_network(event.client_addr, judge.own_networks)):
        return
    first = event.client_evidence and mem.helos.add(Kind.OWN_NETWORK_INBOUND, now)
    weight = judge.weights.own_network_inbound if first else 0.0
    mem.add(weight, now, judge.half_life)
    mem.note(Kind.OWN_NETWORK_INBOUND, now, weight, example=event.client_addr,
             seen_from_outside=True)
    refusal = judge.weights.own_network_refusal
    mem.add(refusal, now, judge.half_life)
    mem.note(Kind.OWN_NETWORK_REFUSED, now, refusal,
             example=f"{event.client_addr}: {event.kind.value} {event.detail}".strip())
