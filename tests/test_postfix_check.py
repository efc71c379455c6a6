"""`extrusion check-config --mta postfix`: the wiring judged on text, then on a real Postfix."""

from __future__ import annotations

import shutil
import socket
import subprocess
from pathlib import Path

import pytest

from extrusion import config as configmod
from extrusion.cli import main
from extrusion.mtacheck import (
    Finding,
    PostconfView,
    check_postfix,
    has_errors,
    parse_list,
    seconds,
)
from extrusion.postfixaddr import milter_address, policy_address, policy_listener
from tests.postfix_harness import SBIN_PATH, PostfixInstance

# The shipped wiring: relative to queue_directory (conf/postfix/main.cf.snippet).
MILTER = "unix:extrusion/milter.sock"
POLICY = "inet:127.0.0.1:10040"
MILTER_MAP = "socketmap:inet:127.0.0.1:10041:milters"
POLICY_ENTRY = (f"check_policy_service {{ {POLICY}, timeout=10s, try_limit=1, "
                "default_action=DUNNO }")

GOOD: dict[str, str] = {
    "mail_version": "3.7.11",
    "queue_directory": "/var/spool/postfix",
    "mail_owner": "postfix",
    "smtpd_milters": MILTER,
    "smtpd_milter_maps": MILTER_MAP,
    "non_smtpd_milters": "",
    "milter_default_action": "accept",
    "milter_connect_timeout": "5s",
    "milter_command_timeout": "10s",
    "milter_connect_macros": "j {daemon_name} {daemon_addr} v _ {client_addr} {client_name}",
    "milter_mail_macros": "i {auth_type} {auth_authen} {auth_author} {mail_addr}",
    "milter_end_of_data_macros": "i",
    "smtpd_relay_restrictions": "permit_mynetworks, permit_sasl_authenticated, "
                                "reject_unauth_destination",
    "smtpd_recipient_restrictions": POLICY_ENTRY,
    "smtpd_end_of_data_restrictions": POLICY_ENTRY,
    "smtpd_policy_service_default_action": "451 4.3.5 Server configuration problem",
    "smtpd_policy_service_timeout": "100s",
    "smtpd_policy_service_try_limit": "2",
    "maillog_file": "/var/log/postfix.log",
}
SERVICES = ("smtp inet n - y - - smtpd", "postlog unix-dgram n - n - 1 postlogd")


def _cfg(**sections: dict[str, object]) -> configmod.Config:
    data: dict[str, dict[str, object]] = {
        "maillog": {"source": "file", "path": "/var/log/postfix.log"}}
    data.update(sections)
    return configmod.from_dict(data)


def _view(changes: dict[str, str] | None = None,
          overrides: dict[str, str] | None = None) -> PostconfView:
    return PostconfView(values={**GOOD, **(changes or {})}, overrides=overrides or {},
                        services=SERVICES)


def _levels(findings: list[Finding]) -> dict[tuple[str, str], str]:
    """(level, key) -> every message at that level for that key, one per line."""
    out: dict[tuple[str, str], str] = {}
    for f in findings:
        out[(f.level, f.key)] = (out.get((f.level, f.key), "") + "\n" + f.message).lstrip()
    return out


def _errors(findings: list[Finding]) -> list[str]:
    return [f"{f.key}: {f.message}" for f in findings if f.level != "ok"]


# --- pieces --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("socket", "postfix"),
    [("inet:8890@127.0.0.1", "inet:127.0.0.1:8890"), ("inet:8890", "inet:127.0.0.1:8890"),
     ("inet6:8890@::1", "inet:[::1]:8890"), ("unix:/run/x.sock", "unix:/run/x.sock"),
     ("local:/run/x.sock", "unix:/run/x.sock")],
)
def test_milter_socket_in_postfix_syntax(socket: str, postfix: str) -> None:
    assert milter_address(socket) == postfix


@pytest.mark.parametrize(
    ("listen", "postfix"),
    [("tcp:10040:interface=127.0.0.1", "inet:127.0.0.1:10040"),
     ("tcp:10040", "inet:127.0.0.1:10040"), ("unix:/run/p.sock", "unix:/run/p.sock")],
)
def test_policy_endpoint_in_postfix_syntax(listen: str, postfix: str) -> None:
    assert policy_address(listen) == postfix


