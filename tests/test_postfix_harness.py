"""The test MTA itself: customer -> throw-away Postfix -> remote side, outcomes in the log.

If these fail, every integration test built on the `postfix` fixture would
fail for the wrong reason; here the harness proves what it relies on.
"""

from __future__ import annotations

import signal
import smtplib
import socket
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from tests import conftest, postfix_harness
from tests.postfix_harness import (
    SNIPPET_MILTER,
    PostfixInstance,
    make_instance,
    merge_master_cf,
    render_snippet,
    require_postfix,
    run_with_tty,
    running_instance,
    set_main_cf,
)
from tests.smtp_remote import (
    SPAM_MARKER,
    VIRUS_MARKER,
    RemoteSMTP,
    data_reply,
    rcpt_reply,
)

pytestmark = pytest.mark.integration


def _uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


# --- the remote side's rules ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("rcpt", "code"),
    [
        ("alice@remote.example", "250 2.0.0"),
        ("unknown.user@remote.example", "550 5.1.1"),
        ("dead-1999@remote.example", "550 5.1.1"),
        ("bob@nxdomain-abc.example", "554 5.4.4"),
        ("bob@host.invalid", "554 5.4.4"),
        ("greylisted@remote.example", "450 4.7.1"),
    ],
)
def test_remote_rcpt_replies(rcpt: str, code: str) -> None:
    assert rcpt_reply(rcpt).startswith(code)


def test_remote_greylists_then_refuses_a_dead_address() -> None:
    server = RemoteSMTP(greylist_seconds=0.2)
    try:
        rcpt = "greydead-1@remote.example"
        assert server.greylisted(rcpt)
        assert rcpt_reply(rcpt, greylisted=True).startswith("450 4.7.1")
        time.sleep(0.25)
        assert not server.greylisted(rcpt)
        assert rcpt_reply(rcpt, greylisted=False).startswith("550 5.1.1")
    finally:
        server.close()


@pytest.mark.parametrize(
    ("rcpts", "data", "code"),
    [
        (["a@remote.example"], b"hello", "250"),
        (["a@remote.example"], f"buy {SPAM_MARKER}".encode(), "550 5.7.1"),
        (["a@remote.example"], f"open {VIRUS_MARKER}".encode(), "554 5.7.0"),
        (["a@spamfilter.example"], b"hello", "550 5.7.1"),
        (["a@virusfilter.example"], b"hello", "554 5.7.0"),
    ],
)
def test_remote_data_replies(rcpts: list[str], data: bytes, code: str) -> None:
    assert data_reply(rcpts, data).startswith(code)


def test_remote_speaks_smtp_and_keeps_what_it_accepts(remote_smtp: RemoteSMTP) -> None:
    rcpt = f"{_uniq('direct')}@remote.example"
    with smtplib.SMTP("127.0.0.1", remote_smtp.port, timeout=10) as s:
        refused = s.sendmail("a@customer.example", [rcpt, "unknown1@remote.example"],
                             b"Subject: x\r\n\r\nbody\r\n")
        assert refused == {"unknown1@remote.example": (
            550, b"5.1.1 <unknown1@remote.example>: Recipient address rejected: User unknown")}
        assert s.docmd("BOGUS")[0] == 502
    (msg,) = remote_smtp.received_by(rcpt)
    assert msg.mail_from == "a@customer.example"
    assert b"body" in msg.data


def test_remote_refuses_a_line_too_long(remote_smtp: RemoteSMTP) -> None:
    with socket.create_connection(("127.0.0.1", remote_smtp.port), timeout=5) as sock:
        f = sock.makefile("rb")
        assert f.readline().startswith(b"220")
        sock.sendall(b"HELO " + b"x" * 5000 + b"\r\n")
        assert f.readline().startswith(b"500 5.5.0")
        f.close()


# --- no Postfix on the machine ---------------------------------------------------------------


def test_without_postfix_ci_fails_and_elsewhere_skips(monkeypatch: pytest.MonkeyPatch) -> None:
    """Postfix cannot be uninstalled for a test: an empty search path stands in for it."""
    monkeypatch.setattr(postfix_harness, "SBIN_PATH", "/nonexistent")
    monkeypatch.setenv("PATH", "/nonexistent")
    assert postfix_harness.postfix_missing() == \
        "postfix is not installed (Debian package postfix)"
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI=true"):
        require_postfix()
    monkeypatch.setenv("CI", "")
    with pytest.raises(pytest.skip.Exception, match="not installed"):
        require_postfix()


