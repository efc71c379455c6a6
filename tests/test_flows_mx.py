"""MX mode: an address's mail at our MX annotates its direct port-25 flows (mxnotes.py).

One engine in `[general] mode = "mx"`, as `serve` runs it: Postfix 3.7 MX log lines
(extrusion_dev.mxsession) through the log feed, then pmacct print records through
the flow follower. Refused or spam mail at the MX escalates the flows; clean mail
and a low direct rate keep them from being flagged on their own.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from twisted.internet import defer

from extrusion.config import Config, from_dict
from extrusion.flows.analysis import CLEAN_AT_MX
from extrusion.flows.follow import FlowFollower
from extrusion.flows.simulate import mx_address
from extrusion.maillog.feed import LogFeed
from extrusion.notify.digest import build_digest
from extrusion.report import words
from extrusion.report.command import run
from extrusion.report.load import notification_builder
from extrusion.scoring.engine import Engine
from extrusion.scoring.events import State, StateChange
from extrusion.scoring.kinds import Kind
from extrusion.scoring.store import Store
from extrusion_dev.mxsession import Client, MxWriter, Transaction

from .test_policyd_server import ServerCase
from .test_policyd_support import make_config as daemon_config

T0 = 1_796_515_200.0  # 2026-12-06 00:00 UTC
WEIGHT = 25.0
BOT = "100.64.1.2"  # its mail at our MX: spam and unknown users
CLEAN = "100.64.3.4"  # its mail at our MX: delivered, clean
BUSY = "100.64.5.6"  # clean at our MX too, but sending direct at a high rate
UNKNOWN = "100.64.7.8"  # no mail at our MX at all


def make_config(url: str, tmp_path: Path, name: str = "port25.json", **flows: Any) -> Config:
    return from_dict({
        "general": {"mode": "mx", "hostname": "mx1", "own_networks": ["100.64.0.0/10"],
                    "own_domains": ["isp.example"]},
        "store": {"url": url, "spool_dir": str(tmp_path / "spool")},
        "milter": {"enabled": False},
        "weights": {"direct_to_mx": WEIGHT},
        "flows": {"path": str(tmp_path / name), "start_at": "beginning",
                  "min_destinations": 10, "min_networks": 5, "mx_escalation": 2.0,
                  "mx_clean_packets_per_hour": 5000, **flows},
    }, tmp_path / "extrusion.toml")


def mx_lines() -> list[str]:
    """An hour of our MX: the bot's spam refused and its guesses at users unknown, two
    clean senders' mail delivered."""
    mx = MxWriter(seed=7, host="mx1")
    t = T0 + 60
    bot = Client(BOT, "unknown", "pc-7")  # a plain HELO: the MX log alone does not hold it
    for i in range(3):
        t = mx.session(t, bot, [Transaction(f"win{i}@pharma.example",
                                            [f"user{i}@isp.example", f"guess{i}@isp.example"],
                                            unknown={f"guess{i}@isp.example"}, spam=True)])
        t += 30
    for addr in (CLEAN, BUSY):
        person = Client(addr, f"host-{addr.replace('.', '-')}.dyn.isp.example", "laptop")
        for i in range(2):
            t = mx.session(t, person, [Transaction(f"anna{i}@friends.example",
                                                   [f"ben{i}@isp.example"])])
            t += 30
    return [text for _t, _seq, text in sorted(mx.w.lines)]


def flow_record(src: str, i: int, rate: int) -> str:
    t = int(T0) + 3600 + 60 * i
    return json.dumps({"ip_src": src, "ip_dst": mx_address(i), "port_dst": 25,
                       "ip_proto": "tcp", "sampling_rate": rate,
                       "stamp_inserted": t - t % 300, "stamp_updated": t, "packets": 1})


@pytest.fixture
def engine(store_url: str, tmp_path: Path) -> Any:
    clock = [T0]
    cfg = make_config(store_url, tmp_path)
    eng = Engine(cfg, Store(store_url), lambda: clock[0], own_store=True)
    eng.whole_config = cfg  # type: ignore[attr-defined]  # the engine keeps its own part
    feed = LogFeed.from_config(eng, cfg, reference_time=T0)
    for line in mx_lines():
        feed.line(line)
    feed.finish()
    eng.flush()
    yield eng
    eng.close()


