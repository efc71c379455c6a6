"""Where a command's store is: named once on stderr, and a SQLite file checked before use.

A relative SQLite path is relative to the current directory, so the same
config run from elsewhere opens (and creates) another, empty store; naming
the absolute path on every store-using command makes that visible at once.
A SQLite file whose directory cannot be made or written is refused here
with the path and the reason, instead of SQLAlchemy's traceback.
"""

from __future__ import annotations

import os
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError


class StoreCannotCreate(Exception):
    """A SQLite store file that cannot be created; one line for the terminal."""


def _sqlite_file(url: str) -> Path | None:
    """The file of a SQLite URL (None: another backend, memory, or a `file:` URI)."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return None
    database = parsed.database or ""
    if (parsed.get_backend_name() != "sqlite" or database in ("", ":memory:")
            or database.startswith("file:")):
        return None
    return Path(database)


def shown(url: str) -> str:
    """The URL as an operator should read it: password hidden, a SQLite path absolute."""
    try:
        parsed = make_url(url)
    except ArgumentError:
        return url
    path = _sqlite_file(url)
    if path is not None:
        parsed = parsed.set(database=str(path.absolute()))
    return parsed.render_as_string(hide_password=True)


def exists(url: str) -> bool:
    """Whether the store is there already (always True for a server database)."""
    path = _sqlite_file(url)
    return path is None or path.exists()


def check_creatable(url: str) -> None:
    """Raise StoreCannotCreate if a SQLite store file is missing and cannot be made.

    Creates the file's missing directories, as opening the store would."""
    path = _sqlite_file(url)
    if path is None or path.exists():
        return
    directory = path.absolute().parent
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StoreCannotCreate(
            f"cannot create the store directory {directory}: {exc.strerror or exc}") from None
    if not os.access(directory, os.W_OK | os.X_OK):
        raise StoreCannotCreate(
            f"cannot create the store {path.absolute()}: directory {directory} is not writable")


def announcement(url: str, *, creates: bool = True) -> str:
    """The line every store-using command writes to stderr (`creates`: the command
    makes a store that is not there yet)."""
    new = " (not there yet: a new, empty store)" if creates and not exists(url) else ""
    return f"extrusion: store {shown(url)}{new}"