def test_restriction_lists_keep_brace_groups_and_options() -> None:
    entries = parse_list("permit_mynetworks,check_policy_service{inet:h:1, timeout=3s} "
                         "check_policy_service unix:private/p, reject")
    assert [e.name for e in entries] == ["permit_mynetworks", "check_policy_service",
                                         "check_policy_service", "reject"]
    assert entries[1].target == "inet:h:1"
    assert entries[1].options == {"timeout": "3s"}
    assert entries[2].target == "unix:private/p"


def test_loopback_spellings_are_the_same_address() -> None:
    ours = policy_listener("tcp:10040:interface=127.0.0.1")
    assert ours.reached_by("inet:localhost:10040")
    assert not ours.reached_by("inet:127.0.0.1:10041")
    assert not ours.reached_by("inet:192.0.2.1:10040")


@pytest.mark.parametrize(("text", "value"), [("10s", 10.0), ("2m", 120.0), ("100", 100.0),
                                             ("soon", None)])
def test_postfix_time_values(text: str, value: float | None) -> None:
    assert seconds(text) == value


# --- judging a configuration ----------------------------------------------------------------


def test_the_shipped_wiring_has_nothing_to_report() -> None:
    findings = check_postfix(_cfg(), _view())
    assert _errors(findings) == []
    assert ("ok", "smtpd_milter_maps") in _levels(findings)


@pytest.mark.parametrize(
    ("milter", "changes", "says"),
    [
        ({}, {"smtpd_milter_maps": ""}, "add `smtpd_milter_maps = " + MILTER_MAP),
        ({}, {"smtpd_milter_maps": "socketmap:inet:127.0.0.1:10041:virtual"}, "add `"),
        ({}, {"smtpd_milter_maps": f"cidr:/etc/postfix/m, {MILTER_MAP}"},
         "cidr:/etc/postfix/m is asked before"),
        ({}, {"mail_version": "3.1.4"}, "Postfix 3.1.4 has no smtpd_milter_maps"),
        ({"attach": "always"}, {}, f"remove {MILTER_MAP}"),
        ({"add_header": True}, {}, "add_header"),
        ({"attach_listen": "tcp:10099:interface=127.0.0.1"}, {},
         "add `smtpd_milter_maps = socketmap:inet:127.0.0.1:10099:milters`"),
    ],
)
def test_milter_maps_that_do_not_ask_extrusion_are_reported(
        milter: dict[str, object], changes: dict[str, str], says: str) -> None:
    findings = check_postfix(_cfg(milter=milter), _view(changes))
    # A failed lookup attaches the milter: never an error.
    assert ("error", "smtpd_milter_maps") not in _levels(findings)
    assert says in _levels(findings)[("warning", "smtpd_milter_maps")]


def test_no_map_is_right_when_the_milter_is_attached_always() -> None:
    findings = check_postfix(_cfg(milter={"attach": "always"}),
                             _view({"smtpd_milter_maps": ""}))
    assert _errors(findings) == []
    assert {f.key for f in findings} >= {"smtpd_milters", "milter_default_action",
                                         "smtpd_recipient_restrictions",
                                         "smtpd_end_of_data_restrictions", "maillog_file"}