# --- merging master.cf ---------------------------------------------------------------------


def test_merge_master_cf_replaces_same_service_and_turns_chroot_off() -> None:
    base = "smtp inet n - y - - smtpd\npostlog unix-dgram n - y - 1 postlogd\n"
    snippet = "# comment\npostlog unix-dgram n - n - 1 postlogd\n  -o a=b\n"
    merged = merge_master_cf(base, snippet).splitlines()
    assert merged[0].split() == ["smtp", "inet", "n", "-", "n", "-", "-", "smtpd"]
    assert merged[1].split() == ["postlog", "unix-dgram", "n", "-", "n", "-", "1", "postlogd"]
    assert merged[2] == "  -o a=b"
    assert len(merged) == 3


def test_set_main_cf_replaces_a_setting_with_its_continuation_lines() -> None:
    text = "a = 1\nb = x,\n  y\n\n    z\n# b = kept, a comment\nc = 3\n"
    assert set_main_cf(text, {"b": "w"}) == "a = 1\n# b = kept, a comment\nc = 3\nb = w\n"


def test_an_instances_own_settings_leave_postfix_nothing_to_override(tmp_path: Path) -> None:
    """Every Postfix process warns of an overridden main.cf entry, postlogd too, into
    its own socket before it reads it: under load that deadlocked the instance of
    tests/test_milter_socket_postfix.py (see set_main_cf). postconf reads main.cf as
    the daemons do and prints the same warning."""
    require_postfix()
    inst = make_instance(tmp_path / "pf", 25, extra_main={"smtpd_milters": SNIPPET_MILTER})
    inst.write_config()
    done = subprocess.run(["postconf", "-c", str(inst.config_dir), "-n"], capture_output=True,
                          text=True, env=postfix_harness._env(), check=True)
    assert "overriding" not in done.stderr, done.stderr
    assert f"smtpd_milters = {SNIPPET_MILTER}" in done.stdout.splitlines()
    # the snippet's other settings stay
    assert f"smtpd_milter_maps = socketmap:inet:127.0.0.1:{inst.map_port}:milters" in \
        done.stdout.splitlines()


def test_a_silent_command_is_killed_at_its_timeout() -> None:
    """`postfix stop` waits on `master -t`, which hangs with a deadlocked postlogd and
    prints nothing: the timeout must not depend on output arriving."""
    rc, out = run_with_tty(["sleep", "60"], timeout=0.5)
    assert (rc, out) == (-signal.SIGKILL, "")


def test_snippet_rendering_replaces_the_shipped_addresses() -> None:
    text = render_snippet("main.cf.snippet", {SNIPPET_MILTER: "inet:127.0.0.1:1"})
    assert "smtpd_milters = inet:127.0.0.1:1" in text
    # the shipped (relative unix) address is gone from every setting, comments aside
    settings = [ln for ln in text.splitlines() if not ln.lstrip().startswith("#")]
    assert not any("milter.sock" in ln for ln in settings)


# --- the running instance ------------------------------------------------------------------


def test_instance_is_wired_with_the_shipped_snippets(postfix: PostfixInstance) -> None:
    conf = postfix.postconf_n()
    assert f"smtpd_milters = {postfix.milter_address}" in conf
    assert f"{postfix.policy_address}, timeout=10s" in conf
    assert f"maillog_file = {postfix.maillog}" in conf
    assert "milter_default_action = accept" in conf


def test_mail_goes_customer_to_postfix_to_remote(
    postfix: PostfixInstance, remote_smtp: RemoteSMTP
) -> None:
    rcpt = f"{_uniq('friend')}@remote.example"
    result = postfix.send("alice@customer.example", [rcpt], subject="harness")
    assert result.queue_id is not None
    final = postfix.wait_removed(result.queue_id)
    assert final[rcpt].status == "sent"
    assert final[rcpt].dsn == "2.0.0"
    (msg,) = remote_smtp.received_by(rcpt)
    assert msg.mail_from == "alice@customer.example"
    assert msg.helo == "smarthost.extrusion.test"


