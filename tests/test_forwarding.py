"""Forwarded mail on an MX (issue 19, defect 3): evidence a sender cannot forge cheaply.

Both directions: a real forwarder's refusals by our own spam filter are
discounted, from the log (cleanup `milter-reject` lines) and from the milter
(the filter's headers); a bot forging Received headers or an SRS address,
and Microsoft 365's own seven-Received spam, get no discount.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import Milter
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from extrusion import config as configmod
from extrusion.maillog.feed import LogFeed
from extrusion.maillog.join import JoinSettings
from extrusion.milter.adapter import ExtrusionMilter, Runtime, Settings
from extrusion.milter.guard import EngineGuard
from extrusion.report.words import summary
from extrusion.scoring.baseline import Baseline
from extrusion.scoring.engine import open_engine
from extrusion.scoring.events import Outcome, Stage, Status, Submission
from extrusion.scoring.forwarding import (
    MAX_RECEIVED_KEPT,
    forwarded_origin,
    received_origin,
    srs_domains,
    srs_origin,
)
from extrusion.scoring.standing import FORWARDER_MIN_MESSAGES, FORWARDER_MIN_SECONDS, is_forwarder

from .maillog_helpers import REFERENCE
from .test_engine import Harness, config
from .test_milter import Ctx, Observed

FWD_NAME, FWD_ADDR = "mail.forwarder.example", "198.51.100.4"
SRS = "SRS0=abcd=XY=orig.example=user@forwarder.example"
OURS = (f"from {FWD_NAME} ({FWD_NAME} [{FWD_ADDR}]) by mx.our.example (Postfix) with ESMTPS "
        "id 4AbCd for <x@our.example>; Sat, 5 Dec 2026 10:00:01 +0000")
FORWARDERS_HOP = ("from mta.orig.example (mta.orig.example [203.0.113.50]) by "
                  f"{FWD_NAME} (Postfix) with ESMTP id 9ZzYy for <alias@forwarder.example>; "
                  "Sat, 5 Dec 2026 10:00:00 +0000")


# --- SRS ----------------------------------------------------------------------------------------


def test_srs_addresses_name_the_forwarder_and_the_original_domain() -> None:
    assert srs_domains(SRS) == ("forwarder.example", "orig.example")
    assert srs_domains("<SRS1=HHH=first.example==HHH=TT=orig.example=u@fwd2.example>") == (
        "fwd2.example", "orig.example")
    assert srs_domains("user@forwarder.example") is None
    assert srs_domains("SRS0=broken@forwarder.example") is None


@pytest.mark.parametrize(
    ("client_name", "origin"),
    [
        (FWD_NAME, "orig.example"),  # the forwarder's own host
        ("dyn-203-0-113-9.isp.example", ""),  # a bot writing SRS0=…@forwarder.example
        ("", ""),  # no reverse name: nothing ties the address to the client
        ("unknown", ""),
    ],
)
def test_srs_counts_only_from_the_forwarders_own_host(client_name: str, origin: str) -> None:
    assert srs_origin(SRS, client_name) == origin


# --- the Received chain -------------------------------------------------------------------------


def test_a_hop_written_by_the_client_naming_another_origin_is_forwarding() -> None:
    assert received_origin([OURS, FORWARDERS_HOP], FWD_ADDR, FWD_NAME) == "orig.example"
    # An MTA that shows the milter no header of its own: the topmost is the hop below.
    assert received_origin([FORWARDERS_HOP], FWD_ADDR, FWD_NAME) == "orig.example"


def test_a_bot_forging_five_received_headers_gets_no_discount() -> None:
    forged = [f"from relay{i}.example.com (relay{i}.example.com [198.18.{i}.1]) by "
              f"relay{i + 1}.example.com with ESMTP id X{i}" for i in range(5)]
    bot_ours = "from pc17 (unknown [203.0.113.9]) by mx.our.example (Postfix) with SMTP id Q"
    # No reverse name: nothing the bot wrote can be tied to it.
    assert received_origin([bot_ours, *forged], "203.0.113.9", "") == ""
    # With a (generic) reverse name, the hop below ours is not written by it.
    assert received_origin([bot_ours, *forged], "203.0.113.9",
                           "dyn-203-0-113-9.isp.example") == ""


def test_microsoft_365_direct_spam_with_seven_received_gets_no_discount() -> None:
    client = "mail-db8eur05on2100.outbound.protection.outlook.com"
    chain = [
        f"from {client} ({client} [40.107.20.100]) by mx.our.example (Postfix) with ESMTPS id Q",
        "from DB8PR09MB3259.eurprd09.prod.outlook.com (2603:10a6:10:12::3) by "
        "DB8EUR05FT011.mail.protection.outlook.com (2603:10a6:10:13::4) with Microsoft SMTP "
        "Server id 15.20.1",
        *[f"from AM{i}PR09MB.eurprd09.prod.outlook.com ([fe80::{i}]) by "
          f"AM{i + 1}PR09MB.eurprd09.prod.outlook.com ([fe80::{i + 1}]) with mapi id 15.20"
          for i in range(5)],
    ]
    assert len(chain) == 7
    assert received_origin(chain, "40.107.20.100", client) == ""


def test_an_authenticated_submission_through_the_client_is_not_forwarding() -> None:
    submission = (f"from laptop (cpe-1.home.example [203.0.113.77]) by {FWD_NAME} (Postfix) "
                  "with ESMTPSA id 1X for <a@b.example>")
    assert received_origin([OURS, submission], FWD_ADDR, FWD_NAME) == ""


def test_only_the_first_few_received_headers_are_read() -> None:
    filler = [f"from a{i}.example (a{i}.example [198.18.0.{i}]) by b.example" for i in range(50)]
    assert received_origin([*filler, OURS, FORWARDERS_HOP], FWD_ADDR, FWD_NAME) == ""
    assert MAX_RECEIVED_KEPT < 50


@settings(max_examples=200, deadline=None)
@given(chain=st.lists(st.text(max_size=2000), max_size=8), env=st.text(max_size=400),
       name=st.text(max_size=300))
def test_wire_text_never_makes_it_raise(chain: list[str], env: str, name: str) -> None:
    assert isinstance(forwarded_origin(env, chain, FWD_ADDR, name), str)


# --- the log path: our own filter's refusals ------------------------------------------------------


def _line(sec: int, prog: str, text: str) -> str:
    m, s = divmod(sec, 60)
    h, m = divmod(m, 60)
    return f"Dec  1 {h:02d}:{m:02d}:{s:02d} mx1 {prog}[{1000 + sec}]: {text}"


def refused_by_spamassassin(sec: int, qid: str, client: str, envelope_from: str,
                            rcpt: str = "x@our.example") -> list[str]:
    """A message our SpamAssassin milter refuses at end of data, as Postfix 3.7 logs it."""
    name, _addr = client.rstrip("]").split("[")
    return [
        _line(sec, "postfix/smtpd", f"connect from {client}"),
        _line(sec, "postfix/smtpd", f"{qid}: client={client}"),
        _line(sec + 1, "postfix/cleanup",
              f"{qid}: milter-reject: END-OF-MESSAGE from {client}: 5.7.1 Blocked by "
              f"SpamAssassin; from=<{envelope_from}> to=<{rcpt}> proto=ESMTP "
              f"helo=<{name if name != 'unknown' else 'pc17'}>"),
        _line(sec + 1, "postfix/smtpd", f"disconnect from {client} ehlo=1 mail=1 rcpt=1 "
                                        "data=0/1 quit=1"),
    ]


def replay(h: Harness, lines: list[str]) -> None:
    feed = LogFeed(h.engine, settings=JoinSettings(), reference_time=REFERENCE, tz=None)
    for line in lines:
        feed.line(line)
    feed.finish()


@pytest.fixture
def mx(tmp_path: Path) -> Iterator[Harness]:
    h = Harness(config(tmp_path, general={"mode": "mx"}))
    yield h
    h.close()


def test_a_forwarders_srs_mail_refused_by_our_filter_is_discounted(mx: Harness) -> None:
    lines = [line for i in range(30) for line in refused_by_spamassassin(
        10 * i, f"4AbC{i:04X}", f"{FWD_NAME}[{FWD_ADDR}]", SRS, f"u{i}@our.example")]
    replay(mx, lines)
    d = mx.engine.decide(f"ip:{FWD_ADDR}", Stage.CONNECT, count=False)
    assert d.score == 0.0
    mx.engine.flush()
    stored = mx.store.sender(f"ip:{FWD_ADDR}")
    assert stored is not None
    discounted = stored.findings["forwarded_discounted"]
    assert discounted["discounted"] == 30
    assert "SRS from orig.example" in discounted["examples"]
    assert summary("forwarded_discounted", discounted).startswith(
        "30 spam verdicts or refusals of forwarded mail discounted")


def test_a_bot_writing_the_same_srs_address_is_not_discounted(mx: Harness) -> None:
    bot = "203.0.113.9"
    lines = [line for i in range(30) for line in refused_by_spamassassin(
        10 * i, f"5BcD{i:04X}", f"unknown[{bot}]", SRS, f"u{i}@our.example")]
    replay(mx, lines)
    d = mx.engine.decide(f"ip:{bot}", Stage.CONNECT, count=False)
    assert d.score > 0.0
    assert d.state.rank >= 2  # throttled or beyond: 30 refusals as spam


# --- a stable forwarder identity over time (no SRS) ---------------------------------------------


def test_a_stable_forwarder_without_srs_gets_the_discount_and_a_bot_does_not(
    mx: Harness,
) -> None:
    forwarder, bot = "ip:198.51.100.5", "ip:203.0.113.10"
    name = "relay.forwarder2.example"
    per = FORWARDER_MIN_SECONDS / FORWARDER_MIN_MESSAGES
    for i in range(FORWARDER_MIN_MESSAGES + 5):
        # Mail of many other domains' senders, from a host with a reverse name: the
        # forwarder's is delivered, the bot's (the same envelopes) is never seen delivered.
        mx.clock.t += per
        env = f"someone@sender{i % 7}.example"
        for sender, addr in ((forwarder, "198.51.100.5"), (bot, "203.0.113.10")):
            q = f"{sender}-{i}"
            mx.engine.submission(Submission(
                time=mx.clock.t, sender=sender, queue_id=q, envelope_from=env,
                recipients=(f"alias{i}@our.example",), client_addr=addr, client_name=name))
            if sender == forwarder:
                mx.result(q, f"alias{i}@our.example", Status.SENT, "250 2.0.0 Ok: queued")
    for sender in (forwarder, bot):
        for k in range(25):
            mx.clock.t += 5
            mx.engine.outcome(Outcome(
                time=mx.clock.t, queue_id=f"R{sender}{k}", recipient=f"u{k}@our.example",
                status=Status.REJECTED, dsn="5.7.1", reply="550 5.7.1 Blocked by SpamAssassin",
                sender=sender, envelope_from=f"spam@spammer{k}.example", client_name=name))
    assert mx.engine.decide(forwarder, Stage.CONNECT, count=False).score == 0.0
    # The bot sent the same mail, but none of it is known delivered: no forwarder.
    assert mx.engine.decide(bot, Stage.CONNECT, count=False).score > 0.0
    mx.engine.flush()
    fwd, spam = mx.store.sender(forwarder), mx.store.sender(bot)
    assert fwd is not None and spam is not None
    assert fwd.findings["forwarded_discounted"]["discounted"] == 25
    assert "spam_rejections" not in fwd.findings
    assert spam.findings["spam_rejections"]["weight"] > 0.0
    assert "forwarded_discounted" not in spam.findings


def test_the_discount_is_only_for_refusals_as_spam_not_unknown_users(mx: Harness) -> None:
    lines = []
    for i in range(25):
        lines += refused_by_spamassassin(10 * i, f"6CdE{i:04X}", f"{FWD_NAME}[{FWD_ADDR}]", SRS,
                                         f"u{i}@our.example")
    unknown = [
        _line(400 + i, "postfix/smtpd",
              f"NOQUEUE: reject: RCPT from {FWD_NAME}[{FWD_ADDR}]: 550 5.1.1 <gone{i}@our.example>:"
              f" Recipient address rejected: User unknown in virtual mailbox table; from=<{SRS}> "
              f"to=<gone{i}@our.example> proto=ESMTP helo=<{FWD_NAME}>")
        for i in range(25)]
    replay(mx, lines + unknown)
    assert mx.engine.decide(f"ip:{FWD_ADDR}", Stage.CONNECT, count=False).score > 0.0


# --- the milter path: the filter's headers ------------------------------------------------------


@pytest.fixture
def mx_milter(tmp_path: Path) -> Iterator[Observed]:
    cfg = configmod.from_dict({
        "general": {"hostname": "mx.our.example", "mode": "mx"},
        "store": {"url": f"sqlite:///{tmp_path / 'x.db'}", "spool_dir": str(tmp_path / "spool")},
    })
    engine = Observed(open_engine(cfg, clock=time.time))
    guard = EngineGuard(engine, timeout=2.0)
    runtime = Runtime(guard, Settings.from_config(cfg))
    Milter.factory = lambda: ExtrusionMilter(runtime)
    yield engine
    guard.close()


def deliver(ctx: Ctx, name: str, ip: str, mail: str, headers: list[tuple[str, str]]) -> None:
    """One message from `name[ip]`, with our own Received header on top, as Postfix shows
    the milter, then the filter's verdict headers (the spam milter runs before us)."""
    ctx._setsymval("i", "Q" + "".join(c for c in ip if c.isalnum())[:12].upper())
    ctx._connect(host=name, helo=name, ip=ip)
    ctx._envfrom(f"<{mail}>")
    ctx._envrcpt("<x@our.example>")
    ours = (f"from {name} ({name} [{ip}]) by mx.our.example (Postfix) with ESMTPS id Q; "
            "Sat, 5 Dec 2026 10:00:01 +0000")
    for header, value in [("Received", ours), *headers]:
        ctx._header(header, value)
    ctx._eoh()
    ctx._eom()
    ctx._close()


