"""The `extrusion` command: daemons, offline tools and operator commands.

`main(args)` returns an exit status so tests can call it directly. Each
sub-command lives in the module of the component it drives; this file only
parses arguments, loads the config and maps failures to exit statuses.
"""

from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

import click

from extrusion import config as configmod
from extrusion.clitools import (
    CONFIG_HELP,
    config_option,
    fail,
    load_config,
    store_command,
)
from extrusion.exits import (
    EX_CLI_USAGE,
    EX_CONFIG,
    EX_FAILURE,
    EX_NOINPUT,
    EX_OK,
    EX_UNAVAILABLE,
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="extrusion", prog_name="extrusion",
                      message="%(prog)s %(version)s")
@click.option("--config", "config_path", default=None, help=CONFIG_HELP)
@click.option("-q", "--quiet", is_flag=True,
              help="Do not name the store on stderr.")
def cli(config_path: str | None, quiet: bool) -> None:
    """extrusion: spot infected senders on an ISP's smarthost and contain them."""


@cli.command("check-config")
@config_option
@click.option("--json", "as_json", is_flag=True, help="Print the effective config as JSON.")
@click.option("--mta", type=click.Choice(["postfix"]), default=None,
              help="Also check the MTA's wiring to extrusion (reads postconf).")
@click.option("--postfix-config", "postfix_dir", default=None,
              help="Postfix config directory for --mta postfix (default: Postfix's own).")
def check_config(
    config_path: str | None, as_json: bool, mta: str | None, postfix_dir: str | None
) -> None:
    """Validate the config and print the effective values (or, with --mta, the wiring)."""
    cfg = load_config(config_path)
    if mta is not None:
        from extrusion import mtacheck

        try:
            findings = mtacheck.check_postfix(cfg, mtacheck.read_postconf(postfix_dir))
        except mtacheck.PostconfError as exc:
            fail(f"extrusion check-config: {exc}", EX_UNAVAILABLE)
        for finding in findings:
            click.echo(json.dumps(dataclasses.asdict(finding)) if as_json else str(finding))
        if mtacheck.has_errors(findings):
            raise SystemExit(EX_FAILURE)
        return
    from extrusion import listencheck

    # What the daemons would refuse at start-up (a port taken, an address not this
    # machine's), found by binding now rather than by a traceback later.
    if refused := listencheck.problems(cfg):
        for line in refused:
            click.echo(f"extrusion check-config: {line}", err=True)
        raise SystemExit(EX_UNAVAILABLE)
    data = configmod.as_dict(cfg)
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=True))
        return
    click.echo(f"# {cfg.path}: OK")
    for line in _flatten(data):
        click.echo(line)


def _flatten(data: Any, prefix: str = "") -> list[str]:
    lines: list[str] = []
    if isinstance(data, dict):
        for key, value in data.items():
            lines += _flatten(value, f"{prefix}.{key}" if prefix else key)
    elif isinstance(data, list) and data and isinstance(data[0], dict):
        for i, item in enumerate(data):
            lines += _flatten(item, f"{prefix}[{i}]")
    else:
        lines.append(f"{prefix} = {json.dumps(data)}")
    return lines


@cli.command()
@config_option
def serve(config_path: str | None) -> None:
    """Run every enabled daemon (milter, policy server, API, log feed) in one process."""
    from extrusion.service import serve as run_all

    raise SystemExit(run_all(load_config(config_path)))


@cli.command()
@config_option
def milter(config_path: str | None) -> None:
    """Run the milter only."""
    from extrusion.milter import daemon

    raise SystemExit(daemon.run(load_config(config_path)))


@cli.command()
@config_option
def policyd(config_path: str | None) -> None:
    """Run the policy daemon (policy server, log feed, operator API) only."""
    from extrusion.service import policyd as run_policyd

    raise SystemExit(run_policyd(load_config(config_path)))


def replay_reporter(cfg: configmod.Config, fmt: str, out: str | None = None) -> Callable[..., None]:
    """The `after` hook `extrusion replay --report FMT` hands to the replay.

    A problem writing the report ends the replay like any other replay error
    (one line, the exit status of the problem). Here, not in either package,
    because the report reads what the replay stored and neither knows the other.
    """
    from extrusion.replay.errors import ReplayError
    from extrusion.report.command import CommandError, report_after_replay

    def after(store: Any) -> None:
        try:
            report_after_replay(store, cfg, fmt, out)
        except CommandError as exc:
            raise ReplayError(f"--report: {exc}", exc.status) from None

    return after


@cli.command()
@config_option
@click.argument("logs", nargs=-1, required=True)
@click.option("--json", "as_json", is_flag=True, help="One JSON object per state change.")
@click.option("--store", "store_url", default=None,
              help="Store URL (default: a throw-away SQLite file).")
@click.option("--report", "report_fmt", type=click.Choice(["text", "json", "html"]),
              default=None, help="Then report the flagged senders in this format.")
@click.option("--report-out", default=None, type=click.Path(dir_okay=False),
              help="File for --report (default: stdout; required with --json).")
