"""When and how the milter judges HELOs (issue 19, defect 6).

A HELO is judged at every MAIL and at every HELO after the first MAIL, and
against the recipients of a transaction that ends unsent, once per distinct
HELO and envelope; a small firm's server saying its own domain is no liar.
Played through pymilter's TestCtx against the real engine (tests/test_milter.py).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from typing import Any

import Milter
import pytest

from extrusion.milter.adapter import ExtrusionMilter, Runtime, Settings
from extrusion.milter.heloconfirm import HeloResolver

from .test_milter import Ctx, Milters, Observed, engine, make_config, milters

__all__ = ["engine", "milters"]  # the fixtures, shared with tests/test_milter.py


def findings(engine: Observed, sender: str) -> dict[str, Any]:
    engine.flush()
    row = engine.engine.store.sender(sender)
    return {} if row is None else dict(row.findings)


def helo_examples(engine: Observed, sender: str) -> list[str]:
    return list(findings(engine, sender).get("helo_anomalies", {}).get("examples", []))


def test_a_second_helo_after_mail_is_judged_without_an_accepted_message(
    engine: Observed,
) -> None:
    ctx = Ctx()
    ctx._connect(host="mail.client.example", helo="mail.client.example", ip="203.0.113.20")
    assert ctx._envfrom("<a@client.example>") == Milter.CONTINUE
    assert ctx._helo("JOHNS-PC") == Milter.CONTINUE  # RSET, a new EHLO, no message
    ctx._close()
    examples = helo_examples(engine, "ip:203.0.113.20")
    assert "JOHNS-PC (helo_no_dot)" in examples
    assert "mail.client.example (helo_multiple)" in examples


def test_helo_equal_to_mail_from_counts_though_no_recipient_is_accepted(
    engine: Observed,
) -> None:
    ctx = Ctx()
    ctx._connect(host="unknown", helo="example.org", ip="203.0.113.21")
    ctx._envfrom("<kwntefsqhi@example.org>")
    ctx._abort()  # every RCPT refused by the MTA: the client gives up
    assert engine.submissions == []
    assert "example.org (helo_sender_domain)" in helo_examples(engine, "ip:203.0.113.21")


def test_helo_equal_to_a_refused_recipients_domain_is_judged_when_the_transaction_ends(
    milters: Milters,
) -> None:
    milters.start(rate_limits=True)
    ctx = Ctx()
    ctx._setsymval("{auth_authen}", "tiny@example.net")  # one recipient an hour
    ctx._connect(host="unknown", helo="victim.example", ip="203.0.113.22")
    ctx._envfrom("<a@sender.example>")
    assert ctx._envrcpt("<first@elsewhere.example>") == Milter.CONTINUE
    assert ctx._envrcpt("<ceo@victim.example>") == Milter.TEMPFAIL
    ctx._abort()
    assert milters.engine is not None
    assert "victim.example (helo_recipient_domain)" in helo_examples(
        milters.engine, "sasl:tiny@example.net")


def test_each_distinct_helo_is_sent_once(engine: Observed) -> None:
    ctx = Ctx()
    ctx._connect(host="unknown", helo="pc1.example.net", ip="203.0.113.23")
    ctx._envfrom("<a@example.net>")
    ctx._helo("pc1.example.net")  # the same again: nothing new
    ctx._envfrom("<b@example.net>")  # same MAIL FROM domain: nothing new
    assert len(engine.connections) == 1
    ctx._helo("pc2.example.net")
    assert len(engine.connections) == 2
    assert engine.connections[-1].helos == ("pc1.example.net", "pc1.example.net",
                                            "pc2.example.net")
    ctx._close()
    assert len(engine.connections) == 2


# --- a small firm is not a bot ------------------------------------------------------------------


def test_a_small_firm_with_its_own_reverse_name_is_not_refused_nor_scored(
    milters: Milters,
) -> None:
    engine = milters.start(reject_bad_helo=True)
    ctx = Ctx()
    ctx._connect(host="mail.smallfirm.example", helo="smallfirm.example", ip="203.0.113.30")
    assert ctx._envfrom("<info@smallfirm.example>") == Milter.CONTINUE
    ctx._close()
    assert helo_examples(engine, "ip:203.0.113.30") == []
    # A bot saying the domain it forges is refused as before.
    bot = Ctx()
    bot._connect(host="unknown", helo="smallfirm.example", ip="203.0.113.31")
    assert bot._envfrom("<info@smallfirm.example>") == Milter.REJECT
    assert bot._reply[2] == "extrusion: HELO/EHLO name rejected (suspicious HELO)"


class FakeDNS:
    """The one thing a test cannot cause for real: a made-up domain's DNS answer."""

    def __init__(self, answers: dict[str, Sequence[str]]) -> None:
        self.answers = answers
        self.asked: list[str] = []

    def __call__(self, name: str) -> Sequence[str]:
        self.asked.append(name)
        return self.answers.get(name, ())


def test_a_bare_domain_helo_that_resolves_to_the_client_is_a_small_firm(
    milters: Milters,
) -> None:
    engine = milters.start()
    dns = FakeDNS({"smallfirm.example": ("203.0.113.40",)})
    resolver = HeloResolver(dns)
    assert milters.guard is not None
    runtime = Runtime(milters.guard, Settings.from_config(make_config(milters.tmp_path)),
                      clock=lambda: milters.now, helo_resolver=resolver)
    Milter.factory = lambda: ExtrusionMilter(runtime)
    try:
        for ip in ("203.0.113.40", "203.0.113.41"):  # the firm's server, then a bot
            ctx = Ctx()
            ctx._connect(host=f"static-{ip.rsplit('.', 1)[1]}.isp.example",
                         helo="smallfirm.example", ip=ip)
            ctx._envfrom("<info@smallfirm.example>")
            ctx._envrcpt("<someone@example.com>")
            ctx._eom()
            ctx._close()
    finally:
        resolver.close()
    assert helo_examples(engine, "ip:203.0.113.40") == []
    assert "smallfirm.example (helo_sender_domain)" in helo_examples(engine, "ip:203.0.113.41")
    assert dns.asked == ["smallfirm.example"]  # asked once, then remembered


def test_a_lookup_that_hangs_costs_a_session_no_more_than_the_deadline() -> None:
    release = threading.Event()

    def hang(name: str) -> Sequence[str]:
        release.wait(10)
        return ("203.0.113.50",)

    resolver = HeloResolver(hang, timeout=0.2)
    try:
        t0 = time.monotonic()
        assert resolver.confirmed(["smallfirm.example"], "203.0.113.50",
                                  "info@smallfirm.example") == ()
        assert time.monotonic() - t0 < 2.0
        # Only the bare MAIL FROM domain is ever looked up.
        assert resolver.confirmed(["mail.smallfirm.example", "other.example"], "203.0.113.50",
                                  "info@smallfirm.example") == ()
    finally:
        release.set()
        resolver.close()


@pytest.mark.parametrize("client", ["", "not an address", "unknown"])
def test_the_resolver_never_raises_on_what_the_mta_sends(client: str) -> None:
    resolver = HeloResolver(FakeDNS({}))
    try:
        assert resolver.confirmed(["x.example"], client, "a@x.example") == ()
    finally:
        resolver.close()
