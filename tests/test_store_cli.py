"""`extrusion db upgrade` against both backends, and its failure mode."""

from __future__ import annotations

import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from extrusion.cli import EX_UNAVAILABLE, main
from extrusion.scoring.store import Store


def test_db_upgrade_creates_then_reports_up_to_date(
    store_url: str, write_config: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(f'[store]\nurl = "{store_url}"\n')
    assert main(["db", "upgrade", "--config", str(path)]) == 0
    assert f"to {Store.head_revision()}" in capsys.readouterr().out
    assert main(["db", "upgrade", "--config", str(path)]) == 0
    assert "up to date" in capsys.readouterr().out
    with Store(store_url, create=False) as s:
        assert s.revision() == Store.head_revision()


def test_db_upgrade_with_unreachable_database_says_so_in_one_line(
    write_config: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as sock:  # bound but not listening: connection refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        path = write_config(
            f'[store]\nurl = "postgresql+psycopg://postgres@127.0.0.1:{port}/x"\n'
        )
        assert main(["db", "upgrade", "--config", str(path)]) == EX_UNAVAILABLE
    err = capsys.readouterr().err.strip()
    assert err.startswith("extrusion db upgrade: store unavailable:")
    assert len(err.splitlines()) == 1
