"""The MX log evidence from a real Postfix: postscreen in front of smtpd on loopback, a bot
that talks before the greeting (PREGREET, then postscreen's comma-form rejects) and an own
customer saying our name (smtpd's reject with `helo=<…>`, its `disconnect` line). The log
Postfix wrote is read back by the feed and replayed in mx mode."""

from __future__ import annotations

import shutil
import smtplib
import socket
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from extrusion.config import from_dict
from extrusion.replay.command import run
from extrusion.scoring.events import Seen
from tests.conftest import free_port
from tests.maillog_helpers import Recorder, feed_lines
from tests.postfix_harness import PostfixInstance, merge_master_cf, require_postfix

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

BOT = "127.0.0.7"
OWN = "127.0.0.5"
POSTSCREEN_MASTER = """\
127.0.0.1:{port} inet n - n - 1 postscreen
smtpd     pass  -       -       n       -       -       smtpd
dnsblog   unix  -       -       n       -       0       dnsblog
tlsproxy  unix  -       -       n       -       0       tlsproxy
"""


@dataclass
class PostscreenInstance(PostfixInstance):
    def write_config(self) -> None:
        super().write_config()
        (self.config_dir / "rcpt_access").write_text(
            "gone@our.example 550 5.1.1 User unknown in local recipient table\n")
        master = self.config_dir / "master.cf"
        master.write_text(merge_master_cf(master.read_text(),
                                          POSTSCREEN_MASTER.format(port=self.smtpd_port)))


@pytest.fixture
def mx(remote_smtp: object) -> Iterator[PostscreenInstance]:
    require_postfix()
    # Postfix's daemons drop to the postfix user: the root must be reachable by it.
    root = Path(tempfile.mkdtemp(prefix="extrusion-postfix-"))
    inst = PostscreenInstance(
        root=root, smtpd_port=free_port(), relay_port=remote_smtp.port,
        milter_port=free_port(), policy_port=free_port(), wired=False,
        extra_main={
            "postscreen_greet_action": "enforce",
            "postscreen_access_list": "",  # loopback is in mynetworks: test it all the same
            "postscreen_greet_wait": "2s",
            "smtpd_recipient_restrictions":
                f"check_recipient_access texthash:{root}/etc/rcpt_access, permit_mynetworks, "
                "reject_unauth_destination",
        })
    try:
        yield inst.start()
    finally:
        inst.stop()
        shutil.rmtree(root, ignore_errors=True)


def _line(sock: socket.socket) -> bytes:
    data = b""
    while not data.endswith(b"\n"):
        chunk = sock.recv(1)
        if not chunk:
            break
        data += chunk
    return data


def _reply(sock: socket.socket) -> bytes:
    """One whole (perhaps multi-line) SMTP reply."""
    while True:
        line = _line(sock)
        if len(line) < 4 or line[3:4] != b"-":
            return line


def _pregreeting_bot(port: int) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=20,
                                  source_address=(BOT, 0)) as s:
        s.sendall(b"EHLO bot.example\r\n")  # before the greeting: what a bot does
        _reply(s)  # the greeting, after postscreen_greet_wait (the early EHLO is dropped)
        for cmd in (b"EHLO bot.example", b"MAIL FROM:<a@b.example>", b"RCPT TO:<x1@our.example>",
                    b"RCPT TO:<x2@our.example>", b"QUIT"):
            s.sendall(cmd + b"\r\n")
            _reply(s)


def _own_customer(port: int) -> None:
    with smtplib.SMTP("127.0.0.1", port, local_hostname="our.example", timeout=20,
                      source_address=(OWN, 0)) as c:
        c.ehlo()
        c.mail("pc@our.example")
        code, _msg = c.rcpt("gone@our.example")
        assert code == 550


def test_a_real_postscreen_and_smtpd_log_gives_the_mx_evidence(
    mx: PostscreenInstance, tmp_path: Path,
) -> None:
    _pregreeting_bot(mx.smtpd_port)
    _own_customer(mx.smtpd_port)
    try:
        mx.wait_for_log(r"postscreen\[\d+\]: NOQUEUE: reject: RCPT from \[127\.0\.0\.7\].*x2@")
        mx.wait_for_log(r"smtpd\[\d+\]: disconnect from \S*\[127\.0\.0\.5\].*commands=")
    except TimeoutError as exc:
        raise AssertionError(mx.log_text()[-3000:]) from exc
    time.sleep(0.2)
    lines = mx.log_text().splitlines()

    rec = Recorder()
    feed_lines(rec, lines)
    assert {o.recipient for o in rec.outcomes if o.sender == "ip:" + BOT} == {
        "x1@our.example", "x2@our.example"}
    bot = [e for e in rec.evidence_seen if e.client_addr == BOT]
    assert any(e.kind is Seen.POSTSCREEN and e.detail.startswith("EHLO bot.example")
               for e in bot), mx.log_text()
    assert any(e.kind is Seen.SESSION and e.helos == ("bot.example",) for e in bot)
    own = [e for e in rec.evidence_seen if e.client_addr == OWN]
    assert own and own[0].helos == ("our.example",)

    cfg = from_dict({
        "general": {"mode": "mx", "own_domains": ["our.example"]},
        "customers": [{"name": "pc5", "networks": [OWN + "/32"]}],
        "store": {"url": f"sqlite:///{tmp_path / 'r.db'}", "spool_dir": str(tmp_path / "sp")},
    })
    log = tmp_path / "mail.log"
    log.write_text(mx.log_text())
    result, _stats = run(cfg, [str(log)], parallel=False)
    assert result.senders["customer:pc5"].peak.rank >= 1  # watch at least: seen from outside
    assert result.senders["ip:" + BOT].score > 0
