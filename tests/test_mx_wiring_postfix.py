"""The MX wiring the README gives, on a real Postfix: a spam filter's milter first in
`smtpd_milters`, extrusion's after it, so extrusion reads the filter's verdict headers;
the other order, the control, shows why the order matters."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from extrusion.scoring.store import Store
from tests.conftest import REPO, free_port
from tests.postfix_harness import require_postfix, running_instance
from tests.smtp_remote import RemoteSMTP
from tests.test_milter_integration import MilterProcess, sqlite_url, wait_for, wait_stored

pytestmark = pytest.mark.integration

FILTER = REPO / "tests" / "milter" / "spamfilter.py"
SENDER = "ip:127.0.0.1"


@contextmanager
def spam_filter(port: int) -> Iterator[None]:
    proc = subprocess.Popen([sys.executable, str(FILTER), str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert proc.poll() is None, "the spam filter milter exited"
                assert time.monotonic() < deadline, "the spam filter milter did not listen"
                time.sleep(0.1)
        yield
    finally:
        proc.terminate()
        proc.wait(10)


def findings(url: str) -> dict[str, Any]:
    with Store(url, create=False) as store:
        row = store.sender(SENDER)
        return {} if row is None else dict(row.findings)


@pytest.mark.parametrize("filter_first", [True, False])
def test_extrusion_listed_after_the_filter_reads_its_verdict(
    remote_smtp: RemoteSMTP, tmp_path: Path, filter_first: bool,
) -> None:
    require_postfix()
    filter_port = free_port()
    milter = MilterProcess(tmp_path, sqlite_url(tmp_path))
    milter.config.write_text(milter.config.read_text().replace(
        "[general]\n", '[general]\nmode = "mx"\n', 1))
    ours = f"inet:127.0.0.1:{milter.port}"
    theirs = f"inet:127.0.0.1:{filter_port}"
    order = f"{theirs}, {ours}" if filter_first else f"{ours}, {theirs}"
    with spam_filter(filter_port), running_instance(
            remote_smtp.port, extra_main={"smtpd_milters": order}) as pf:
        milter.start()
        try:
            sent = pf.send("someone@sender.example", ["x@remote.example"])
            assert sent.queue_id is not None, sent
            wait_stored(milter.url, SENDER, {sent.queue_id})
            if filter_first:
                found = wait_for("the filter's verdict", lambda: findings(milter.url).get(
                    "spam_verdicts"))
                assert found["weight"] > 0.0
            else:
                time.sleep(1.0)  # the store is written within refresh_seconds (0.3)
                assert "spam_verdicts" not in findings(milter.url)
        finally:
            assert milter.stop() == 0, milter.log()