RSPAMD = [("X-Spamd-Result", "default: True [15.20 / 15.00]; BAYES_SPAM(5.10)[99.99%]"),
          ("X-Rspamd-Action", "reject"), ("X-Spam", "Yes")]


def test_a_forwarders_spam_verdict_through_the_milter_is_discounted(
    mx_milter: Observed,
) -> None:
    deliver(Ctx(), FWD_NAME, FWD_ADDR, "alice@orig.example",
            [("Received", FORWARDERS_HOP), *RSPAMD])
    (sub,) = mx_milter.submissions
    assert sub.headers.forwarded_from == "orig.example"
    found = findings_of(mx_milter, f"ip:{FWD_ADDR}")
    assert "spam_verdicts" not in found
    assert found["forwarded_discounted"]["examples"] == ["received from orig.example"]


@pytest.mark.parametrize(
    ("name", "ip", "chain"),
    [
        # A bot with five forged hops and no reverse name.
        ("unknown", "203.0.113.9",
         [f"from relay{i}.example.com (relay{i}.example.com [198.18.{i}.1]) by "
          f"relay{i + 1}.example.com with ESMTP id X{i}" for i in range(5)]),
        # Microsoft 365's own spam: six more hops, all inside Microsoft.
        ("mail-db8eur05on2100.outbound.protection.outlook.com", "40.107.20.100",
         [f"from AM{i}PR09MB.eurprd09.prod.outlook.com (2603:10a6:10:{i}::3) by "
          f"AM{i + 1}PR09MB.eurprd09.prod.outlook.com with Microsoft SMTP Server id 15.20"
          for i in range(6)]),
    ],
)
def test_forged_or_internal_received_chains_get_no_discount(
    mx_milter: Observed, name: str, ip: str, chain: list[str],
) -> None:
    deliver(Ctx(), name, ip, "offers@cheap.example", [("Received", h) for h in chain] + RSPAMD)
    (sub,) = mx_milter.submissions
    assert sub.headers.received_count == len(chain) + 1 > 4  # what used to be "forwarded"
    assert sub.headers.forwarded_from == ""
    found = findings_of(mx_milter, f"ip:{ip}")
    assert found["spam_verdicts"]["weight"] > 0.0
    assert "forwarded_discounted" not in found


def findings_of(engine: Observed, sender: str) -> dict[str, Any]:
    engine.flush()
    row = engine.engine.store.sender(sender)
    assert row is not None
    return dict(row.findings)


def test_a_forwarder_identity_needs_history_over_hours_not_one_burst() -> None:
    b = Baseline()
    for i in range(FORWARDER_MIN_MESSAGES):
        b.learn(1000.0 + i, "mail.fwd.example", f"sender{i % 5}.example", None, 1)
        b.learn_foreign()
    b.outcome(True, 50)
    assert not is_forwarder(b, 1000.0 + FORWARDER_MIN_MESSAGES)  # twenty in twenty seconds
    assert is_forwarder(b, 1000.0 + FORWARDER_MIN_SECONDS)
    b.outcome(False, 100)  # its deliveries stop working: no longer trusted
    assert not is_forwarder(b, 1000.0 + FORWARDER_MIN_SECONDS)
