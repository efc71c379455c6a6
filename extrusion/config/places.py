"""Where the config file is looked for, and where the store goes when the file does not say."""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

from extrusion.config.service import StoreSection

ENV_VAR = "EXTRUSION_CONFIG"
SYSTEM_PATH = Path("/etc/extrusion/extrusion.toml")
CHECKOUT_PATH = Path(__file__).resolve().parents[2] / "conf" / "extrusion.toml"
# Where an installed extrusion keeps its SQLite store and spool by default.
DATA_DIR = Path("/var/lib/extrusion")
# sqlite:///relative/path (three slashes, no fourth: not absolute; not :memory: or file:).
_SQLITE_RELATIVE = re.compile(r"(sqlite(?:\+\w+)?:///)((?![/:]|file:)[^?]+)")


def default_path() -> Path:
    """`$EXTRUSION_CONFIG`, else the checkout's `conf/extrusion.toml`, else /etc."""
    if env := os.environ.get(ENV_VAR):
        return Path(env)
    if CHECKOUT_PATH.is_file():
        return CHECKOUT_PATH
    return SYSTEM_PATH



def in_checkout(path: str) -> bool:
    """Whether `path` is the config file of the checkout extrusion runs from."""
    return Path(path).is_file() and Path(path).resolve().parent == CHECKOUT_PATH.parent


def place_store(store: StoreSection, path: str) -> StoreSection:
    """The store's SQLite file and spool directory as absolute paths, so every command
    opens the same store from any current directory.

    "" is the default place: `<checkout>/var` for the checkout's own config (what
    `make run` uses, no root needed), else DATA_DIR. A relative path is relative to the
    checkout for the checkout's config, else to the config file's directory; a config
    that is no file (tests, `from_dict`) leaves relative paths as they are."""
    checkout = in_checkout(path)
    data_dir = CHECKOUT_PATH.parent.parent / "var" if checkout else DATA_DIR
    base: Path | None = (CHECKOUT_PATH.parent.parent if checkout
                         else Path(path).resolve().parent if Path(path).is_file() else None)
    url, spool = store.url, store.spool_dir
    if not url:
        url = f"sqlite:///{data_dir / 'extrusion.db'}"
    elif base is not None and (m := _SQLITE_RELATIVE.fullmatch(url)):
        url = f"{m.group(1)}{base / m.group(2)}"
    if not spool:
        spool = str(data_dir / "spool")
    elif base is not None and not os.path.isabs(spool):
        spool = str(base / spool)
    return dataclasses.replace(store, url=url, spool_dir=spool)

