"""The `direct_to_mx` finding in the engine and the border export, on SQLite and PostgreSQL.

A customer address the flow records show sending straight to MX hosts is
judged on the sender key its smarthost mail has (`ip:ADDR`, `customer:NAME`);
the addresses held or blocked for it are exported for the border's firewall,
the operator's allow-list respected.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from extrusion.cli import main
from extrusion.config import Config, from_dict
from extrusion.flows import export
from extrusion.report import words
from extrusion.scoring.engine import Engine
from extrusion.scoring.events import FlowEvidence, OperatorAction, OperatorVerb, Stage, State
from extrusion.scoring.kinds import Kind
from extrusion.scoring.store import Store

T0 = 1_796_515_200.0


def make_config(url: str, tmp_path: Path, **flows: Any) -> Config:
    return from_dict({
        "general": {"own_networks": ["10.0.0.0/8"]},
        "store": {"url": url, "spool_dir": str(tmp_path / "spool")},
        "customers": [{"name": "acme", "networks": ["192.0.2.0/24"]}],
        "flows": flows,
    }, tmp_path / "extrusion.toml")


def evidence(addr: str, hour: int) -> FlowEvidence:
    return FlowEvidence(time=T0 + hour * 3600, client_addr=addr, destinations=12, networks=11,
                        hours_active=hour + 1, blocks_active=hour // 4 + 1, packets=24000,
                        examples=("198.51.100.7", "203.0.113.9"),
                        hourly=tuple((int(T0 // 3600) + h, 24000) for h in range(hour + 1)))


@pytest.fixture
def engine(store_url: str, tmp_path: Path) -> Any:
    clock = [T0]
    eng = Engine(make_config(store_url, tmp_path), Store(store_url), lambda: clock[0],
                 own_store=True)
    yield eng
    eng.close()


def test_a_bot_sending_directly_is_throttled_then_held(engine: Engine) -> None:
    states = []
    for hour in range(3):
        engine.direct_sending(evidence("10.1.2.3", hour))
        states.append(engine.decide("ip:10.1.2.3", Stage.RCPT, now=T0 + hour * 3600,
                                    count=False).state)
    assert states == [State.THROTTLED, State.THROTTLED, State.HELD]
    engine.flush()
    row = engine.store.sender("ip:10.1.2.3")
    assert row is not None and row.state == "held"
    f = row.findings[Kind.DIRECT_TO_MX]
    assert (f["count"], f["destinations"], f["sources"]) == (3, 12, ["10.1.2.3"])
    assert len(f["hourly"]) == 3
    # The report says it in words.
    text = words.summary(Kind.DIRECT_TO_MX, f)
    assert "bypassing the smarthost from 10.1.2.3" in text
    assert "12 destination hosts in 11 networks" in text
    assert "active 3 hours of the 4 in its 1 four-hour block" in text


def test_the_html_report_plots_the_hours_and_blocks(engine: Engine, store_url: str,
                                                    tmp_path: Path) -> None:
    from extrusion.report.command import run

    for hour in range(3):
        engine.direct_sending(evidence("10.1.2.3", hour))
    engine.flush()
    out = tmp_path / "report.html"
    run(make_config(store_url, tmp_path), since="all", fmt="html", out=str(out),
        clock=lambda: T0 + 4 * 3600)
    page = out.read_text()
    assert "Direct port-25 packets per hour: ip:10.1.2.3" in page
    assert "four-hour block active" in page
    assert "bypassing the smarthost" in page


def test_a_customers_address_lands_on_the_customer(engine: Engine) -> None:
    engine.direct_sending(evidence("192.0.2.5", 0))
    engine.flush()
    row = engine.store.sender("customer:acme")
    assert row is not None and row.findings[Kind.DIRECT_TO_MX]["sources"] == ["192.0.2.5"]


def test_the_export_lists_held_direct_senders_and_respects_the_allow_list(
        engine: Engine, store_url: str, tmp_path: Path) -> None:
    for hour in range(3):
        for addr in ("10.1.2.3", "10.4.5.6", "192.0.2.5"):
            engine.direct_sending(evidence(addr, hour))
    # One only throttled: not for the border yet.
    engine.direct_sending(evidence("10.7.7.7", 0))
    # An operator's hold for another reason, with no flow finding: not ours to export.
    engine.operator(OperatorAction(T0, "ip:10.8.8.8", OperatorVerb.HOLD, "noc", "spam"))
    engine.flush()
    cfg = make_config(store_url, tmp_path)
    assert export.addresses(engine.store, cfg) == ["10.1.2.3", "10.4.5.6", "192.0.2.5"]
    allowing = make_config(store_url, tmp_path, allow_networks=["10.4.0.0/16"],
                           allow_customers=["acme"])
    assert export.addresses(engine.store, allowing) == ["10.1.2.3"]
    nft = export.render(["10.1.2.3", "2001:db8::5"], cfg, "nft")
    assert "table inet extrusion {" in nft
    assert "flush set inet extrusion direct_smtp\n" in nft
    assert "add element inet extrusion direct_smtp { 10.1.2.3 }" in nft
    assert "add element inet extrusion direct_smtp6 { 2001:db8::5 }" in nft
    assert export.render(["10.1.2.3"], cfg, "list") == "10.1.2.3\n"


def test_a_released_sender_leaves_the_export(engine: Engine, store_url: str,
                                             tmp_path: Path) -> None:
    for hour in range(3):
        engine.direct_sending(evidence("10.1.2.3", hour))
    engine.operator(OperatorAction(T0 + 3 * 3600, "ip:10.1.2.3", OperatorVerb.RELEASE, "noc",
                                   "cleaned"))
    engine.flush()
    assert export.addresses(engine.store, make_config(store_url, tmp_path)) == []


def test_nft_accepts_the_export_and_the_readme_rule(tmp_path: Path) -> None:
    if shutil.which("nft") is None:
        pytest.skip("nft not installed (Debian package nftables)")
    cfg = from_dict({})
    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    rule = readme.split("\n```\ntable inet extrusion {\n", 1)[1].split("```", 1)[0]
    for name, text in (("export.nft", export.render(["10.1.2.3", "2001:db8::5"], cfg, "nft")),
                       ("empty.nft", export.render([], cfg, "nft")),
                       ("rule.nft", "table inet extrusion {\n" + rule)):
        path = tmp_path / name
        path.write_text(text)
        # -c: check only; nothing is loaded into this machine's firewall.
        done = subprocess.run(["nft", "-c", "-f", str(path)], capture_output=True, text=True,
                              timeout=30)
        assert done.returncode == 0, (name, done.stderr)


def test_export_file_is_replaced_only_when_it_changes(tmp_path: Path) -> None:
    out = tmp_path / "direct.nft"
    assert export.write_if_changed(out, "a\n")
    before = out.stat().st_ino
    assert not export.write_if_changed(out, "a\n")
    assert out.stat().st_ino == before
    assert export.write_if_changed(out, "b\n") and out.read_text() == "b\n"


def test_flows_export_command(engine: Engine, store_url: str, tmp_path: Path,
                              capsys: pytest.CaptureFixture[str]) -> None:
    for hour in range(3):
        engine.direct_sending(evidence("10.1.2.3", hour))
    engine.flush()
    conf = tmp_path / "extrusion.toml"
    conf.write_text(f'[store]\nurl = "{store_url}"\nspool_dir = "{tmp_path / "spool"}"\n'
                    '[general]\nown_networks = ["10.0.0.0/8"]\n')
    assert main(["-q", "flows", "export", "--config", str(conf), "--format", "list"]) == 0
    assert capsys.readouterr().out == "10.1.2.3\n"
    assert main(["-q", "flows", "export", "--config", str(conf), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == ["10.1.2.3"]
    out = tmp_path / "border.nft"
    assert main(["-q", "flows", "export", "--config", str(conf), "--out", str(out)]) == 0
    assert "{ 10.1.2.3 }" in out.read_text()
