"""A real pmacct `sfacctd` on loopback for the flow tests: its own config in a temp dir
(the shipped conf/pmacct/sfacctd.conf with a free UDP port, an output file under the
test's directory and a one-second purge), fed sFlow v5 datagrams the tests build."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from extrusion.flows.sflowgen import Sample, datagrams

REPO = Path(__file__).resolve().parent.parent
SHIPPED = REPO / "conf" / "pmacct" / "sfacctd.conf"
READY = "waiting for sFlow data"
START_SECONDS = 20.0
# Datagrams sent just after sfacctd says it is waiting can still be lost while its
# plugin starts: it is ready once a probe's record comes out. The probe's source is no
# customer address, so the analysis skips it.
PROBE = Sample("203.0.113.254", "198.51.100.254")
STOP_SECONDS = 3.0


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class Sfacctd:
    def __init__(self, tmp: Path) -> None:
        self.port = free_udp_port()
        self.output = tmp / "port25.json"
        self.log = tmp / "sfacctd.log"
        self.conf = tmp / "sfacctd.conf"
        text = SHIPPED.read_text()
        for old, new in (("sfacctd_ip: 0.0.0.0", "sfacctd_ip: 127.0.0.1"),
                         ("sfacctd_port: 6343", f"sfacctd_port: {self.port}"),
                         ("/var/lib/pmacct/port25.json", str(self.output)),
                         ("print_refresh_time[port25]: 60", "print_refresh_time[port25]: 1")):
            assert old in text, old
            text = text.replace(old, new)
        self.conf.write_text(text)
        self.proc: subprocess.Popen[bytes] | None = None
        self._seq = 1

    def start(self) -> None:
        with open(self.log, "wb") as log:
            # Its own session: the plugin process it forks goes with it at stop().
            self.proc = subprocess.Popen(["sfacctd", "-f", str(self.conf)], stdout=log,
                                         stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + START_SECONDS
        while READY not in self.log.read_text(errors="replace"):
            self._check_alive(deadline)
            time.sleep(0.05)
        while PROBE.src not in self.packets():
            self._check_alive(deadline)
            self.send([PROBE], 1)
            time.sleep(0.3)

    def _check_alive(self, deadline: float) -> None:
        assert self.proc is not None
        if self.proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"sfacctd did not start: {self.log.read_text()[-2000:]}")

    def stop(self) -> None:
        if self.proc is None:
            return
        self.proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(STOP_SECONDS)
        # Whatever is left of the session started above (the plugin, a slow core).
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(5)

    def send(self, samples: Sequence[Sample], rate: int) -> None:
        """The samples as an agent would send them, paced so loopback drops none."""
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for i, d in enumerate(datagrams(samples, rate=rate, seq=self._seq)):
                s.sendto(d, ("127.0.0.1", self.port))
                if i % 50 == 49:
                    time.sleep(0.01)
            self._seq += len(samples)

    def packets(self, path: Path | None = None) -> dict[str, int]:
        """Sampled packets per source address in the output written so far."""
        out: dict[str, int] = {}
        for p in [path] if path is not None else [self.output]:
            if not p.exists():
                continue
            for line in p.read_text().splitlines():
                r = json.loads(line)
                out[r["ip_src"]] = out.get(r["ip_src"], 0) + r["packets"]
        return out

    def wait_for(self, expected: dict[str, int], *paths: Path, timeout: float = 30.0) -> None:
        """Until the output (all `paths`, default the current file) holds these packets."""
        deadline = time.monotonic() + timeout
        while True:
            seen: dict[str, int] = {}
            for p in paths or (self.output,):
                for k, v in self.packets(p).items():
                    seen[k] = seen.get(k, 0) + v
            if all(seen.get(k, 0) >= v for k, v in expected.items()):
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"sfacctd wrote {seen}, expected {expected}")
            time.sleep(0.1)


@pytest.fixture
def sfacctd(tmp_path: Path) -> Iterator[Sfacctd]:
    if shutil.which("sfacctd") is None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail("sfacctd not installed (Debian package pmacct; make test installs it)")
        pytest.skip("sfacctd not installed (Debian package pmacct)")
    d = Sfacctd(tmp_path)
    d.start()
    try:
        yield d
    finally:
        d.stop()
