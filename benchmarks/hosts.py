"""What the cluster benchmarks share: three smarthosts' names, the bot, and a daemon's
config for one host of a cluster on one store (benchmarks/cluster.py,
benchmarks/cluster_budget.py; tests/test_store_cluster.py uses the same names)."""

from __future__ import annotations

import argparse
import tempfile
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from pgtemp import pg_database

from extrusion.config import from_dict
from extrusion.scoring.engine import Engine
from extrusion.scoring.store import Store

T0 = 1_700_000_000.0
BOT = "ip:192.0.2.66"
HOSTS = ("mx1.example.net", "mx2.example.net", "mx3.example.net")
R = TypeVar("R")


def daemon_config(url: str, tmp: Path, host: str, port: int, api_port: int,
                  extra: str = "") -> Path:
    """`extrusion policyd` for one host: its own policy and API port, spool and log
    (each follows its own `[maillog] path`), the cluster's store; no milter. `extra`:
    more TOML tables."""
    conf = tmp / f"{host}.toml"
    conf.write_text(f"""\
[general]
hostname = "{host}"
log_level = "warning"
[store]
url = "{url}"
spool_dir = "{tmp}/spool-{host}"
[policyd]
listen = "tcp:{port}:interface=127.0.0.1"
hold_queued_mail = false
[api]
listen = "tcp:{api_port}:interface=127.0.0.1"
[milter]
enabled = false
[maillog]
source = "file"
path = "{tmp}/{host}.mail.log"
format = "postfix"
start_at = "beginning"
poll_seconds = 0.2
submission_wait_seconds = 5.0
{extra}""")
    return conf


def engines(url: str, tmp: str, clock: Callable[[], float], store: dict[str, Any],
            **tables: dict[str, Any]) -> list[Engine]:
    """One engine per host on one store, as each host's daemon has (its own connections,
    its own `[general] hostname`), on an injected clock; `store`: more `[store]` keys."""
    return [Engine(from_dict({
        "general": {"hostname": h},
        "store": {"url": url, "spool_dir": f"{tmp}/spool-{h}", **store},
        **tables,
    }), Store(url), clock, own_store=True) for h in HOSTS]


class Sync:
    """Every host's flush every `flush` s and refresh every `refresh` s, as the daemons
    do, caught up to the clock before each event."""

    def __init__(self, hosts: list[Engine], flush: float, refresh: float) -> None:
        self.hosts, self.flush, self.refresh = hosts, flush, refresh
        self.next_flush, self.next_refresh = T0 + flush, T0 + refresh

    def until(self, t: float) -> None:
        while t >= min(self.next_flush, self.next_refresh):
            if self.next_flush <= self.next_refresh:
                for e in self.hosts:
                    e.flush()
                self.next_flush += self.flush
            else:
                for e in self.hosts:
                    e.refresh(self.next_refresh)
                self.next_refresh += self.refresh


def timing_args(description: str) -> argparse.Namespace:
    """The options the shared-versus-per-host benchmarks take: event rates, flush and
    refresh intervals, and whether to leave out PostgreSQL."""
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--rates", default="1,5,20")
    ap.add_argument("--refresh", type=float, default=3.0)
    ap.add_argument("--flush", type=float, default=1.0)
    ap.add_argument("--no-pg", action="store_true")
    return ap.parse_args()


def shared_and_per_host(args: argparse.Namespace,
                        run: Callable[[str, str, float, float, float, bool], R],
                        ) -> Iterator[tuple[str, float, R, R]]:
    """For each backend and rate: `run(url, tmp, rate, refresh, flush, shared)` on a fresh
    store with the cluster's limits shared, then kept per host; yields both results."""
    with tempfile.TemporaryDirectory() as tmp:
        for backend in ("sqlite", *(() if args.no_pg else ("postgresql",))):
            for rate in (float(r) for r in args.rates.split(",")):
                results = []
                for shared in (True, False):
                    timing = (rate, args.refresh, args.flush, shared)
                    if backend == "sqlite":
                        url = f"sqlite:///{tmp}/{uuid.uuid4().hex}.db"
                        results.append(run(url, tmp, *timing))
                    else:
                        with pg_database() as url:
                            results.append(run(url, tmp, *timing))
                yield backend, rate, results[0], results[1]
