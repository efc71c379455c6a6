"""The shipped milter wiring for real: a unix socket inside Postfix's queue directory,
group postfix, reached by smtpd as the relative `unix:extrusion/milter.sock`."""

from __future__ import annotations

import os
import shutil
import stat
from pathlib import Path

import pytest

from extrusion.cli import main
from tests.postfix_harness import require_postfix, running_instance
from tests.smtp_remote import RemoteSMTP
from tests.test_milter_integration import MilterProcess, sqlite_url, wait_stored

pytestmark = pytest.mark.integration

SHIPPED = "unix:extrusion/milter.sock"  # conf/postfix/main.cf.snippet


def test_postfix_reaches_the_shipped_relative_socket_and_check_config_approves(
    remote_smtp: RemoteSMTP, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    require_postfix()
    with running_instance(remote_smtp.port, extra_main={"smtpd_milters": SHIPPED}) as pf:
        sockdir = pf.queue_dir / "extrusion"
        sockdir.mkdir(mode=0o750)
        shutil.chown(sockdir, "root", "postfix")
        path = sockdir / "milter.sock"
        milter = MilterProcess(tmp_path, sqlite_url(tmp_path))
        milter.config.write_text(milter.config.read_text().replace(
            f'socket = "inet:{milter.port}@127.0.0.1"',
            f'socket = "unix:{path}"\nsocket_group = "postfix"') + (
            f'[maillog]\nsource = "file"\npath = "{pf.maillog}"\n'
            f'[policyd]\nenabled = false\n'))
        # The harness's probe of smtpd reached no milter: its session is logged to its
        # end before the milter starts, so that a line of it that postlogd writes late
        # (a loaded machine) cannot land among the lines of the mail judged below.
        pf.wait_for_log(r"postfix/smtpd\[\d+\]: disconnect from ")
        milter.start()
        try:
            st = path.stat()
            assert (stat.S_IMODE(st.st_mode), st.st_gid) == (0o660, _gid("postfix"))
            before = len(pf.log_text())
            sent = pf.send("dora@customer.example", ["x@remote.example"])
            assert sent.queue_id is not None, sent
            # Judged by the milter: the message is in its store under its queue id.
            assert wait_stored(milter.url, "ip:127.0.0.1", {sent.queue_id})
            assert "connect to Milter service" not in pf.log_text()[before:]
            status = main(["check-config", "--config", str(milter.config), "--mta", "postfix",
                           "--postfix-config", str(pf.config_dir)])
            out = capsys.readouterr().out
            assert f"ok      smtpd_milters: extrusion's milter unix:{path} is attached" in out
            assert (f"ok      [milter] socket: {path} has mode 0660 group postfix: only "
                    f"Postfix (group postfix) may connect") in out
            os.chmod(path, 0o666)  # the control: a socket anyone may reach is reported
            main(["check-config", "--config", str(milter.config), "--mta", "postfix",
                  "--postfix-config", str(pf.config_dir)])
            assert (f"warning [milter] socket: {path} has mode 0666 lets every local user"
                    in capsys.readouterr().out)
            assert status == 0, out
        finally:
            assert milter.stop() == 0, milter.log()


def _gid(group: str) -> int:
    import grp

    return grp.getgrnam(group).gr_gid
