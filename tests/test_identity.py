"""One name per host for its messages: the milter, the engine and the log feed agree on it."""

from __future__ import annotations

import logging
import socket
from pathlib import Path

import pytest

from extrusion import identity
from extrusion.config import from_dict
from extrusion.maillog.feed import join_settings
from extrusion.maillog.hosts import foreign_hosts
from extrusion.maillog.join import Joiner, JoinSettings
from extrusion.maillog.records import ClientSeen


def test_names_of_gives_each_name_and_its_first_label_lowercased_once() -> None:
    assert identity.names_of("Smarthost.ISP.example.", "smarthost", "") == (
        "smarthost.isp.example", "smarthost")


def test_the_set_hostname_is_the_name_and_no_line_is_renamed() -> None:
    cfg = from_dict({"general": {"hostname": "relay1.isp.example"}})
    assert identity.mta_name(cfg) == "relay1.isp.example"
    assert identity.local_names(cfg) == ()


def test_unset_the_name_is_the_machines_and_postfix_myhostname_counts_as_local(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    identity.postfix_myhostname.cache_clear()
    monkeypatch.setattr(identity, "postfix_myhostname", lambda _dir="": "smtp.isp.example")
    cfg = from_dict({})
    assert identity.mta_name(cfg) == socket.gethostname()
    names = identity.local_names(cfg)
    assert {"smtp", "smtp.isp.example", socket.gethostname().lower()} <= set(names)


def test_postfix_myhostname_reads_the_real_postconf(postfix: object) -> None:
    config_dir = str(postfix.config_dir)  # type: ignore[attr-defined]
    identity.postfix_myhostname.cache_clear()
    assert identity.postfix_myhostname(config_dir) == "smarthost.extrusion.test"


def test_postfix_myhostname_is_empty_for_a_directory_without_postfix(tmp_path: Path) -> None:
    identity.postfix_myhostname.cache_clear()
    assert identity.postfix_myhostname(str(tmp_path)) == ""


def test_foreign_hosts_reads_the_tail_and_skips_a_cut_first_line(tmp_path: Path) -> None:
    log = tmp_path / "maillog"
    log.write_text(
        "cut line without a date\n"
        "Dec  5 10:00:00 smtp postfix/smtpd[1]: connect from x[192.0.2.1]\n"
        "Dec  5 10:00:01 other postfix/qmgr[2]: ABC: removed\n"
        "Dec  5 10:00:02 other postfix/qmgr[2]: ABD: removed\n"
        "Dec  5 10:00:03 third postfix/qmgr[2]: ABE: removed\n"
        "Dec  5 10:00:04 elsewhere sshd[3]: not mail\n")
    assert foreign_hosts(str(log), ("smtp",)) == ["other", "third"]
    assert foreign_hosts(str(tmp_path / "missing"), ("smtp",)) == []


class _Sink:
    def submission(self, event: object) -> None: ...

    def outcome(self, event: object) -> None: ...

    def evidence(self, event: object) -> None: ...


def _joiner(live: bool) -> Joiner:
    return Joiner(_Sink(), lambda client_addr, sasl_user: f"ip:{client_addr}",  # type: ignore[arg-type]
                  JoinSettings(local_mta="box1", local_hosts=("smtp.isp.example", "smtp"),
                               live=live))


def test_the_joiner_files_this_hosts_lines_under_its_one_name_whatever_the_spelling(
    caplog: pytest.LogCaptureFixture,
) -> None:
    j = _joiner(live=True)
    for host in ("smtp", "SMTP", "smtp.isp.example"):
        assert j.names.known.get(host) or j.names.new(host) == "box1"
    with caplog.at_level(logging.WARNING):
        assert j.names.new("relay9") == "relay9"
        j.add(1.0, "relay9", ClientSeen("ABC", "x", "192.0.2.1"))
    warned = [r for r in caplog.records if "relay9" in r.getMessage()]
    assert len(warned) == 1 and "[general] hostname" in warned[0].getMessage()


def test_a_replay_does_not_warn_of_other_hosts(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        assert _joiner(live=False).names.new("relay9") == "relay9"
    assert not caplog.records


def test_join_settings_label_live_lines_with_the_milters_name() -> None:
    cfg = from_dict({"milter": {"enabled": True}})
    settings = join_settings(cfg, live=True)
    assert settings.local_mta == identity.mta_name(cfg) and settings.live
    assert socket.gethostname().partition(".")[0].lower() in settings.local_hosts
