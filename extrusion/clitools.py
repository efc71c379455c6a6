"""What every `extrusion` command shares: the --config option, loading the config, leaving
with one line and an exit status, and the store's failures turned into one line.

Its own module so a package's commands (`extrusion.flows.command`) need not import the
CLI that adds them.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, NoReturn

import click

from extrusion import config as configmod
from extrusion.exits import EX_CANTCREAT, EX_CLI_USAGE, EX_CONFIG, EX_UNAVAILABLE

# Our own complaints about the command line get click's status for its own: EX_CLI_USAGE.

CONFIG_HELP = ("Config file (default: $EXTRUSION_CONFIG, conf/extrusion.toml in a checkout, "
               "/etc/extrusion/extrusion.toml). Accepted before or after the command.")

config_option = click.option("--config", "config_path", default=None, help=CONFIG_HELP)


def _root_params() -> dict[str, Any]:
    ctx = click.get_current_context(silent=True)
    return ctx.find_root().params if ctx is not None else {}


def load_config(path: str | None) -> configmod.Config:
    """Load the config (the command's --config, else the one given before the command)
    or leave with one line and EX_CONFIG."""
    if path is None:
        path = _root_params().get("config_path")
    try:
        return configmod.load(path)
    except configmod.ConfigError as exc:
        fail(f"extrusion: config error: {exc}", EX_CONFIG)


def fail(message: str, status: int) -> NoReturn:
    click.echo(message, err=True)
    raise SystemExit(status)


@contextmanager
def store_command(name: str, url: str, *, creates: bool = True) -> Iterator[None]:
    """Refuse a store that cannot be created (EX_CANTCREAT), turn the store's and the
    operator's failures into one line and an exit status, and once the work is done
    name the store on stderr (unless -q): a relative path that made a new, empty store
    is seen at once. `creates`: the command makes the store if it is not there."""
    from extrusion import storeplace
    from extrusion.report.command import CommandError
    from extrusion.scoring.admin import AdminError
    from extrusion.scoring.store import StoreError

    said = storeplace.announcement(url, creates=creates)  # before it exists
    try:
        if creates:
            storeplace.check_creatable(url)
        yield
    except storeplace.StoreCannotCreate as exc:
        fail(f"extrusion {name}: {exc}", EX_CANTCREAT)
    except (AdminError, CommandError) as exc:
        fail(f"extrusion {name}: {exc}", exc.status or EX_CLI_USAGE)
    except StoreError as exc:
        fail(f"extrusion {name}: {exc}", EX_UNAVAILABLE)
    except OSError as exc:  # the store's file or directory, refused by the system
        where = f" {exc.filename}" if exc.filename else ""
        fail(f"extrusion {name}: cannot open the store{where}: {exc.strerror or exc}",
             EX_CANTCREAT)
    if not _root_params().get("quiet"):
        click.echo(said, err=True)