@pytest.mark.parametrize(
    ("changes", "level", "key", "says"),
    [
        ({"smtpd_milters": ""}, "error", "smtpd_milters", "not attached"),
        ({"smtpd_milters": "inet:127.0.0.1:9999"}, "error", "smtpd_milters", "not attached"),
        ({"milter_default_action": "tempfail"}, "error", "milter_default_action", "fail open"),
        ({"milter_command_timeout": "300s"}, "warning", "milter_command_timeout", "stalls"),
        ({"milter_end_of_data_macros": ""}, "error", "milter_end_of_data_macros", "queue id"),
        ({"milter_mail_macros": "i"}, "error", "milter_mail_macros", "{auth_authen}"),
        ({"milter_connect_macros": "j"}, "warning", "milter_connect_macros", "{client_addr}"),
        ({"non_smtpd_milters": MILTER}, "warning", "non_smtpd_milters", "bounces"),
        ({"smtpd_recipient_restrictions": ""}, "error", "smtpd_recipient_restrictions",
         "no check_policy_service"),
        ({"smtpd_recipient_restrictions": f"permit_mynetworks, {POLICY_ENTRY}"},
         "error", "smtpd_recipient_restrictions", "after permit_mynetworks"),
        ({"smtpd_recipient_restrictions": "", "smtpd_sender_restrictions": POLICY_ENTRY},
         "error", "smtpd_recipient_restrictions", "smtpd_sender_restrictions"),
        ({"smtpd_recipient_restrictions": f"check_policy_service {POLICY}"},
         "error", "smtpd_recipient_restrictions", "default_action"),
        ({"smtpd_recipient_restrictions": f"check_policy_service {{ {POLICY}, "
                                          f"default_action=DUNNO, timeout=100s }}"},
         "warning", "smtpd_recipient_restrictions", "timeout 100s"),
        ({"smtpd_recipient_restrictions": f"check_policy_service {{ {POLICY}, "
                                          f"default_action=DUNNO, try_limit=3 }}"},
         "warning", "smtpd_recipient_restrictions", "try_limit=3"),
        ({"smtpd_relay_restrictions": f"{POLICY_ENTRY}, permit_mynetworks, "
                                      f"reject_unauth_destination",
          "smtpd_recipient_restrictions": ""},
         "warning", "smtpd_relay_restrictions", "before reject_unauth_destination"),
        ({"smtpd_relay_restrictions": "permit_mynetworks"},
         "error", "smtpd_relay_restrictions", "no reject_unauth_destination"),
        ({"smtpd_end_of_data_restrictions": ""}, "warning", "smtpd_end_of_data_restrictions",
         "HOLD"),
        ({"maillog_file": "/var/log/other.log"}, "error", "maillog_file", "no delivery outcome"),
        ({"maillog_file": ""}, "warning", "maillog_file", "syslog"),
        ({"mail_version": "3.3.0"}, "error", "maillog_file", "3.4"),
    ],
)
def test_each_wiring_mistake_is_named(
    changes: dict[str, str], level: str, key: str, says: str
) -> None:
    findings = check_postfix(_cfg(), _view(changes))
    messages = _levels(findings)
    assert (level, key) in messages, _errors(findings)
    assert says in messages[(level, key)]
    assert has_errors(findings) == (level == "error")


@pytest.mark.parametrize(
    ("postfix_side", "attached"),
    [("unix:/extrusion/milter.sock", True),  # chrooted smtpd: relative to the queue directory
     ("unix:/var/spool/postfix/extrusion/milter.sock", True),
     ("unix:/elsewhere/milter.sock", False)],
)
def test_a_unix_milter_socket_inside_the_chroot(postfix_side: str, attached: bool) -> None:
    cfg = _cfg(milter={"socket": "unix:/var/spool/postfix/extrusion/milter.sock"})
    view = _view({"smtpd_milters": postfix_side, "queue_directory": "/var/spool/postfix"})
    assert (("ok", "smtpd_milters") in _levels(check_postfix(cfg, view))) == attached


# A policy socket in Postfix's private directory, relative to the queue directory.
UNIX_POLICY_ENTRY = POLICY_ENTRY.replace(POLICY, "unix:private/extrusion")


@pytest.mark.parametrize(
    ("sections", "changes"),
    [
        # tcp6 and inet6: IPv6 hosts in brackets (check-config once wanted inet:\:10040)
        ({"policyd": {"listen": "tcp6:10040:interface=\\:\\:1"},
          "milter": {"socket": "inet6:8890@::1"}},
         {"smtpd_milters": "inet:[::1]:8890",
          "smtpd_recipient_restrictions": POLICY_ENTRY.replace("127.0.0.1", "[::1]"),
          "smtpd_end_of_data_restrictions": POLICY_ENTRY.replace("127.0.0.1", "[::1]")}),
        # every interface: Postfix on the same host connects to loopback
        ({"policyd": {"listen": "tcp:10040"}, "milter": {"socket": "inet6:8890"}},
         {"smtpd_milters": "inet:localhost:8890"}),
        ({"policyd": {"listen": "unix:/var/spool/postfix/private/extrusion:mode=660"}},
         {"smtpd_recipient_restrictions": UNIX_POLICY_ENTRY,
          "smtpd_end_of_data_restrictions": UNIX_POLICY_ENTRY,
          "queue_directory": "/var/spool/postfix"}),
    ],
)
def test_other_listen_forms_found_in_postfix(sections: dict[str, dict[str, object]],
                                            changes: dict[str, str]) -> None:
    findings = check_postfix(_cfg(**sections), _view(changes))
    assert [e for e in _errors(findings) if not e.startswith("[milter] socket: inet")] == []


