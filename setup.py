"""extrusion's build: the modules listed in mypyc-modules.txt compiled with mypyc.

`pip install .` (so `make install`) compiles them into C extensions; every other module,
and every module of a pure build, is the same code run by the interpreter. The build is
pure Python:

- for an editable install (`pip install -e .`, the checkout's .venv): its sources must
  stay live, and an extension beside its source would shadow every later edit of it;
- with EXTRUSION_PURE=1 in the environment, e.g. on a host without a C compiler.

`scripts/compiled-tree DIR` compiles a copy of the checkout in place, which is how
`make test` runs the suite on the compiled build as well.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from setuptools import setup

HERE = Path(__file__).resolve().parent
MODULE_LIST = HERE / "mypyc-modules.txt"
# The setup.py commands that build code; metadata steps (egg_info, dist_info, sdist) and
# an editable build do not compile.
BUILDS = {"bdist_wheel", "build", "build_ext", "install"}
# mypy, as mypyc runs it, sees this package and the standard library only. In pip's
# isolated build environment the dependencies (SQLAlchemy, Twisted, ...) are not
# installed, and the copy the tests compile (scripts/compiled-tree) must be built the
# same way: to compiled code their objects are `Any`, reached by the usual dynamic
# calls and never type-checked at run time. The strict checks that would then fail on
# `Any` are left to `make lint`, which runs mypy with everything installed.
MYPY_FLAGS = [
    "--no-site-packages",
    "--ignore-missing-imports",
    "--no-warn-return-any",
    "--no-warn-unused-ignores",
    "--allow-untyped-decorators",
    "--allow-subclassing-any",
]


def compiled_modules(listing: Path = MODULE_LIST) -> list[str]:
    """The source files to compile: the listing's lines, blank lines and # comments out."""
    lines = (line.split("#", 1)[0].strip() for line in listing.read_text("utf-8").splitlines())
    return [line for line in lines if line]


def ext_modules(argv: list[str]) -> list[Any]:
    if os.environ.get("EXTRUSION_PURE") == "1":
        return []
    if "editable_wheel" in argv or not BUILDS & set(argv):
        return []
    from mypyc.build import mypycify

    return mypycify([*MYPY_FLAGS, *compiled_modules()], opt_level="3")


if __name__ == "__main__":  # also how setuptools' build backend runs this file
    setup(ext_modules=ext_modules(sys.argv[1:]))
