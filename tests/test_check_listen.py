"""`check-config` refuses what the daemons would refuse when they start listening."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from extrusion.cli import main
from extrusion.exits import EX_CONFIG, EX_OK, EX_UNAVAILABLE

# Everything else binds nothing, so only the listener under test is tried.
QUIET = {"policyd": 'listen = "tcp:0:interface=127.0.0.1"',
         "api": 'listen = "tcp:0:interface=127.0.0.1"',
         "milter": "enabled = false"}
NAME_IT = " (name the address to listen on, e.g. interface=127.0.0.1)"


def _config(write_config: Callable[[str], Path], section: str, line: str) -> Path:
    tables = {**QUIET, section: line if section != "milter" else f"enabled = true\n{line}"}
    return write_config("".join(f"[{name}]\n{body}\n" for name, body in tables.items()))


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = err.splitlines()
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def taken_tcp() -> Iterator[int]:
    with socket.socket() as other:  # another program listening
        other.bind(("127.0.0.1", 0))
        other.listen()
        yield other.getsockname()[1]


@pytest.mark.parametrize(
    ("section", "line", "key", "says"),
    [("policyd", 'listen = "tcp:10040:interface=eth0"', "policyd.listen",
      "interface 'eth0' is not an IP address" + NAME_IT),
     ("api", 'listen = "tcp:8026:interface=localhost"', "api.listen",
      "interface 'localhost' is not an IP address" + NAME_IT),
     ("api", 'listen = "tcp:70000:interface=127.0.0.1"', "api.listen",
      "bad port '70000' in endpoint"),
     ("maillog", 'source = "syslog"\nsyslog_listen = "udp:70000:interface=127.0.0.1"',
      "maillog.syslog_listen", "bad port '70000' in endpoint"),
     ("maillog", 'source = "syslog"\nsyslog_listen = "udp:5514:interface=lo"',
      "maillog.syslog_listen", "interface 'lo' is not an IP address" + NAME_IT)],
)
def test_a_listen_address_twisted_cannot_bind_is_a_config_error(
    write_config: Callable[[str], Path], capsys: pytest.CaptureFixture[str],
    section: str, line: str, key: str, says: str
) -> None:
    path = _config(write_config, section, line)
    assert main(["check-config", "--config", str(path)]) == EX_CONFIG
    assert _one_line(capsys) == f"extrusion: config error: {path}: {key}: {says}"


@pytest.mark.parametrize(
    ("section", "template", "key"),
    [("policyd", 'listen = "tcp:{port}:interface=127.0.0.1"', "policyd.listen"),
     ("api", 'listen = "tcp:{port}:interface=127.0.0.1"', "api.listen"),
     ("milter", 'socket = "inet:{port}@127.0.0.1"', "milter.socket")],
)
def test_a_port_another_program_holds_is_one_line_and_69(
    write_config: Callable[[str], Path], capsys: pytest.CaptureFixture[str], taken_tcp: int,
    section: str, template: str, key: str
) -> None:
    line = template.format(port=taken_tcp)
    path = _config(write_config, section, line)
    assert main(["check-config", "--config", str(path)]) == EX_UNAVAILABLE
    value = line.split(" = ", 1)[1].strip('"')
    assert _one_line(capsys) == (
        f"extrusion check-config: {key} = {value!r}: port {taken_tcp} on 127.0.0.1 is taken "
        f"by another program (a running extrusion holds it too: stop it first to check this)")


def test_a_taken_syslog_port_is_one_line_and_69(
    write_config: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as other:
        other.bind(("127.0.0.1", 0))
        port = other.getsockname()[1]
        path = _config(write_config, "maillog",
                       f'source = "syslog"\nsyslog_listen = "udp:{port}:interface=127.0.0.1"')
        assert main(["check-config", "--config", str(path)]) == EX_UNAVAILABLE
    assert f"port {port} on 127.0.0.1 is taken" in _one_line(capsys)


def test_an_address_this_machine_does_not_have_is_one_line_and_69(
    write_config: Callable[[str], Path], capsys: pytest.CaptureFixture[str]
) -> None:
    path = _config(write_config, "policyd", 'listen = "tcp:10040:interface=192.0.2.77"')
    assert main(["check-config", "--config", str(path)]) == EX_UNAVAILABLE
    assert _one_line(capsys).endswith(": 192.0.2.77 is not an address of this machine")


def test_free_ports_pass(write_config: Callable[[str], Path],
                         capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    path = _config(write_config, "policyd", f'listen = "tcp:{port}:interface=127.0.0.1"')
    assert main(["check-config", "--config", str(path)]) == EX_OK
    assert capsys.readouterr().err == ""