def follow(engine: Engine, tmp_path: Path, lines: list[str]) -> FlowFollower:
    Path(engine.whole_config.flows.path).write_text("".join(x + "\n" for x in lines))
    follower = FlowFollower(engine.whole_config, engine)
    follower.poll()
    return follower


def finding(engine: Engine, key: str) -> dict[str, Any] | None:
    engine.flush()
    row = engine.store.sender(key)
    if row is None:
        return None
    f: dict[str, Any] | None = row.findings.get(Kind.DIRECT_TO_MX)
    return f


def test_the_mx_log_counts_on_the_keys_the_flows_land_on(engine: Engine) -> None:
    # The evidence of both sides on one sender: what the annotation reads.
    bot = engine.store.sender(f"ip:{BOT}")
    assert bot is not None
    assert sum(engine.store.counters(f"ip:{BOT}", "rejected").values()) >= 3
    assert sum(engine.store.counters(f"ip:{CLEAN}", "sent").values()) == 2


def test_refused_mail_at_the_mx_escalates_direct_sending(engine: Engine,
                                                         tmp_path: Path) -> None:
    # Six destinations in six networks: under the minimums (10, 5) of the flows alone,
    # over the escalated ones (5, 3) for an address whose MX mail was refused.
    lines = [flow_record(a, i, 2000) for a in (BOT, UNKNOWN) for i in range(6)]
    follower = follow(engine, tmp_path, lines)
    f = finding(engine, f"ip:{BOT}")
    assert f is not None, follower.feed.analysis.skipped
    assert f["mx_delivered"] == 0 and f["mx_refused"] >= 3
    assert f["weight"] == WEIGHT * 2  # flagged once, weighing twice direct_to_mx
    assert f["destinations"] == 5  # flagged at the escalated minimum, not at the sixth
    text = words.direct_summary(f)
    assert f"mail from this address at our MX: 0 delivered, {f['mx_refused']} refused/spam" \
        in text
    # No mail at our MX: nothing to escalate on, the flows alone are under the minimums.
    assert finding(engine, f"ip:{UNKNOWN}") is None
    # The state the bot gets: more than a single direct_to_mx finding would give.
    row = engine.store.sender(f"ip:{BOT}")
    assert row is not None and row.state in ("held", "blocked")


def test_the_report_and_the_notification_carry_the_annotation(
        engine: Engine, store_url: str, tmp_path: Path) -> None:
    follow(engine, tmp_path, [flow_record(BOT, i, 2000) for i in range(6)])
    engine.flush()
    wanted = "mail from this address at our MX: 0 delivered, "
    out = tmp_path / "report.txt"
    run(engine.whole_config, since="all", fmt="text", out=str(out), clock=lambda: T0 + 7200)
    assert wanted in out.read_text()
    # The MX log alone already held this own customer (spam refused, HELO, unknown
    # users); the digest of that change carries the flows' annotation as they stand now.
    row = engine.store.sender(f"ip:{BOT}")
    assert row is not None and row.state == "held"
    mine = [StateChange(T0 + 3600, f"ip:{BOT}", State.THROTTLED, State.HELD, row.score,
                        "direct to MX")]
    report = notification_builder(engine.store, half_life=3600.0)([f"ip:{BOT}"])
    digest = build_digest(mine[-1:], report, generated_at=T0 + 3700)
    assert wanted in digest.text
    assert wanted in digest.json


