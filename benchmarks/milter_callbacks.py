"""Python CPU per message in the milter's callbacks, without sockets or libmilter.

Plays one SMTP session per message through the callbacks the way pymilter's
C layer calls them (negotiation, connect, HELO, MAIL, 2 RCPT, DATA, 6
headers, a 2 kB body, end of message, close) against a stand-in for the
libmilter context, once with a no-op pymilter milter (the callbacks extrusion
negotiates, each answering CONTINUE) and once with extrusion's milter on the
real engine (SQLite store in a temporary directory, limits far above the
load). Counts process CPU time, so it is repeatable on a busy machine; the
engine's batched flush to the store runs between rounds and is counted apart.
A third run goes through `EngineSlot`, as the milter reaches the engine
under `extrusion serve`, to show what sharing the policy daemon's engine
costs per message.
What it leaves out — libmilter's threads, the protocol, the GIL handed
between session threads — is what `benchmarks/milter.py` and
`benchmarks/mta.py` measure.

    .venv/bin/python benchmarks/milter_callbacks.py [--messages 3000] [--rounds 5]
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
# This directory holds benchmarks/milter.py, which would hide pymilter's C
# module `milter` from `import Milter`.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(REPO))

import Milter  # noqa: E402

from extrusion import config as configmod  # noqa: E402
from extrusion.milter.adapter import ExtrusionMilter, Runtime, Settings  # noqa: E402
from extrusion.milter.guard import EngineGuard  # noqa: E402
from extrusion.scoring.api import EngineSlot  # noqa: E402
from extrusion.scoring.engine import open_engine  # noqa: E402

HUGE_LIMIT = 100_000_000
OPTIONS = (Milter.CURR_ACTS, 0x1FFFFF, 0, 0)  # what an MTA offers: every step, no reply wanted
HEADERS = [
    ("Received", b"from pc (pc.example.net [192.0.2.1]) by mta1.example"),
    ("From", b"Alice <alice@example.net>"),
    ("To", b"bob@example.org"),
    ("Subject", b"quarterly figures"),
    ("Message-ID", b"<20261130.1234@example.net>"),
    ("Date", b"Mon, 30 Nov 2026 10:00:00 +0000"),
]
BODY = b"Lorem ipsum dolor sit amet, consectetur adipiscing elit.\r\n" * 35  # ~2 kB


class Context:
    """The part of pymilter's milterContext the callbacks use."""

    def __init__(self, macros: dict[str, str]) -> None:
        self.macros = macros
        self.priv: Any = None

    def setpriv(self, obj: Any) -> None:
        self.priv = obj

    def getpriv(self) -> Any:
        return self.priv

    def getsymval(self, name: str) -> str | None:
        return self.macros.get(name)

    def setsymlist(self, stage: int, macros: str) -> None:
        pass

    def setreply(self, *reply: str) -> None:
        pass


class Noop(Milter.Base):  # type: ignore[misc]
    """The callbacks extrusion negotiates, each answering CONTINUE."""

    @Milter.noreply  # type: ignore[untyped-decorator]
    def connect(self, hostname: str, family: int, hostaddr: Any) -> int:
        return int(Milter.CONTINUE)

    @Milter.noreply  # type: ignore[untyped-decorator]
    def hello(self, name: str) -> int:
        return int(Milter.CONTINUE)

    def envfrom(self, f: str, *params: str) -> int:
        return int(Milter.CONTINUE)

    def envrcpt(self, to: str, *params: str) -> int:
        return int(Milter.CONTINUE)

    def data(self) -> int:
        return int(Milter.CONTINUE)

    @Milter.noreply  # type: ignore[untyped-decorator]
    def header(self, name: str, value: str) -> int:
        return int(Milter.CONTINUE)

    @Milter.noreply  # type: ignore[untyped-decorator]
    def body(self, chunk: bytes) -> int:
        return int(Milter.CONTINUE)

    def eom(self) -> int:
        return int(Milter.CONTINUE)


