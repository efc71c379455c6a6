"""The `extrusion flows` commands: follow pmacct's output, replay it, export for the border."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from typing import Any

import click

from extrusion.exits import EX_FAILURE, EX_NOINPUT, EX_OK


def _cli() -> Any:
    from extrusion import clitools

    return clitools


@click.group()
def flows() -> None:
    """Bots that bypass the smarthost: port-25 flow records from sFlow (pmacct)."""


@flows.command("follow")
@click.option("--config", "config_path", default=None, help="Config file (see extrusion -h).")
@click.option("--once", is_flag=True, help="Read what is there now, then exit.")
def follow(config_path: str | None, once: bool) -> None:
    """Follow [flows] path live (as `extrusion serve` does when [flows] is enabled)."""
    from extrusion.flows.follow import FlowFollower
    from extrusion.scoring.engine import open_engine

    c = _cli()
    cfg = c.load_config(config_path)
    with c.store_command("flows follow", cfg.store.url):
        engine = open_engine(cfg)
        try:
            follower = FlowFollower(cfg, engine)
            stop = threading.Event()
            if not once:
                for sig in (signal.SIGTERM, signal.SIGINT):
                    signal.signal(sig, lambda *_: stop.set())
            while True:
                follower.poll()
                if once or stop.wait(cfg.flows.poll_seconds):
                    break
            follower.close()
            s = follower.feed.stats
            click.echo(f"flows: {s.lines} lines, {s.parsed} records, {s.bad} bad, "
                       f"{s.findings} findings", err=True)
        finally:
            engine.close()


@flows.command("replay")
@click.option("--config", "config_path", default=None, help="Config file (see extrusion -h).")
@click.argument("files", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per state change.")
@click.option("--store", "store_url", default=None,
              help="Store URL (default: a throw-away SQLite file).")
def replay(config_path: str | None, files: tuple[str, ...], as_json: bool,
           store_url: str | None) -> None:
    """Run recorded pmacct records (plain, gzip, bzip2, xz; - for stdin) through the engine."""
    from extrusion.flows.replay import replay as run
    from extrusion.replay.output import json_line

    c = _cli()
    cfg = c.load_config(config_path)

    def show(change: Any) -> None:
        if as_json:
            click.echo(json_line(change))
        else:
            click.echo(f"{time.strftime('%Y-%m-%d %H:%M:%S', time.gmtime(change.time))} "
                       f"{change.sender} {change.old.value} -> {change.new.value} "
                       f"({change.reason})")

    result = run(cfg, list(files), store_url=store_url, on_change=show)
    s = result.stats
    skipped = ", ".join(f"{n} {why}" for why, n in sorted(result.skipped.items()))
    click.echo(f"flows replay: {s.lines} lines, {s.parsed} records, {s.bad} bad, "
               f"{s.findings} findings; skipped: {skipped or 'none'}", err=True)
    for error in result.errors:
        click.echo(f"extrusion flows replay: {error}", err=True)
    if result.errors:
        raise SystemExit(EX_NOINPUT if s.lines == 0 else EX_FAILURE)
    raise SystemExit(EX_OK)


@flows.command("export")
@click.option("--config", "config_path", default=None, help="Config file (see extrusion -h).")
@click.option("--format", "fmt", type=click.Choice(["nft", "list"]), default=None,
              help="Default: [flows] export_format.")
@click.option("--out", default=None, type=click.Path(dir_okay=False),
              help="Write here (replaced only when it changes) instead of stdout.")
@click.option("--json", "as_json", is_flag=True, help="The addresses as a JSON list.")
def export(config_path: str | None, fmt: str | None, out: str | None, as_json: bool) -> None:
    """Addresses held or blocked for sending mail directly, for the border's firewall."""
    from extrusion.flows import export as ex
    from extrusion.report.command import open_store

    c = _cli()
    cfg = c.load_config(config_path)
    with c.store_command("flows export", cfg.store.url, creates=False):
        store = open_store(cfg)
        try:
            addrs = ex.addresses(store, cfg)
        finally:
            store.close()
    text = json.dumps(addrs) + "\n" if as_json else ex.render(
        addrs, cfg, fmt or cfg.flows.export_format)
    if out is None:
        sys.stdout.write(text)
        return
    changed = ex.write_if_changed(out, text)
    click.echo(f"{out}: {len(addrs)} addresses{'' if changed else ', unchanged'}", err=True)