def replay(
    config_path: str | None, logs: tuple[str, ...], as_json: bool, store_url: str | None,
    report_fmt: str | None, report_out: str | None,
) -> None:
    """Feed historical MTA logs (plain, .gz, - for stdin) through the engine (what-if tuning)."""
    from extrusion.replay.command import replay as run_replay

    cfg = load_config(config_path)
    after = None
    if report_fmt is not None:
        if as_json and report_out in (None, "-"):
            fail("extrusion replay: --report with --json needs --report-out FILE "
                 "(stdout carries the state changes)", EX_CLI_USAGE)
        after = replay_reporter(cfg, report_fmt, report_out)
    raise SystemExit(run_replay(cfg, list(logs), as_json=as_json, store_url=store_url,
                                after=after))


@cli.command()
@config_option
@click.option("--since", default="24h", show_default=True,
              help="Window: 24h, 90m, 7d, an ISO date, or all.")
@click.option("--sender", default=None, help="Only this sender key, whatever its state.")
@click.option("--state", default=None, help="Only senders now in this state (e.g. held).")
@click.option("--format", "fmt", type=click.Choice(["text", "json", "html"]), default="text")
@click.option("--out", default=None, type=click.Path(dir_okay=False))
def report(
    config_path: str | None,
    since: str,
    sender: str | None,
    state: str | None,
    fmt: str,
    out: str | None,
) -> None:
    """Report flagged senders with their evidence (text, JSON or a self-contained HTML page)."""
    from extrusion.report.command import run

    cfg = load_config(config_path)
    with store_command("report", cfg.store.url, creates=False):
        run(cfg, since=since, sender=sender, state=state, fmt=fmt, out=out)


@cli.command()
@config_option
@click.option("--state", default=None, help="Only senders in this state.")
@click.option("--json", "as_json", is_flag=True)
def senders(config_path: str | None, state: str | None, as_json: bool) -> None:
    """List senders with their state and score."""
    from extrusion.scoring import admin

    cfg = load_config(config_path)
    with store_command("senders", cfg.store.url):
        lines = admin.list_senders(cfg, state, as_json=as_json)
    for line in lines:
        click.echo(line)


@cli.command()
@config_option
@click.argument("sender")
@click.option("--json", "as_json", is_flag=True,
              help="One JSON object with stable keys (see README).")
@click.option("--messages", "-n", "n_messages", default=20, show_default=True,
              type=click.IntRange(0, 1000), help="How many of its latest messages to list.")
def show(config_path: str | None, sender: str, as_json: bool, n_messages: int) -> None:
    """One sender whole: state, score and decay, pins, evidence, limits, messages, audit."""
    from extrusion.keys import SenderKeyError
    from extrusion.report.command import open_store
    from extrusion.report.show import sender_view
    from extrusion.report.show_text import render_show
    from extrusion.report.times import BadTime, report_zone
    from extrusion.scoring.overrides import SenderMap

    cfg = load_config(config_path)
    try:
        key = SenderMap(cfg.customers).operator_key(sender)
    except SenderKeyError as exc:
        fail(f"extrusion show: {exc}", exc.status)
    with store_command("show", cfg.store.url, creates=False):
        store = open_store(cfg)  # read as it is: never created by a look
        try:
            view = sender_view(store, cfg, key, time.time(), n_messages)
        finally:
            store.close()
        if view is None:
            fail(f"extrusion show: no such sender in the store: {key}", EX_NOINPUT)
    if as_json:
        click.echo(json.dumps(view, sort_keys=True, ensure_ascii=False))
        return
    try:
        tz = report_zone(cfg.report.timezone)
    except BadTime as exc:
        fail(f"extrusion show: {exc}", EX_CONFIG)
    click.echo(render_show(view, tz), nl=False)


def _operator_command(verb: str) -> Callable[..., None]:
    @config_option
    @click.argument("sender")
    @click.option("--reason", "-r", required=True, help="Why (kept in the audit trail).")
    @click.option("--who", default=None, help="Operator name (default: $USER).")
    def command(config_path: str | None, sender: str, reason: str, who: str | None) -> None:
        from extrusion.scoring import admin

        cfg = load_config(config_path)
        who = who or os.environ.get("USER") or "operator"
        with store_command(verb, cfg.store.url):
            change = admin.operator_action(cfg, verb, sender, reason, who)
        click.echo(f"{change.sender}: {change.old.value} -> {change.new.value} ({change.reason})")

    command.__doc__ = f"{verb.capitalize()} a sender (recorded in the audit trail)."
    return command


for _verb in ("release", "hold", "allow", "block"):
    cli.command(_verb)(_operator_command(_verb))


@cli.group()
def db() -> None:
    """Store maintenance."""


@db.command("upgrade")
@config_option
def db_upgrade(config_path: str | None) -> None:
    """Create or migrate the store's schema to the latest version."""
    from extrusion.scoring import admin

    cfg = load_config(config_path)
    with store_command("db upgrade", cfg.store.url):
        said = admin.db_upgrade(cfg)
    click.echo(said)


def _add_flows() -> None:
    from extrusion.flows.command import flows

    cli.add_command(flows)


_add_flows()


def main(args: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit status instead of exiting."""
    try:
        cli.main(
            args=list(args) if args is not None else None,
            prog_name="extrusion",
            standalone_mode=False,
        )
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else (
            EX_OK if exc.code is None else EX_FAILURE)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return EX_FAILURE
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    return EX_OK


if __name__ == "__main__":
    sys.exit(main())
