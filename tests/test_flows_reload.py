"""`[flows]` on SIGHUP: a running `extrusion policyd` takes new thresholds, sampling and
allow lists for the records it reads next; a bad new file changes nothing."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from extrusion.flows.simulate import mx_address

from .test_api import http
from .test_policyd_cli import Daemon, daemons, start  # noqa: F401 (the fixture)

SLOW = "10.1.2.3"  # six destinations: under the first minimum, over the reloaded one
ALLOWED = "10.9.0.5"  # many destinations, in the range the reload allows
LATER = "10.2.0.7"  # after a bad reload: judged by the good config still running


def records(path: Path, src: str, first: int, n: int) -> None:
    """`n` records of `src` to distinct MX hosts, without a sampling_rate of their own
    (the config's [flows] sampling_rate applies)."""
    now = int(time.time())
    with path.open("a") as out:
        for i in range(first, first + n):
            out.write(json.dumps({
                "ip_src": src, "ip_dst": mx_address(i), "port_dst": 25, "ip_proto": "tcp",
                "stamp_inserted": now - now % 3600, "stamp_updated": now, "packets": 1,
            }) + "\n")


def detail(d: Daemon, addr: str) -> dict[str, Any] | None:
    code, _, raw = http(d.api_port, "GET", f"/senders/ip:{addr}", token=None)
    if code != 200:
        return None
    out: dict[str, Any] = json.loads(raw)
    return out


def wait_for(what: str, check: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while (got := check()) is None or got is False:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)
    return got


def direct(d: Daemon, addr: str) -> dict[str, Any] | None:
    got = detail(d, addr)
    if got is None:
        return None
    f: dict[str, Any] | None = got.get("findings", {}).get("direct_to_mx")
    return f


@pytest.mark.integration
def test_sighup_applies_flows_settings_and_a_bad_file_changes_nothing(
        daemons: list[Daemon], tmp_path: Path) -> None:  # noqa: F811
    path = tmp_path / "port25.json"
    path.write_text("")
    flows = {"enabled": True, "path": str(path), "poll_seconds": 0.2, "min_destinations": 10,
             "min_networks": 5, "sampling_rate": 1}
    d = start(daemons, tmp_path, general={"hostname": "mta1.test", "log_level": "info",
                                          "own_networks": ["10.0.0.0/8"]},
              flows=flows)
    d.notifications(until="READY=1")
    d.wait_log("following flow records")

    # Six destinations: under the minimum of ten, nothing is flagged.
    records(path, SLOW, 0, 6)
    time.sleep(1.0)  # five polls
    assert direct(d, SLOW) is None

    # SIGHUP: minimums 5/3, sampling 1 in 1,000, 10.9.0.0/16 allowed to send directly.
    d.write(flows={**flows, "min_destinations": 5, "min_networks": 3, "sampling_rate": 1000,
                   "allow_networks": ["10.9.0.0/16"]})
    d.proc.send_signal(signal.SIGHUP)
    d.wait_log("flows: reloaded (min_destinations 5, min_networks 3, sampling 1:1000)")
    records(path, SLOW, 6, 1)
    records(path, ALLOWED, 0, 12)
    f = wait_for("the slow sender flagged under the new minimums", lambda: direct(d, SLOW))
    # What was counted before the reload stays; the new sampling rate scales the
    # packet of the record read after it.
    assert (f["destinations"], f["packets"]) == (7, 6 + 1000), f
    time.sleep(1.0)  # the allowed sender's records were read in the same poll
    assert direct(d, ALLOWED) is None

    # A bad file on SIGHUP: refused, the running [flows] stays (minimum 5, not 10).
    d.path.write_text('[flows]\nenabled = true\nmin_destinations = 0\n')
    d.proc.send_signal(signal.SIGHUP)
    d.wait_log("reload refused, keeping the running config")
    assert "min_destinations" in d.stderr()
    records(path, LATER, 0, 6)
    wait_for("a sender flagged by the config still running", lambda: direct(d, LATER))
    assert d.stop() == 0
