"""The submission's one-pass common case (scoring/submitfast.py) against the general path
it shortcuts (Judge.submitted and the baseline's learning), over varied senders."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

from extrusion.scoring import recording
from extrusion.scoring.baseline import Baseline, _bump
from extrusion.scoring.book import SenderBook
from extrusion.scoring.events import Headers, Submission
from extrusion.scoring.memory import WINDOWS, SenderMemory
from extrusion.scoring.recording import Recorder
from tests.test_engine import config

SENDERS = ("sasl:anna", "sasl:bob", "ip:192.0.2.7", "ip:198.51.100.9", "customer:shop")
FROMS = ("anna@example.com", "bob@example.org", "shop@shop.example", "", "noreply@example.com",
         "someone@gmail.com", "x@bounce.example.net", "billing@example.com")
RCPT_DOMAINS = ("example.net", "mail.example.co.uk", "gmail.com", "corp.example")


def _submissions(rng: random.Random, n: int) -> list[Submission]:
    out, now = [], 1_700_000_000.0
    for i in range(n):
        now += rng.choice((0.0, 1.0, 30.0, 300.0, 4000.0, -5.0))
        sender = rng.choice(SENDERS)
        bot = rng.random() < 0.1  # new domains every time: spread and envelope domains
        env = f"u{i}@d{i}.example" if bot else rng.choice(FROMS)
        rcpts = tuple(f"r{rng.randrange(50)}@"
                      + (f"x{rng.randrange(10**6)}.test" if bot else rng.choice(RCPT_DOMAINS))
                      for _ in range(rng.choice((1, 1, 2, 5, 30))))
        headers = Headers(forwarded_from="relay.example") if rng.random() < 0.05 else Headers()
        out.append(Submission(now, sender, f"Q{i}", env, rcpts, mta="mx1",
                              client_addr=rng.choice(("192.0.2.7", "203.0.113.4", "")),
                              client_name=rng.choice(("", "mail.example.com", "h.other.test")),
                              helos=rng.choice(((), ("mail.example.com",))), headers=headers))
    return out


def _state(book: SenderBook) -> dict[str, Any]:
    def window(mem: SenderMemory, name: str) -> Any:
        w = mem.made(name)
        return None if w is None else w.items(w._order[-1][0] if w._order else 0.0)

    return {key: (mem.state, round(mem.pending, 9), mem.findings, mem.baseline.to_json(),
                  None if mem.probation is None else mem.probation.reason,
                  {name: window(mem, name) for name in WINDOWS})
            for key, mem in book.senders.items()} | {
        "sasl": dict(book.sasl._seen),
        "messages": [(m.queue_id, m.envelope_from, m.null_sender, m.auto_reply, m.list_id,
                      m.list_like) for m in book.messages._by_queue.values()]}


@pytest.mark.parametrize("seed", range(4))
def test_the_common_case_judges_as_the_general_path(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seed: int) -> None:
    cfg = config(tmp_path, probation={"baseline_messages": 5},
                 scoring={"envelope_domains": 3, "spread_domains": 4})
    events = _submissions(random.Random(seed), 1500)
    # One address's history says it authenticated (a baseline the store kept).
    habit = {"ip:203.0.113.50": {"messages": 40, "authenticated": 40,
                                 "domains": {"shop.example": 40}}}
    events += [Submission(events[-1].time + i, "ip:203.0.113.50", f"H{i}", "shop@shop.example",
                          ("a@example.net",), mta="mx1") for i in range(3)]
    fast = SenderBook(cfg, lambda: 0.0)
    fast.baselines.load(habit)
    for e in events:
        Recorder(fast, lambda: None).submission(e)
    general = SenderBook(cfg, lambda: 0.0)
    general.baselines.load(habit)
    monkeypatch.setattr(recording, "shown_and_learnt", lambda *_: False)
    for e in events:
        Recorder(general, lambda: None).submission(e)
    assert _state(fast) == _state(general)
    # The stories were varied enough to reach every branch the shortcut takes.
    findings = {k for mem in general.senders.values() for k in mem.findings}
    assert {"envelope_domains", "recipient_spread", "probation",
            "freemail_unauthenticated"} <= findings
    assert any(m.auto_reply for m in general.messages._by_queue.values())
    reasons = {ex for mem in general.senders.values()
               for ex in mem.findings.get("probation", {}).get("examples", ())}
    assert any(r.startswith("departs from its own history") for r in reasons)
    assert any("usually authenticates" in r for r in reasons)


def test_learning_a_usual_domain_counts_as_bump_does() -> None:
    # Baseline.learn counts a domain it holds already without _bump(): the same counts,
    # whatever the case, length (cut at MAX_TEXT) and turnover of the names.
    rng = random.Random(5)
    b, want = Baseline(), dict[str, int]()
    names = ["example.com", "EXAMPLE.com", "other.org", "x" * 300 + ".test", "y" * 256]
    for i in range(3000):
        domain = rng.choice(names) if rng.random() < 0.8 else f"d{rng.randrange(30)}.example"
        b.learn(float(i), "", domain, None, 1)
        _bump(want, domain.lower())
        assert b.domains == want
