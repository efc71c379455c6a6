"""Start-up checks of the policy daemon's config, and the main.cf lines `serve` prints."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from extrusion import config as configmod
from extrusion import sdnotify
from extrusion.config import ConfigError
from extrusion.policyd.postfixconf import (
    DEFAULT_QUEUE_DIRECTORY,
    main_cf_lines,
    master_cf_lines,
    queue_directory,
)
from extrusion.policyd.service import validate
from extrusion.postfixaddr import milter_address, policy_address
from tests.postfix_harness import PostfixInstance

CONF_POSTFIX = Path(__file__).resolve().parent.parent / "conf" / "postfix"
# The config conf/postfix/main.cf.snippet is written for (its comments say so).
SNIPPET_CONFIG: dict[str, Any] = {"maillog": {"source": "file", "path": "/var/log/postfix.log"}}


def cfg(**sections: dict[str, Any]) -> configmod.Config:
    return configmod.from_dict(sections, "/etc/extrusion/extrusion.toml")


@pytest.mark.parametrize(
    ("sections", "key"),
    [
        ({"policyd": {"default_action": "PERMIT"}}, "policyd.default_action"),
        ({"policyd": {"default_action": "dunno"}}, "policyd.default_action"),
        ({"policyd": {"default_action": "DUNNO\naction=OK"}}, "policyd.default_action"),
        ({"api": {"listen": "tcp:8026"}}, "api.token"),
        ({"api": {"listen": "tcp:8026:interface=0.0.0.0"}}, "api.token"),
        ({"api": {"listen": "tcp:8026:interface=192.0.2.1"}}, "api.token"),
        ({"policyd": {"max_line_bytes": 10}}, "policyd.max_line_bytes"),
    ],
)
def test_refused_at_start_with_the_key_named(sections: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as info:
        validate(cfg(**sections))
    assert info.value.key == key
    assert str(info.value).startswith(f"/etc/extrusion/extrusion.toml: {key}: ")


@pytest.mark.parametrize(
    "sections",
    [
        {},
        {"policyd": {"default_action": "DEFER_IF_PERMIT 4.3.0 try again later"}},
        {"policyd": {"default_action": "OK"}},
        {"api": {"listen": "tcp:8026:interface=0.0.0.0", "token": "t0k3n"}},
        {"api": {"listen": "unix:/run/extrusion/api.sock"}},
        {"api": {"listen": "tcp6:8026:interface=\\:\\:1"}},
        {"api": {"enabled": False, "listen": "tcp:8026"}},
    ],
)
def test_accepted(sections: dict[str, Any]) -> None:
    validate(cfg(**sections))


@pytest.mark.parametrize(
    "endpoint",
    [
        "tcp:8026:interface=127.0.0.1:interface=0.0.0.0",
        "tcp6:8026:interface=\\:\\:1:backlog=5:interface=\\:\\:",
        "unix:/run/extrusion/api.sock:mode=600:mode=666",
    ],
)
def test_a_repeated_endpoint_option_is_one_line_naming_it(endpoint: str) -> None:
    # Twisted keeps the last one, so the first (what a reader sees) would not be what binds.
    for section in ("api", "policyd"):
        with pytest.raises(ConfigError) as info:
            cfg(**{section: {"listen": endpoint}})
        assert info.value.key == f"{section}.listen"
        assert "given twice" in str(info.value)
        assert "\n" not in str(info.value)


def test_escaped_colons_are_not_options() -> None:
    validate(cfg(api={"listen": "tcp6:8026:interface=\\:\\:1:backlog=5"}))


@pytest.mark.parametrize(
    ("endpoint", "postfix"),
    [
        ("tcp:10040:interface=127.0.0.1", "inet:127.0.0.1:10040"),
        ("tcp:10041", "inet:127.0.0.1:10041"),
        ("tcp6:10040:interface=\\:\\:1", "inet:[::1]:10040"),
        ("unix:/var/spool/postfix/private/extrusion", "unix:/var/spool/postfix/private/extrusion"),
    ],
)
def test_policy_address(endpoint: str, postfix: str) -> None:
    assert policy_address(endpoint) == postfix


@pytest.mark.parametrize(
    ("socket", "postfix"),
    [
        ("inet:8890@127.0.0.1", "inet:127.0.0.1:8890"),
        ("inet:8890", "inet:127.0.0.1:8890"),
        ("inet6:8890@::1", "inet:[::1]:8890"),
        ("unix:/run/extrusion/milter.sock", "unix:/run/extrusion/milter.sock"),
    ],
)
def test_milter_address(socket: str, postfix: str) -> None:
    assert milter_address(socket) == postfix


def test_main_cf_lines_fail_open_for_both_components() -> None:
    lines = main_cf_lines(cfg(), milter=True)
    text = "\n".join(lines)
    assert "check_policy_service { inet:127.0.0.1:10040," in text
    assert "default_action=DUNNO" in text
    assert "smtpd_milters = unix:extrusion/milter.sock" in text
    assert "milter_default_action = accept" in text
    assert all(not ln.startswith(" ") for ln in lines)  # each pastes as one main.cf line
    assert "smtpd_milters" not in "\n".join(main_cf_lines(cfg(), milter=False))


MILTER_MAP_LINE = "smtpd_milter_maps = socketmap:inet:127.0.0.1:10041:milters"


@pytest.mark.parametrize(
    ("sections", "asked"),
    [({}, True),
     ({"milter": {"attach_listen": "tcp:10099:interface=127.0.0.1"}}, True),
     ({"milter": {"attach": "always"}}, False),
     ({"milter": {"add_header": True}}, False),  # acts on every message
     ({"milter": {"rate_limits": True}}, False),
     ({"milter": {"reject_bad_helo": True}}, False),
     ({"general": {"mode": "mx"}}, False)],  # every message's spam-filter verdict
)
def test_serve_asks_postfix_to_attach_the_milter_where_it_adds_evidence(
        sections: dict[str, Any], asked: bool) -> None:
    config = cfg(**sections)
    lines = [ln for ln in main_cf_lines(config, milter=True) if "smtpd_milter_maps" in ln]
    assert config.milter_maps is asked
    port = "10099" if "attach_listen" in sections.get("milter", {}) else "10041"
    assert lines == ([MILTER_MAP_LINE.replace("10041", port)] if asked else [])


def test_milter_map_settings_are_checked() -> None:
    for milter in ({"attach": "sometimes"}, {"attach_refresh_seconds": 0},
                   {"attach_max_connections": 0}, {"attach_others": "DISABLE"},
                   {"attach_listen": "tcp:notaport"}):
        with pytest.raises(ConfigError):
            cfg(milter=milter)


def main_cf_settings(lines: list[str]) -> list[tuple[str, str]]:
    """(name, value) per main.cf setting, as Postfix reads them: comments and blank
    lines skipped, a line starting with white space continues the one above."""
    settings: list[tuple[str, str]] = []
    for line in lines:
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[0].isspace():
            name, value = settings.pop()
            settings.append((name, f"{value} {line.strip()}".strip()))
        else:
            name, _, value = line.partition("=")
            settings.append((name.strip(), value.strip()))
    return [(name, " ".join(value.split())) for name, value in settings]


def master_cf_entries(lines: list[str]) -> list[list[str]]:
    return [line.split() for line in lines if line.strip() and not line.startswith("#")]


def test_serve_prints_the_shipped_main_cf_snippet() -> None:
    snippet = (CONF_POSTFIX / "main.cf.snippet").read_text().splitlines()
    assert main_cf_settings(main_cf_lines(cfg(**SNIPPET_CONFIG), milter=True)) == (
        main_cf_settings(snippet))


def test_serve_prints_the_snippet_without_maillog_file_when_extrusion_reads_no_log() -> None:
    snippet = main_cf_settings((CONF_POSTFIX / "main.cf.snippet").read_text().splitlines())
    assert main_cf_settings(main_cf_lines(cfg(), milter=True)) == [
        (name, value) for name, value in snippet if name != "maillog_file"]


def test_serve_names_the_shipped_master_cf_services() -> None:
    snippet = (CONF_POSTFIX / "master.cf.snippet").read_text().splitlines()
    assert master_cf_entries(master_cf_lines(cfg(**SNIPPET_CONFIG))) == (
        master_cf_entries(snippet))
    printed = main_cf_lines(cfg(**SNIPPET_CONFIG), milter=True)
    assert all(f"#   {line}" in printed for line in master_cf_lines(cfg(**SNIPPET_CONFIG)))


@pytest.mark.parametrize(
    ("sections", "printed"),
    [
        ({"milter": {"socket": "inet6:8890"}}, "smtpd_milters = inet:[::1]:8890"),
        ({"milter": {"socket": "local:/run/m.sock"}}, "smtpd_milters = unix:/run/m.sock"),
        # inside the queue directory: relative, what a chrooted smtpd reaches too
        ({"milter": {"socket": "unix:/var/spool/postfix/x/m.sock"}},
         "smtpd_milters = unix:x/m.sock"),
        ({"milter": {"socket": "unix:/var/spool/postfix-b/m.sock"}},
         "smtpd_milters = unix:/var/spool/postfix-b/m.sock"),
        ({"policyd": {"listen": "tcp6:10040:interface=\\:\\:1"}},
         "smtpd_recipient_restrictions = check_policy_service { inet:[::1]:10040,"),
        ({"policyd": {"listen": "unix:/run/p.sock:mode=660"}},
         "smtpd_end_of_data_restrictions = check_policy_service { unix:/run/p.sock,"),
        # valid for the daemon, but no address Postfix could be given: said, not fatal
        ({"policyd": {"listen": "systemd:domain=INET:index=0"}},
         "# policy endpoint 'systemd:domain=INET:index=0': the address of a socket "
         "passed by systemd is not in the string: add check_policy_service"),
    ],
)
def test_serve_prints_addresses_in_postfix_syntax(sections: dict[str, Any], printed: str) -> None:
    assert any(line.startswith(printed) for line in main_cf_lines(cfg(**sections), milter=True))


def test_the_milter_path_is_relative_to_the_queue_directory_postconf_names(
    postfix: PostfixInstance,
) -> None:
    """`serve` asks postconf for queue_directory; the throw-away Postfix has its own."""
    queue = queue_directory(str(postfix.config_dir))
    assert queue == str(postfix.queue_dir)
    config = cfg(milter={"socket": f"unix:{postfix.queue_dir}/extrusion/milter.sock"})
    assert "smtpd_milters = unix:extrusion/milter.sock" in main_cf_lines(
        config, milter=True, queue=queue)


def test_without_postfix_the_queue_directory_is_postfixs_default(tmp_path: Path) -> None:
    assert queue_directory(str(tmp_path)) == DEFAULT_QUEUE_DIRECTORY == "/var/spool/postfix"


def test_sd_notify_sends_one_datagram(tmp_path: Path) -> None:
    import socket

    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        assert sdnotify.notify("READY=1", {"NOTIFY_SOCKET": str(path)})
        assert sock.recv(100) == b"READY=1"
    assert not sdnotify.notify("READY=1", {})
    assert not sdnotify.notify("READY=1", {"NOTIFY_SOCKET": str(tmp_path / "gone")})