def session(n: int) -> None:
    """One SMTP session with one message, called as pymilter's runmilter calls."""
    ctx = Context({"i": f"Q{n:08X}", **({"{auth_authen}": f"user{n % 50}"} if n % 2 else {})})
    Milter.negotiate_callback(ctx, list(OPTIONS))
    m = ctx.getpriv()
    host = f"host{n % 200}.example.net"
    Milter.connect_callback(ctx, host, socket.AF_INET, (f"198.51.100.{n % 200 + 1}", 1234))
    m.hello(host)
    m.envfrom_bytes(f"<user{n % 50}@example.net>".encode())
    for r in range(2):
        m.envrcpt_bytes(f"<rcpt{r}.{n}@example.org>".encode())
    m.data()
    for name, value in HEADERS:
        m.header_bytes(name, value)
    m.body(BODY)
    m.eom()
    Milter.close_callback(ctx)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--messages", type=int, default=3000, help="per milter and round")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    huge = {"messages_per_hour": HUGE_LIMIT, "recipients_per_hour": HUGE_LIMIT,
            "messages_per_day": 0, "recipients_per_day": 0}
    with tempfile.TemporaryDirectory(prefix="extrusion-bench-") as tmp:
        config = configmod.from_dict({
            "general": {"hostname": "bench.example"},
            "store": {"url": f"sqlite:///{Path(tmp) / 'bench.db'}",
                      "spool_dir": str(Path(tmp) / "spool")},
            "limits": {"default": huge, "consumer": huge, "business": huge, "throttled": huge}})
        engine = open_engine(config)
        guard = EngineGuard(engine, timeout=config.milter.engine_timeout)
        runtime = Runtime(guard, Settings.from_config(config))
        # As `extrusion serve` wires it: the engine the policy daemon owns, reached
        # through the slot (one more call per engine call, nothing else).
        shared = EngineGuard(EngineSlot(lambda: engine), timeout=config.milter.engine_timeout,
                             owns_engine=False)
        served = Runtime(shared, Settings.from_config(config))
        factories = {"no-op milter": Noop, "extrusion milter": lambda: ExtrusionMilter(runtime),
                     "extrusion in serve": lambda: ExtrusionMilter(served)}
        per_message: dict[str, list[float]] = {name: [] for name in factories}
        flush: list[float] = []
        try:
            for rnd in range(args.rounds + 1):  # round 0 warms up caches and the store
                for i, (name, factory) in enumerate(factories.items()):
                    Milter.factory = factory
                    # Messages (queue ids, clients) of their own for each milter and round.
                    first = (rnd * len(factories) + i) * args.messages
                    t0 = time.process_time()
                    for n in range(first, first + args.messages):
                        session(n)
                    used = time.process_time() - t0
                    engine.flush()
                    if rnd:
                        per_message[name].append(used / args.messages * 1e6)
                        if name != "no-op milter":
                            flush.append((time.process_time() - t0 - used)
                                         / args.messages * 1e6)
        finally:
            shared.close()
            guard.close()
    print(f"{args.messages} messages per milter and round, {args.rounds} rounds, "
          f"Python {sys.version.split()[0]}; CPU time in the callbacks per message:")
    for name, values in per_message.items():
        print(f"  {name:18s} median {statistics.median(values):7.1f} us   "
              f"(rounds: {', '.join(f'{v:.1f}' for v in values)})")
    noop = statistics.median(per_message["no-op milter"])
    ext = statistics.median(per_message["extrusion milter"])
    in_serve = statistics.median(per_message["extrusion in serve"])
    print(f"  serve's shared engine (EngineSlot) against an engine of the milter's own: "
          f"{in_serve - ext:+.1f} us per message (ratio {in_serve / ext:.3f})")
    print(f"  extrusion's own share: {ext - noop:.1f} us per message in the callbacks, and "
          f"{statistics.median(flush):.1f} us per message in the engine's flush to the store "
          f"(rounds: {', '.join(f'{v:.1f}' for v in flush)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