def test_remote_failures_are_logged_with_their_dsn(postfix: PostfixInstance) -> None:
    good = f"{_uniq('ok')}@remote.example"
    unknown = f"{_uniq('unknown')}@remote.example"
    nodomain = f"someone@{_uniq('nxdomain')}.example"
    result = postfix.send("bob@customer.example", [good, unknown, nodomain])
    assert result.queue_id is not None
    final = postfix.wait_removed(result.queue_id)
    assert final[good].status == "sent"
    assert (final[unknown].status, final[unknown].dsn) == ("bounced", "5.1.1")
    assert (final[nodomain].status, final[nodomain].dsn) == ("bounced", "5.4.4")
    assert "User unknown" in final[unknown].reply


@pytest.mark.parametrize(("marker", "dsn"), [(SPAM_MARKER, "5.7.1"), (VIRUS_MARKER, "5.7.0")])
def test_content_refusals_bounce_every_recipient(
    postfix: PostfixInstance, marker: str, dsn: str
) -> None:
    rcpts = [f"{_uniq('r')}@remote.example" for _ in range(2)]
    result = postfix.send("carol@customer.example", rcpts, body=f"look {marker}\n")
    assert result.queue_id is not None
    final = postfix.wait_removed(result.queue_id)
    assert {(o.status, o.dsn) for o in final.values()} == {("bounced", dsn)}
    assert set(final) == set(rcpts)


def test_deferred_mail_is_in_the_queue_and_can_be_held_and_released(
    postfix: PostfixInstance,
) -> None:
    rcpt = f"{_uniq('grey')}@remote.example"
    result = postfix.send("dave@customer.example", [rcpt])
    qid = result.queue_id
    assert qid is not None
    postfix.wait_for_log(rf"{qid}: to=<{rcpt}>.*status=deferred")
    queued = {m["queue_id"]: m for m in postfix.queue()}
    assert qid in queued
    postfix.postsuper_hold(qid)
    assert qid in postfix.held()
    postfix.release(qid)
    assert qid not in postfix.held()
    postfix.delete(qid)
    assert qid not in {m["queue_id"] for m in postfix.queue()}


def test_fail_open_while_no_extrusion_daemon_listens(postfix: PostfixInstance) -> None:
    """The shipped wiring with extrusion down: mail flows, Postfix notes the milter is gone."""
    rcpt = f"{_uniq('open')}@remote.example"
    result = postfix.send("erin@customer.example", [rcpt])
    assert result.rcpt_replies[rcpt][0] == 250
    assert result.queue_id is not None
    assert postfix.wait_removed(result.queue_id)[rcpt].status == "sent"
    milter_down = rf"connect to Milter service {postfix.milter_address}: Connection refused"
    policy_down = rf"problem talking to server 127.0.0.1:{postfix.policy_port}: Connection refused"
    assert postfix.wait_for_log(milter_down, timeout=5)
    assert postfix.wait_for_log(policy_down, timeout=5)


def test_a_stopped_instance_leaves_no_process(remote_smtp: RemoteSMTP) -> None:
    require_postfix()
    with running_instance(remote_smtp.port, wired=False) as inst:
        assert inst.pids()
        result = inst.send("f@customer.example", ["g@remote.example"])
        assert result.queue_id is not None
        root = inst.root
    assert inst.pids() == []
    assert not root.exists()


def test_an_instance_whose_smtpd_port_was_taken_starts_on_new_ports(
    remote_smtp: RemoteSMTP, monkeypatch: pytest.MonkeyPatch
) -> None:
    """free_port() picks a port free at that moment; by the master's bind, seconds later,
    another process may hold it as the local port of a connection (another test run's
    traffic on a shared machine). Here the pick is such a port."""
    require_postfix()
    with socket.create_server(("127.0.0.1", 0)) as server, \
            socket.create_connection(server.getsockname()) as client:
        taken: int = client.getsockname()[1]
        picks = iter([taken])
        real = conftest.free_port
        monkeypatch.setattr(conftest, "free_port", lambda: next(picks, 0) or real())
        with running_instance(remote_smtp.port, wired=False) as inst:
            assert inst.smtpd_port != taken
            assert inst.send("f@customer.example", ["g@remote.example"]).queue_id is not None
