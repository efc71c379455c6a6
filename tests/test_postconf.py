"""`postconf -h`: the answer, and no waiting on a postconf that has already failed."""

from __future__ import annotations

from pathlib import Path

import pytest

from extrusion import postconf


def _fake_postconf(folder: Path, script: str) -> None:
    exe = folder / "postconf"
    exe.write_text("#!/bin/sh\n" + script)
    exe.chmod(0o755)


@pytest.fixture
def fake_sbin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setattr(postconf, "SBIN_PATH", str(tmp_path))
    return tmp_path


def test_the_value_postconf_prints_is_the_answer(fake_sbin: Path) -> None:
    _fake_postconf(fake_sbin, 'echo "warning: unused parameter" >&2\necho " $4 of $2 "\n')
    assert postconf.value("myhostname", "/etc/other") == "myhostname of /etc/other"


def test_a_failing_postconf_answers_nothing(fake_sbin: Path) -> None:
    _fake_postconf(fake_sbin, "echo half\nexit 1\n")
    assert postconf.value("myhostname") == ""


def test_a_fatal_error_is_the_answer_at_once_whatever_postconf_does_after(
    fake_sbin: Path,
) -> None:
    # Postfix sleeps a second after a fatal error before it exits; this one would then
    # even print a value and succeed, which a caller waiting for the exit would take.
    _fake_postconf(
        fake_sbin,
        'echo "postconf: fatal: open /etc/postfix/main.cf: No such '
        'file or directory" >&2\nsleep 3\necho late\n',
    )
    assert postconf.value("myhostname") == ""


def test_a_hung_postconf_is_given_up(fake_sbin: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(postconf, "POSTCONF_SECONDS", 0.2)
    _fake_postconf(fake_sbin, "sleep 5\necho late\n")
    assert postconf.value("myhostname") == ""
