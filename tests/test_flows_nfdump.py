"""NetFlow via nfdump: a real `nfcapd` on loopback receives NetFlow v5 datagrams built
here (extrusion_dev.netflow5), writes its files, `nfdump -q -o csv` prints them, and
extrusion's follower reads that output into the engine like pmacct's records."""

from __future__ import annotations

import errno
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from extrusion.config import Config, from_dict
from extrusion.flows.follow import FlowFollower
from extrusion.flows.nfdump import parse_csv
from extrusion.flows.records import BadRecord
from extrusion.flows.simulate import mx_address
from extrusion.scoring.engine import Engine
from extrusion.scoring.kinds import Kind
from extrusion.scoring.store import Store
from extrusion_dev.netflow5 import Flow, datagrams

from .flows_harness import free_udp_port
from .helpers import missing

pytestmark = pytest.mark.integration

BOT = "10.1.2.3"
CONSUMER = "10.9.9.9"
BUSINESS = "192.0.2.25"
START_SECONDS = 20.0
ROTATE_SECONDS = 2
SCRIPT = Path(__file__).resolve().parent.parent / "conf" / "nfdump" / "port25-dump"
FILTER = "dst port 25 and proto tcp"  # as the script's


class Nfcapd:
    """nfcapd in the foreground, its files under `tmp/flows`."""

    def __init__(self, tmp: Path, out: Path | None = None) -> None:
        """`out`: rotate every ROTATE_SECONDS and run the shipped script on each file
        (nfcapd -x), appending to `out`; None: one file, closed at stop()."""
        self.port = free_udp_port()
        self.dir = tmp / "flows"
        self.dir.mkdir()
        self.log = tmp / "nfcapd.log"
        args = ["nfcapd", "-b", "127.0.0.1", "-p", str(self.port), "-w", str(self.dir)]
        args += ["-t", str(ROTATE_SECONDS), "-x", f"{SCRIPT} %d/%f"] if out else ["-t", "3600"]
        env = {**os.environ, "PORT25_OUT": str(out)} if out else None
        with open(self.log, "wb") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env,
                                         start_new_session=True)
        self._wait_bound()

    def _wait_bound(self) -> None:
        """Ready once its socket holds the port (a datagram sent before is lost)."""
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"nfcapd exited: {self.log.read_text()[-2000:]}")
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                try:
                    s.bind(("127.0.0.1", self.port))
                except OSError as exc:
                    if exc.errno == errno.EADDRINUSE:
                        return
                    raise
            time.sleep(0.05)
        raise AssertionError(f"nfcapd did not bind: {self.log.read_text()[-2000:]}")

    def send(self, flows: list[Flow], sampling: int = 1) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for d in datagrams(flows, time.time(), sampling):
                s.sendto(d, ("127.0.0.1", self.port))
                time.sleep(0.001)  # one exporter's pace; loopback drops bursts otherwise

    def unread(self) -> int:
        """Bytes of datagrams the kernel holds for nfcapd's socket that it has not read
        yet (the rx_queue column of /proc/net/udp)."""
        local = f"0100007F:{self.port:04X}"
        for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[1] == local:
                return int(fields[4].split(":")[1], 16)
        raise AssertionError(f"nfcapd's socket is gone: {self.log.read_text()[-2000:]}")

    def wait_read(self) -> None:
        """Until nfcapd has read every datagram sent to it: one still queued at SIGTERM
        is dropped with the socket, and on a loaded machine nfcapd may not have been
        scheduled since send() (loopback queues a datagram before sendto returns)."""
        deadline = time.monotonic() + START_SECONDS
        while (left := self.unread()) > 0:
            assert time.monotonic() < deadline, f"nfcapd left {left} bytes unread"
            time.sleep(0.05)

    def stop(self) -> list[Path]:
        """SIGTERM once nfcapd has read what was sent: it closes its current file under
        its final name. Every file it wrote, oldest first (a slow start may have crossed
        a rotation)."""
        if self.proc.poll() is None:
            self.wait_read()
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(20)
        files = sorted(p for p in self.dir.iterdir() if p.name.startswith("nfcapd.2"))
        assert files, f"no nfcapd file: {self.log.read_text()[-2000:]}"
        return files

    def kill(self) -> None:
        """SIGTERM (it stops its -x launcher too), then its whole session if it lingers."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


def need_tools() -> None:
    for tool in ("nfcapd", "nfdump"):
        if shutil.which(tool) is None:
            missing(f"{tool} not installed (Debian package nfdump; make test installs it)")


@pytest.fixture
def nfcapd(tmp_path: Path) -> Iterator[Nfcapd]:
    need_tools()
    n = Nfcapd(tmp_path)
    yield n
    n.kill()


def dump_unquiet(captures: list[Path], out: Path) -> None:
    """nfdump without -q: its header and summary lines around the records (one run over
    all the files, as the shipped script's one file: one header, one summary)."""
    with out.open("ab") as sink:
        subprocess.run(["nfdump", "-M", str(captures[0].parent), "-R",
                        f"{captures[0].name}:{captures[-1].name}", "-o", "csv", FILTER],
                       stdout=sink, check=True, env={**os.environ, "TZ": "UTC"}, timeout=60)


def records_in(out: Path) -> list[str]:
    text = out.read_text() if out.exists() else ""
    return [x for x in text.splitlines() if x[:1].isdigit()]


def make_config(tmp: Path, path: Path, sampling_rate: int = 1) -> Config:
    return from_dict({
        "general": {"own_networks": ["10.0.0.0/8"]},
        "store": {"url": f"sqlite:///{tmp / 'extrusion.db'}", "spool_dir": str(tmp / "spool")},
        "customers": [{"name": "acme", "networks": ["192.0.2.0/24"]}],
        "flows": {"path": str(path), "start_at": "beginning", "allow_customers": ["acme"],
                  "sampling_rate": sampling_rate},
    }, tmp / "extrusion.toml")


def judge(cfg: Config) -> tuple[Engine, FlowFollower]:
    eng = Engine(cfg, Store(cfg.store.url), own_store=True)
    follower = FlowFollower(cfg, eng)
    follower.poll()
    eng.flush()
    return eng, follower


def direct(engine: Engine, key: str) -> dict[str, Any] | None:
    row = engine.store.sender(key)
    f: dict[str, Any] | None = row.findings.get(Kind.DIRECT_TO_MX) if row is not None else None
    return f


def scenario() -> list[Flow]:
    """A bot to twelve MX hosts, a consumer to one host three times, a business
    (allowed) mail server to twelve, and the bot's web traffic (not port 25)."""
    now = time.time()
    flows = [Flow(BOT, mx_address(i), now - 60 + i, now - 50 + i) for i in range(12)]
    flows += [Flow(CONSUMER, "198.51.100.7", now - 40 + i, now - 39 + i) for i in range(3)]
    flows += [Flow(BUSINESS, mx_address(i), now - 30, now - 20) for i in range(12)]
    flows += [Flow(BOT, "203.0.113.80", now - 30, now - 20, packets=40, dport=80)]
    return flows


def test_sampled_netflow_v5_through_nfcapd_and_nfdump(tmp_path: Path) -> None:
    need_tools()
    out = tmp_path / "port25.csv"
    nfcapd = Nfcapd(tmp_path, out)  # rotating, the shipped script run on each file
    try:
        # The exporter announces 1 in 2,000 in its v5 headers: nfcapd scales the packets.
        nfcapd.send(scenario(), sampling=2000)
        deadline = time.monotonic() + 10 * ROTATE_SECONDS
        while len(lines := records_in(out)) < 27:
            assert time.monotonic() < deadline, (lines, nfcapd.log.read_text()[-2000:])
            time.sleep(0.1)
    finally:
        nfcapd.kill()
    assert len(lines) == 27, lines  # port 25 only: the bot's web flow filtered out
    engine, follower = judge(make_config(tmp_path, out))
    try:
        stats = follower.feed.stats
        # Rotations without a port-25 flow add "No matching flows": no record, not bad.
        assert (stats.parsed, stats.bad, stats.findings) == (27, 0, 1)
        f = direct(engine, f"ip:{BOT}")
        assert f is not None
        # Flagged at the tenth destination (min_destinations), once in the hour.
        assert (f["destinations"], f["networks"]) == (10, 10)
        assert f["packets"] == 10 * 2000  # scaled by nfcapd, not again by extrusion
        assert direct(engine, f"ip:{CONSUMER}") is None
        assert direct(engine, "customer:acme") is None
        assert follower.feed.analysis.skipped["allowed to send directly"] == 12
    finally:
        engine.close()


def test_an_unsampled_exporter_takes_the_configs_rate_and_header_lines_are_no_records(
        nfcapd: Nfcapd, tmp_path: Path) -> None:
    nfcapd.send(scenario())  # no sampling announced
    out = tmp_path / "port25.csv"
    dump_unquiet(nfcapd.stop(), out)
    engine, follower = judge(make_config(tmp_path, out, sampling_rate=100))
    try:
        stats = follower.feed.stats
        # The header, "Summary" and its column names are skipped; its figures are no
        # record and are counted as bad (README: run nfdump with -q).
        assert (stats.parsed, stats.bad, stats.findings) == (27, 1, 1)
        f = direct(engine, f"ip:{BOT}")
        assert f is not None and f["packets"] == 10 * 100
    finally:
        engine.close()


@pytest.mark.parametrize(("text", "why"), [
    ("2026-12-06 01:12:56,2026-12-06 01:13:06", "too few fields"),
    ("2026-12-06 01:12:56,yesterday,10.000,10.1.2.3,198.51.0.7,40000,25,TCP,.A,0,0,1,1500",
     "is not a time"),
    ("2026-12-06 01:12:56,2026-12-06 01:13:06,10.000,mx,198.51.0.7,40000,25,TCP,.A,0,0,1,1",
     "is not an IP address"),
    ("2026-12-06 01:12:56,2026-12-06 01:13:06,10.000,10.1.2.3,198.51.0.7,40000,99999,TCP,"
     ".A,0,0,1,1", "dp '99999'"),
    ("2026-12-06 01:12:56,2026-12-06 01:13:06,10.000,10.1.2.3,198.51.0.7,40000,25,TCP,"
     ".A,0,0,-5,1", "ipkt '-5'"),
])
def test_a_bad_nfdump_line_says_why(text: str, why: str) -> None:
    with pytest.raises(BadRecord) as err:
        parse_csv(text)
    assert why in str(err.value)


def test_nfdump_times_are_utc_and_protocols_by_name_or_number() -> None:
    base = "2026-12-06 01:12:56,2026-12-06 01:13:06,10.000,10.1.2.3,2001:DB8::7,40000,25,{}," \
        ".A,0,0,3,4500"
    tcp = parse_csv(base.format("TCP"))
    assert tcp is not None and tcp.time == 1796519586.0 and tcp.tcp and tcp.packets == 3
    assert tcp.dst == "2001:db8::7"
    numeric = parse_csv(base.format("6"))
    assert numeric is not None and numeric.tcp
    udp = parse_csv(base.format("UDP"))
    assert udp is not None and not udp.tcp
