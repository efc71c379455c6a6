"""Another revision's code beside this checkout's, for benchmarks that compare the two.

`export()` unpacks a revision's `extrusion` package; `compiled()` copies this
checkout elsewhere and compiles it there as `pip install .` does; `child_result()`
runs a benchmark's child mode with a tree's package first on the path and reads the
JSON it prints last. Nothing here imports `extrusion`, so which tree a process
times is only what its PYTHONPATH says.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def export(rev: str, into: Path) -> Path:
    """The `extrusion` package as it was at `rev`, unpacked under `into` (made here)."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", rev, "extrusion"],
                             capture_output=True, check=True).stdout
    into.mkdir()
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive, check=True)
    return into


def compiled(into: Path) -> Path:
    """This checkout compiled with mypyc in `into` (scripts/compiled-tree: a whole copy,
    rebuilt only when a source changed); `into`, resolved."""
    subprocess.run([sys.executable, str(REPO / "scripts/compiled-tree"), str(into)],
                   check=True, capture_output=True)
    return into.resolve()


def child_result(tree: Path | None, argv: list[str]) -> dict[str, Any]:
    """`python argv` with `tree`'s package first on the path (None: the installed
    checkout's), run outside the checkout; the last line it printed, as JSON."""
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = str(tree)
    proc = subprocess.run([sys.executable, *argv], env=env, cwd=tempfile.gettempdir(),
                          check=True, capture_output=True, text=True)
    result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    return result