@pytest.mark.parametrize(
    ("milter", "changes", "level", "says"),
    [
        ({}, {}, "ok", "the socket will have mode 0660 group postfix: only Postfix (group "
                       "postfix) may connect"),
        ({"socket": "inet:8890@127.0.0.1"}, {"smtpd_milters": "inet:127.0.0.1:8890"},
         "warning", "inet:8890@127.0.0.1 is open to every local user"),
        ({"socket_mode": 0o666}, {}, "warning", "mode 0666 lets every local user connect"),
        ({"socket_group": "nogroup"}, {}, "warning",
         "group nogroup may connect, which is not Postfix's group postfix"),
        # a group without write permission reaches nothing: connecting needs write
        ({"socket_group": "nogroup", "socket_mode": 0o600}, {}, "ok", "mode 0600"),
        # Postfix's group is its mail_owner's
        ({"socket_group": "nogroup"}, {"mail_owner": "nobody"}, "ok", "(group nogroup)"),
    ],
)
def test_who_else_may_reach_the_milter_is_reported(
    milter: dict[str, object], changes: dict[str, str], level: str, says: str
) -> None:
    findings = _levels(check_postfix(_cfg(milter=milter), _view(changes)))
    assert says in findings[(level, "[milter] socket")]


def test_a_listen_form_postfix_cannot_be_given_is_an_error() -> None:
    # Valid for the daemon (systemd passes the socket), but no address for Postfix.
    findings = check_postfix(_cfg(policyd={"listen": "systemd:domain=INET:index=0"}), _view())
    assert "cannot tell where Postfix must connect" in _levels(findings)[
        ("error", "smtpd_recipient_restrictions")]


def test_a_tempfail_milter_is_right_when_extrusion_asks_for_it() -> None:
    cfg = _cfg(milter={"on_error": "tempfail"})
    findings = check_postfix(cfg, _view({"milter_default_action": "tempfail"}))
    assert ("ok", "milter_default_action") in _levels(findings)


def test_master_cf_overrides_that_hide_a_listener() -> None:
    overrides = {"submission/inet/smtpd_recipient_restrictions": "permit_sasl_authenticated",
                 "10025/inet/receive_override_options": "no_milters",
                 "smtp/inet/syslog_name": "postfix/smtp"}
    findings = check_postfix(_cfg(), _view(overrides=overrides))
    assert ("warning", "master.cf submission/inet") in _levels(findings)
    assert ("warning", "master.cf 10025/inet") in _levels(findings)
    assert not any("smtp/inet" in f.key for f in findings)


def test_missing_postlog_service_is_an_error() -> None:
    view = PostconfView(values=GOOD, services=SERVICES[:1])
    assert ("error", "master.cf postlog") in _levels(check_postfix(_cfg(), view))


@pytest.mark.parametrize(
    ("maillog", "changes", "level"),
    [({"source": "none"}, {}, "warning"),
     ({"source": "syslog"}, {}, "error"),
     ({"source": "syslog"}, {"maillog_file": ""}, "ok")],
)
def test_log_feed_sources(maillog: dict[str, object], changes: dict[str, str],
                          level: str) -> None:
    findings = check_postfix(_cfg(maillog=maillog), _view(changes))
    feed = [f for f in findings if f.key in ("maillog", "maillog_file")]
    assert [f.level for f in feed] == [level]


def test_disabled_components_are_not_required() -> None:
    cfg = _cfg(milter={"enabled": False}, policyd={"enabled": False})
    findings = check_postfix(cfg, _view({"smtpd_milters": "", "smtpd_recipient_restrictions": ""}))
    assert not has_errors(findings)


# --- against the throw-away Postfix ---------------------------------------------------------


def _instance_config(postfix: PostfixInstance, tmp_path: Path) -> Path:
    path = tmp_path / "extrusion.toml"
    path.write_text(
        f'[milter]\nsocket = "inet:{postfix.milter_port}@127.0.0.1"\n'
        f'attach_listen = "tcp:{postfix.map_port}:interface=127.0.0.1"\n'
        f'[policyd]\nlisten = "tcp:{postfix.policy_port}:interface=127.0.0.1"\n'
        f'[maillog]\nsource = "file"\npath = "{postfix.maillog}"\n')
    return path


