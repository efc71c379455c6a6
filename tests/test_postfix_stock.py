"""`check-config --mta postfix` against Debian's stock main.cf, read by the real `postconf`.

Debian's main.cf leaves smtpd_relay_restrictions to Postfix's default, which depends on
$compatibility_level; only `postconf -x` shows it as Postfix applies it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from extrusion.cli import main
from tests.postfix_harness import SBIN_PATH, in_ci

STOCK_MAIN_CF = (Path("/usr/share/postfix/main.cf.debian"), Path("/etc/postfix/main.cf"))
STOCK_MASTER_CF = (Path("/etc/postfix/master.cf"), Path("/usr/share/postfix/master.cf.dist"))
# What an operator adds to the stock file: extrusion's policy service, milter and log.
WIRING = """
smtpd_recipient_restrictions =
    check_policy_service { inet:127.0.0.1:10040, timeout=10s, try_limit=1, default_action=DUNNO }
smtpd_end_of_data_restrictions =
    check_policy_service { inet:127.0.0.1:10040, timeout=10s, try_limit=1, default_action=DUNNO }
smtpd_milters = unix:extrusion/milter.sock
smtpd_milter_maps = socketmap:inet:127.0.0.1:10041:milters
milter_default_action = accept
milter_connect_macros = j {daemon_name} {daemon_addr} v _ {client_addr} {client_name}
milter_mail_macros = i {auth_type} {auth_authen} {auth_author} {mail_addr}
milter_end_of_data_macros = i
"""


def _stock(paths: tuple[Path, ...]) -> str:
    if shutil.which("postconf", path=SBIN_PATH) is None:
        if in_ci():
            pytest.fail("postconf missing (CI=true: Debian package postfix is required)")
        pytest.skip("postconf missing (Debian package postfix)")
    for path in paths:
        if path.is_file():
            return path.read_text()
    pytest.skip(f"none of {', '.join(map(str, paths))} on this machine")


def _postfix_dir(tmp_path: Path, level: str) -> Path:
    lines = [line for line in _stock(STOCK_MAIN_CF).splitlines()
             if not line.startswith("compatibility_level")]
    directory = tmp_path / f"postfix-{level}"
    directory.mkdir()
    (directory / "main.cf").write_text(
        "\n".join(lines) + f"\ncompatibility_level = {level}\n" + WIRING)
    (directory / "master.cf").write_text(_stock(STOCK_MASTER_CF))
    return directory


def _extrusion_config(tmp_path: Path) -> Path:
    path = tmp_path / "extrusion.toml"
    # Postfix's stock log goes through syslog: the datagram feed needs no maillog_file.
    path.write_text('[maillog]\nsource = "syslog"\n')
    return path


@pytest.mark.parametrize("level", ["2", "3.7"])
def test_stock_debian_relay_default_is_read_expanded(
    tmp_path: Path, level: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status = main(["check-config", "--config", str(_extrusion_config(tmp_path)),
                   "--mta", "postfix", "--postfix-config", str(_postfix_dir(tmp_path, level))])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "error" not in out and "warning" not in out, out
    # The policy line is where it belongs and is said to be so, once.
    assert ("ok      smtpd_recipient_restrictions: check_policy_service "
            "inet:127.0.0.1:10040 is asked for every recipient after "
            "defer_unauth_destination") in out
    assert "put it in" not in out and "move it" not in out


def test_stock_debian_without_relay_guard_names_the_list_to_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # Level 0 (no compatibility_level) has no relay default: the guard is missing, and the
    # advice must not tell to move a line that is already in smtpd_recipient_restrictions.
    directory = _postfix_dir(tmp_path, "0")
    status = main(["check-config", "--config", str(_extrusion_config(tmp_path)),
                   "--mta", "postfix", "--postfix-config", str(directory)])
    out = capsys.readouterr().out
    assert status == 1
    assert "error   smtpd_relay_restrictions: no reject_unauth_destination" in out
    assert "end smtpd_relay_restrictions with reject_unauth_destination" in out
    assert "put it in smtpd_recipient_restrictions" not in out
    assert "move it to smtpd_recipient_restrictions" not in out


def test_no_main_cf_is_one_line_of_our_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _stock(STOCK_MAIN_CF)  # postconf present
    empty = tmp_path / "etc-postfix"
    empty.mkdir()
    monkeypatch.setenv("MAIL_CONFIG", str(empty))  # as on a machine with no main.cf
    status = main(["check-config", "--config", str(_extrusion_config(tmp_path)),
                   "--mta", "postfix"])
    err = capsys.readouterr().err
    assert status == 69
    assert err.splitlines() == [f"extrusion check-config: {empty}: no main.cf in this "
                                f"directory (is Postfix configured? --postfix-config names "
                                f"another directory)"]
    assert "fatal" not in err


@pytest.mark.parametrize(("setting", "followed"),
                         [("", "/var/log/mail.log"),
                          ("maillog_file = /var/log/postfix.log\n", "/var/log/postfix.log")])
def test_the_log_feed_follows_what_postfix_writes_by_default(
    tmp_path: Path, setting: str, followed: str
) -> None:
    from extrusion import config as configmod
    from extrusion.maillog import logpath

    directory = _postfix_dir(tmp_path, "3.7")
    with (directory / "main.cf").open("a") as main_cf:
        main_cf.write(setting)
    cfg = configmod.from_dict({})
    assert (cfg.maillog.source, cfg.maillog.path) == ("file", "auto")  # on by default
    path, why = logpath.resolve(cfg.maillog.path, str(directory))
    assert path == followed
    assert why.startswith("auto: ")