def test_clean_mail_at_the_mx_and_a_low_rate_is_not_flagged(engine: Engine,
                                                            tmp_path: Path) -> None:
    # Twelve destinations in twelve networks (over the minimums), one sampled packet
    # each at 1 in 100: ~1,200 packets an hour, under mx_clean_packets_per_hour.
    lines = [flow_record(CLEAN, i, 100) for i in range(12)]
    # The same clean MX mail and ~24,000 packets an hour: flagged, annotated, not escalated.
    lines += [flow_record(BUSY, i, 2000) for i in range(12)]
    # No MX mail at all and the same low rate: the flows alone flag it.
    lines += [flow_record(UNKNOWN, i, 100) for i in range(12)]
    follower = follow(engine, tmp_path, lines)
    assert finding(engine, f"ip:{CLEAN}") is None
    assert follower.feed.analysis.skipped[CLEAN_AT_MX] == 3  # its records 10 to 12
    busy = finding(engine, f"ip:{BUSY}")
    assert busy is not None
    assert (busy["mx_delivered"], busy["mx_refused"], busy["weight"]) == (2, 0, WEIGHT)
    assert "at our MX: 2 delivered, 0 refused/spam" in words.direct_summary(busy)
    unknown = finding(engine, f"ip:{UNKNOWN}")
    assert unknown is not None and (unknown["mx_delivered"], unknown["mx_refused"]) == (0, 0)


def test_off_outside_mx_mode_and_when_disabled(store_url: str, tmp_path: Path) -> None:
    smarthost = from_dict({
        "general": {"own_networks": ["100.64.0.0/10"]},
        "store": {"url": store_url, "spool_dir": str(tmp_path / "spool")},
        "flows": {"path": str(tmp_path / "smarthost.json"), "start_at": "beginning"},
    }, tmp_path / "smarthost.toml")
    disabled = make_config(store_url, tmp_path, "disabled.json", mx_annotation=False)
    for cfg, src in ((disabled, "100.64.9.1"), (smarthost, "100.64.9.2")):
        eng = Engine(cfg, Store(store_url), lambda: T0, own_store=True)
        eng.whole_config = cfg  # type: ignore[attr-defined]
        try:
            follower = follow(eng, tmp_path, [flow_record(src, i, 100) for i in range(12)])
            assert follower.feed.analysis.notes is None
            f = finding(eng, f"ip:{src}")
            assert f is not None and "mx_delivered" not in f
            assert "at our MX" not in words.direct_summary(f)
        finally:
            eng.close()


class MxServe(ServerCase):
    """The daemon as `serve` runs it in mx mode: the MX's log and the flow records, one
    engine; the bot's refused mail escalates its flows on the same sender."""

    def config(self) -> Config:
        self.maillog = self.tmp / "mail.log"
        self.maillog.write_text("")
        self.records = self.tmp / "port25.json"
        self.records.write_text("")
        return daemon_config(
            self.tmp,
            general={"mode": "mx", "own_networks": ["100.64.0.0/10"],
                     "own_domains": ["isp.example"]},
            maillog={"source": "file", "path": str(self.maillog), "poll_seconds": 0.2,
                     "submission_wait_seconds": 1.0},
            flows={"enabled": True, "path": str(self.records), "poll_seconds": 0.2},
        )

    def refused(self) -> float:
        self.engine.flush()
        return sum(self.engine.store.counters(f"ip:{BOT}", "rejected").values())

    def direct(self) -> dict[str, Any] | None:
        return finding(self.engine, f"ip:{BOT}")

    @defer.inlineCallbacks
    def test_refused_mail_at_the_mx_escalates_the_flows_in_serve(self) -> Any:
        mx = MxWriter(seed=7, host="mx1")
        t = time.time() - 120
        for i in range(3):
            t = mx.session(t, Client(BOT, "unknown", "[192.0.2.25]"), [Transaction(
                f"win{i}@pharma.example", [f"user{i}@isp.example"], spam=True)])
        with self.maillog.open("a") as out:
            out.writelines(text + "\n" for _t, _seq, text in sorted(mx.w.lines))
        yield self.until("the MX refusals counted", lambda: self.refused() >= 3)
        now = int(time.time())
        with self.records.open("a") as out:
            for i in range(6):  # under the minimums (10, 5), over the escalated (5, 3)
                out.write(json.dumps({
                    "ip_src": BOT, "ip_dst": mx_address(i), "port_dst": 25, "ip_proto": "tcp",
                    "sampling_rate": 2000, "stamp_inserted": now - now % 3600,
                    "stamp_updated": now, "packets": 1}) + "\n")
        f = yield self.until("the escalated finding", self.direct)
        self.assertGreaterEqual(f["mx_refused"], 3)
        self.assertEqual(f["mx_delivered"], 0)
        self.assertEqual(f["destinations"], 5)
