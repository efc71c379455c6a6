"""`extrusion replay` input: gzip, bzip2 and xz by content, non-logs refused with one line,
unreadable lines escaped, the progress line (lines, MB/s, ETA) only on a terminal."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from extrusion import config as configmod
from extrusion.exits import EX_DATAERR, EX_NOINPUT
from extrusion.replay.command import replay
from extrusion.replay.output import Progress
from extrusion_dev.generate import Truth, generate

START = time.time() - 3 * 86400
EXE = str(Path(sys.executable).parent / "extrusion")
PACKERS: dict[str, Callable[[bytes], bytes]] = {
    "gz": gzip.compress, "bz2": bz2.compress, "xz": lzma.compress}


@pytest.fixture(scope="module")
def generated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Truth]:
    path = tmp_path_factory.mktemp("replay-input") / "mail.log"
    with open(path, "w", encoding="utf-8") as f:
        truth = generate(f, seed=11, messages=600, senders=30, bots=1, start=START,
                         duration=4 * 3600.0)
    return path, truth


@pytest.fixture
def cfg(write_config: Callable[[str], Path]) -> configmod.Config:
    return configmod.load(write_config(""))


def _replay(cfg: configmod.Config, *paths: Path | str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = replay(cfg, [str(p) for p in paths], as_json=True, out=out, err=err,
                    parallel=False)
    return status, out.getvalue(), err.getvalue()


def _cli(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([EXE, "-q", "replay", *args], input=stdin, capture_output=True,
                          timeout=120, check=False)


@pytest.mark.parametrize("kind", sorted(PACKERS))
def test_compressed_logs_are_read_by_content_not_name(
    cfg: configmod.Config, generated: tuple[Path, Truth], tmp_path: Path, kind: str
) -> None:
    path, truth = generated
    plain_status, plain, _ = _replay(cfg, path)
    assert plain_status == 0
    assert set(truth.bots) <= {json.loads(row)["sender"] for row in plain.splitlines()}
    packed = tmp_path / "mail.log.1"  # no telling extension: the magic bytes decide
    packed.write_bytes(PACKERS[kind](path.read_bytes()))
    status, out, err = _replay(cfg, packed)
    assert status == 0, err
    assert out == plain


@pytest.mark.parametrize(
    ("content", "why"),
    [(os.urandom(4096) + b"\x00", "binary data"),
     (b"\x7fELF\x02\x01\x01" + bytes(range(256)) * 8, "binary data"),
     (b"hello\nthis is a letter, not a log\n\nregards\n", "none of its first 3 lines")],
)
def test_a_file_that_is_no_log_is_refused_with_one_line(
    tmp_path: Path, write_config: Callable[[str], Path], content: bytes, why: str
) -> None:
    path = tmp_path / "mail.log"
    path.write_bytes(content)
    proc = _cli("--config", str(write_config("")), str(path))
    assert proc.returncode == EX_DATAERR
    assert proc.stdout == b"" and b"Traceback" not in proc.stderr
    (line,) = proc.stderr.decode().splitlines()
    assert line.startswith(f"extrusion replay: {path}: not a log: ") and why in line


def test_a_compressed_file_of_garbage_is_refused_too(
    tmp_path: Path, write_config: Callable[[str], Path]
) -> None:
    path = tmp_path / "mail.log.xz"
    path.write_bytes(lzma.compress(os.urandom(8192)))
    proc = _cli("--config", str(write_config("")), str(path))
    assert proc.returncode == EX_DATAERR
    assert proc.stderr.decode().strip() == f"extrusion replay: {path}: not a log: binary data"


def test_garbage_on_stdin_is_refused_after_reading(
    write_config: Callable[[str], Path]
) -> None:
    proc = _cli("--config", str(write_config("")), "-", stdin=b"one\ntwo\nthree\n")
    assert proc.returncode == EX_DATAERR
    last = proc.stderr.decode().splitlines()[-1]
    assert last == "extrusion replay: not a log: none of its 3 lines reads as a syslog line"


def test_a_directory_is_named_as_one(tmp_path: Path, write_config: Callable[[str], Path]
                                     ) -> None:
    proc = _cli("--config", str(write_config("")), str(tmp_path))
    assert proc.returncode == EX_NOINPUT
    (line,) = proc.stderr.decode().splitlines()
    assert line == f"extrusion replay: {tmp_path}: is a directory (name the log files in it)"


def test_unreadable_lines_are_shown_escaped(
    tmp_path: Path, write_config: Callable[[str], Path]
) -> None:
    path = tmp_path / "odd.log"
    path.write_bytes(b"Nov 30 04:00:02 smtp1 postfix/qmgr[1]: 3F2A1B0C9D: removed\n"
                     b"\x1b[2J\x1b]0;owned\x07 junk\r\n")
    proc = _cli("--config", str(write_config("")), str(path))
    assert proc.returncode == 0, proc.stderr
    assert b"\x1b" not in proc.stdout and b"\x07" not in proc.stdout
    assert b"\\x1b[2J\\x1b]0;owned\\x07 junk" in proc.stdout


def test_progress_is_quiet_when_piped(
    cfg: configmod.Config, generated: tuple[Path, Truth]
) -> None:
    out, err = io.StringIO(), io.StringIO()  # not terminals
    assert replay(cfg, [str(generated[0])], out=out, err=err) == 0
    assert err.getvalue() == ""


def test_progress_line_rate_share_and_eta() -> None:
    stream = io.StringIO()
    p = Progress(stream, True, total_bytes=40_000_000)
    p.done_bytes = 10_000_000
    text = p.line(123_456, 2, now=p.start + 5.0)  # 2 MB/s, 30 MB to go: 15 s
    assert text == "replay: 123,456 lines  2.0 MB/s   25%  ETA 0:15  2 senders flagged "
    unknown = Progress(stream, True)  # stdin: no size, no share, no ETA
    unknown.done_bytes = 1_000_000
    assert unknown.line(10, 1, now=unknown.start + 1.0) == (
        "replay: 10 lines  1.0 MB/s  1 sender flagged ")
