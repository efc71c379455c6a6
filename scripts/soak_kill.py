"""The soak's `kill -9` phase: `extrusion serve` killed under load, restarted, and nothing lost.

One `extrusion serve` (policy server, API, milter, the syslog feed on a unix
datagram socket) on a SQLite store of its own. A sender thread sends the log
lines of `--kill-messages` generated messages (customers at 203.0.113.x, so
no other traffic touches their counters) as syslog datagrams, while load
threads send valid policy requests and hostile milter sessions. `--kills`
times, at a random moment, the serve process gets SIGKILL and is started again
at once, as systemd's `Restart=on-failure` would; the time until the policy
server answers again is measured. The sender pauses around each kill until
the journal stops growing: a datagram still in the kernel's socket buffer
when a process dies is lost by any syslog receiver (README), and the kill is
meant for the feed. At the end the store must hold each message once, each
recipient's outcome once, and the counters `messages`, `recipients`, `sent`
and `bounced` of those customers must equal what was sent.

The hostile milter sessions leave out the one frame libmilter itself crashes
on (a macro frame with a name and no value, docs/libmilter-getsymval-report.md):
that is libmilter's bug, and the default socket is 0660 group postfix, so
only the MTA can send it.
"""

from __future__ import annotations

import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from extrusion_dev.crashfeed import (
    SyslogSender,
    Traffic,
    customer_traffic,
    journal_settled,
    lost_and_doubled,
    reached,
    stored,
)

EXTRUSION = Path(sys.executable).parent / "extrusion"
MTA = "soak.example"
START_SECONDS = 60.0
CATCH_UP_SECONDS = 600.0
_CLIENT = re.compile(r": ([0-9A-F]+): client=")
_OUTCOME = re.compile(r": ([0-9A-F]+): to=<([^>]*)>.*status=(sent|bounced)")


@dataclass
class KillResult:
    kills: int = 0
    restart_seconds: list[float] = field(default_factory=list)
    load: Counter[str] = field(default_factory=Counter)
    lost: dict[str, int] = field(default_factory=dict)
    doubled: dict[str, int] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)


def _answers(port: int) -> bool:
    req = (b"request=smtpd_access_policy\nprotocol_state=RCPT\nclient_address=10.9.9.9\n"
           b"sender=a@example.net\nrecipient=b@example.org\n\n")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(req)
            return s.recv(4096).startswith(b"action=")
    except OSError:
        return False


def _wait_answering(proc: subprocess.Popen[bytes], port: int) -> float:
    t0 = time.monotonic()
    while not _answers(port):
        if proc.poll() is not None or time.monotonic() - t0 > START_SECONDS:
            raise SystemExit(f"serve did not come back (exit {proc.poll()})")
        time.sleep(0.05)
    return time.monotonic() - t0


def _load(stop: threading.Event, result: KillResult, once: Callable[[random.Random], str],
          seed: int) -> None:
    rnd = random.Random(seed)
    while not stop.is_set():
        result.load[once(rnd)] += 1


def _check(url: str, sent: Traffic, result: KillResult) -> None:
    result.lost, result.doubled = lost_and_doubled(sent, stored(url, MTA, sent.keys))


def kill_phase(tmp: Path, path: Path, url: str, spool: Path, sock: Path, port: int, *,
               kills: int, messages: int, seconds: float, seed: int,
               load: list[Callable[[random.Random], str]]) -> KillResult:
    """Serve's config at `path` names the store `url`, the spool directory `spool`, the
    syslog socket `unix:<sock>` and the policy port `port`; `load`: callables each
    sending one policy request or milter session."""
    result = KillResult()
    journal = spool / "syslog-journal" / "journal"
    sent = customer_traffic(seed, messages, seconds, net="203.0.113", customers=20)
    rnd = random.Random(seed)

    def start(n: int) -> subprocess.Popen[bytes]:
        with open(tmp / f"serve-{n}.log", "wb") as log:
            return subprocess.Popen([str(EXTRUSION), "serve", "--config", str(path)],
                                    stdout=log, stderr=subprocess.STDOUT, cwd=tmp)

    proc = start(0)
    _wait_answering(proc, port)
    sender = SyslogSender(sock, sent.lines, seconds)
    stop = threading.Event()
    loaders = [threading.Thread(target=_load, args=(stop, result, f, seed + i), daemon=True)
               for i, f in enumerate(load)]
    for t in [sender, *loaders]:
        t.start()
    try:
        for n in range(1, kills + 1):
            time.sleep(rnd.uniform(0.5, 1.5) * seconds / (kills + 1))
            sender.go.clear()
            sender.idle.wait(timeout=30)
            journal_settled(journal)
            proc.send_signal(signal.SIGKILL)
            proc.wait(timeout=30)
            sender.go.set()
            result.kills += 1
            proc = start(n)  # at once, as Restart=on-failure with a short RestartSec
            result.restart_seconds.append(_wait_answering(proc, port))
        if not sender.done.wait(timeout=seconds * 5 + CATCH_UP_SECONDS):
            result.failures.append("the sender did not finish")
        journal_settled(journal)
        deadline = time.monotonic() + CATCH_UP_SECONDS
        while time.monotonic() < deadline and reached(url) != journal.stat().st_size:
            time.sleep(0.5)
        if reached(url) != journal.stat().st_size:
            result.failures.append("the feed did not read the whole journal")
    finally:
        stop.set()
        for t in loaders:
            t.join(timeout=30)
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=60)
        if code != 0:
            result.failures.append(f"serve exited {code} on SIGTERM")
    _check(url, sent, result)
    logs = "".join((tmp / f"serve-{n}.log").read_text(errors="replace")
                   for n in range(kills + 1))
    if (tracebacks := logs.count("Traceback")):
        result.failures.append(f"serve logged {tracebacks} tracebacks (serve-*.log)")
    if any(result.lost.values()) or any(result.doubled.values()):
        result.failures.append(f"lost {result.lost}, doubled {result.doubled}")
    return result

