"""Which build the tests run on: pure Python, or compiled where mypyc-modules.txt says.

`make test` runs the suite twice. First on the checkout itself, whose editable install
is pure Python: there no extension may sit beside a source, or Python would import it
and silently ignore every later edit of that source (`python -m mypyc FILE` run in a
checkout leaves one). Then in a copy compiled by `scripts/compiled-tree`, with
EXTRUSION_COMPILED=1: there exactly the listed modules must be extensions, and they must
be what the tests import, or that run would test the pure build twice.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import os
import runpy
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "extrusion"
SETUP = runpy.run_path(str(REPO / "setup.py"), run_name="setup_under_test")
COMPILED_RUN = os.environ.get("EXTRUSION_COMPILED") == "1"


def shadowing_extensions(package: Path) -> list[str]:
    """Extension modules under `package` that sit beside a source of the same name."""
    found = []
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        for ext in package.rglob(f"*{suffix}"):
            source = ext.with_name(ext.name[: -len(suffix)] + ".py")
            if source.exists():
                found.append(str(ext.with_name(source.name).relative_to(package.parent)))
    return sorted(found)


def listed() -> list[str]:
    return sorted(SETUP["compiled_modules"]())


def test_extensions_sit_beside_exactly_the_listed_sources_in_a_compiled_run() -> None:
    assert shadowing_extensions(PACKAGE) == (listed() if COMPILED_RUN else [])


def test_the_tests_import_the_build_they_are_run_on() -> None:
    for path in listed():
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        assert module.__file__ is not None
        assert module.__file__.endswith(".py") != COMPILED_RUN, module.__file__


def test_every_listed_module_is_a_source_of_the_package() -> None:
    modules = listed()
    assert modules and len(set(modules)) == len(modules)
    for path in modules:
        assert path.startswith("extrusion/") and (REPO / path).is_file(), path


def test_the_list_reads_paths_and_skips_comments_and_blank_lines(tmp_path: Path) -> None:
    listing = tmp_path / "list.txt"
    listing.write_text("# a comment\n\nextrusion/a.py\n  extrusion/b.py  # why\n")
    assert SETUP["compiled_modules"](listing) == ["extrusion/a.py", "extrusion/b.py"]


def test_metadata_steps_editable_builds_and_extrusion_pure_build_nothing(
        monkeypatch: pytest.MonkeyPatch) -> None:
    ext_modules = SETUP["ext_modules"]
    monkeypatch.delenv("EXTRUSION_PURE", raising=False)
    assert ext_modules(["egg_info"]) == []
    assert ext_modules(["dist_info", "--output-dir", "x"]) == []
    assert ext_modules(["editable_wheel", "--dist-info-dir", "x"]) == []
    monkeypatch.setenv("EXTRUSION_PURE", "1")
    assert ext_modules(["bdist_wheel"]) == []


def test_the_check_sees_a_compiled_module_beside_its_source(tmp_path: Path) -> None:
    pkg = tmp_path / "extrusion" / "maillog"
    pkg.mkdir(parents=True)
    (pkg / "feed.py").write_text("")
    (pkg / f"feed{importlib.machinery.EXTENSION_SUFFIXES[0]}").write_bytes(b"")
    (pkg / f"alone{importlib.machinery.EXTENSION_SUFFIXES[0]}").write_bytes(b"")
    assert shadowing_extensions(tmp_path / "extrusion") == ["extrusion/maillog/feed.py"]