@pytest.mark.integration
def test_cli_on_the_instance_wired_right(
    postfix: PostfixInstance, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = _instance_config(postfix, tmp_path)
    status = main(["check-config", "--config", str(config), "--mta", "postfix",
                   "--postfix-config", str(postfix.config_dir)])
    out = capsys.readouterr().out
    assert status == 0, out
    # The harness wires inet on loopback (tests/test_milter_socket_postfix.py wires the
    # shipped unix socket): that, and only that, is worth a warning.
    assert "error" not in out
    assert [ln for ln in out.splitlines() if ln.startswith("warning")] == [
        f"warning [milter] socket: inet:{postfix.milter_port}@127.0.0.1 is open to every "
        f"local user, and any local process that can connect can crash the milter "
        f"(libmilter's macro defect); use a unix socket, e.g. the default "
        f"unix:/var/spool/postfix/extrusion/milter.sock with socket_group = \"postfix\""]
    assert f"ok      smtpd_milters: extrusion's milter {postfix.milter_address}" in out


@pytest.mark.integration
def test_cli_on_the_instance_wired_wrong(
    postfix: PostfixInstance, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "postfix"
    shutil.copytree(postfix.config_dir, broken)
    subprocess.run(
        ["postconf", "-c", str(broken), "-e", "milter_default_action=tempfail",
         f"smtpd_recipient_restrictions=permit_mynetworks, check_policy_service "
         f"{postfix.policy_address}"],
        check=True, env={"PATH": SBIN_PATH})
    config = _instance_config(postfix, tmp_path)
    status = main(["check-config", "--config", str(config), "--mta", "postfix",
                   "--postfix-config", str(broken), "--json"])
    out = capsys.readouterr().out
    assert status == 1
    assert '"key": "milter_default_action"' in out
    assert "comes after permit_mynetworks" in out


def test_cli_without_a_postfix_config_dir(tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "extrusion.toml"
    config.write_text("")
    status = main(["check-config", "--config", str(config), "--mta", "postfix",
                   "--postfix-config", str(tmp_path / "nowhere")])
    assert status == 69
    assert "no main.cf" in capsys.readouterr().err


def test_cli_refuses_an_unknown_mta(tmp_path: Path) -> None:
    config = tmp_path / "extrusion.toml"
    config.write_text("")
    assert main(["check-config", "--config", str(config), "--mta", "exim"]) == 2


def _log_of(path: Path, *hosts: str) -> str:
    lines = ["Dec  5 10:00:00 cut-line postfix/smtpd[1]: partial first line"]
    lines += [f"Dec  5 10:00:0{i} {host} postfix/smtpd[1{i}]: connect from x[192.0.2.{i}]"
              for i, host in enumerate(hosts)]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def test_log_lines_of_a_host_by_another_name_are_an_error_with_the_setting_to_use(
    tmp_path: Path,
) -> None:
    log = _log_of(tmp_path / "postfix.log", "relay7", "relay7")
    findings = check_postfix(_cfg(maillog={"source": "file", "path": log}),
                             _view({"maillog_file": log, "myhostname": "smtp.isp.example"}))
    message = _levels(findings)[("error", "[general] hostname")]
    assert "'relay7'" in message and 'hostname = "relay7"' in message


@pytest.mark.parametrize("host", ["smtp", "smtp.isp.example", "SMTP",
                                  socket.gethostname().partition(".")[0]])
def test_log_lines_under_this_hosts_names_need_no_setting(tmp_path: Path, host: str) -> None:
    log = _log_of(tmp_path / "postfix.log", host)
    findings = check_postfix(_cfg(maillog={"source": "file", "path": log}),
                             _view({"maillog_file": log, "myhostname": "smtp.isp.example"}))
    assert ("error", "[general] hostname") not in _levels(findings)


def test_a_set_hostname_or_no_milter_makes_log_host_names_irrelevant(tmp_path: Path) -> None:
    log = _log_of(tmp_path / "postfix.log", "relay7")
    view = _view({"maillog_file": log, "myhostname": "smtp.isp.example"})
    for cfg in (_cfg(maillog={"source": "file", "path": log}, general={"hostname": "relay7"}),
                _cfg(maillog={"source": "file", "path": log}, milter={"enabled": False})):
        assert ("error", "[general] hostname") not in _levels(check_postfix(cfg, view))
