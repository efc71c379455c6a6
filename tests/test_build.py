"""The package is pure Python: no compiled module hides a source file.

`python -m mypyc extrusion/maillog/feed.py` run in a checkout leaves
`feed.cpython-*.so` beside `feed.py`, and Python imports the extension first: every
later edit of the source would be silently ignored, by the tests too. mypyc's gain
was measured and is not worth that (benchmarks/README.md, "Compiled with mypyc");
`benchmarks/compiled.py` compiles in a copy of the checkout instead.
"""

from __future__ import annotations

import importlib.machinery
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "extrusion"


def shadowing_extensions(package: Path) -> list[str]:
    """Extension modules under `package` that sit beside a source of the same name."""
    found = []
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        for ext in package.rglob(f"*{suffix}"):
            source = ext.with_name(ext.name[: -len(suffix)] + ".py")
            if source.exists():
                found.append(str(ext.relative_to(package.parent)))
    return sorted(found)


def test_no_extension_module_shadows_a_source_file() -> None:
    assert shadowing_extensions(PACKAGE) == []


def test_the_check_sees_a_compiled_module_beside_its_source(tmp_path: Path) -> None:
    pkg = tmp_path / "extrusion" / "maillog"
    pkg.mkdir(parents=True)
    (pkg / "feed.py").write_text("")
    (pkg / f"feed{importlib.machinery.EXTENSION_SUFFIXES[0]}").write_bytes(b"")
    (pkg / f"alone{importlib.machinery.EXTENSION_SUFFIXES[0]}").write_bytes(b"")
    assert shadowing_extensions(tmp_path / "extrusion") == [
        f"extrusion/maillog/feed{importlib.machinery.EXTENSION_SUFFIXES[0]}"]
