"""What the cluster benchmarks share: three smarthosts' names, the bot, and a daemon's
config for one host of a cluster on one store (benchmarks/cluster.py,
benchmarks/cluster_budget.py; tests/test_store_cluster.py uses the same names)."""

from __future__ import annotations

from pathlib import Path

T0 = 1_700_000_000.0
BOT = "ip:192.0.2.66"
HOSTS = ("mx1.example.net", "mx2.example.net", "mx3.example.net")


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
