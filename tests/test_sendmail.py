"""The Sendmail path: a real Sendmail (Debian's binaries, unpacked) with conf/sendmail/extrusion.mc.

Sendmail has no policy protocol, so the milter enforces alone ([milter]
rate_limits = true); the log feed reads Sendmail's syslog lines.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.mta.daemons import extrusion_daemons
from tests.mta.sendmail import SendmailInstance, SendmailUnavailable, running_sendmail
from tests.postfix_harness import in_ci, postfix_missing
from tests.smtp_remote import RemoteSMTP

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def sendmail(remote_smtp: RemoteSMTP) -> Iterator[SendmailInstance]:
    reason = postfix_missing()  # same needs: root, loopback, Debian tools
    try:
        if reason is None:
            with running_sendmail(remote_smtp.port) as inst:
                yield inst
            return
    except SendmailUnavailable as exc:
        reason = str(exc)
    if in_ci():
        pytest.fail(f"{reason} (CI=true: the Sendmail integration tests are required)")
    pytest.skip(reason)


def _uniq(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def test_the_cf_is_built_from_the_shipped_mc(sendmail: SendmailInstance) -> None:
    cf = (sendmail.root / "sendmail.cf").read_text()
    assert (f"Xextrusion, S=inet:{sendmail.milter_port}@127.0.0.1, F=, "
            f"T=C:10s;S:10s;R:10s;E:30s") in cf
    assert "O InputMailFilters=extrusion" in cf
    assert "O Milter.macros.eom={msg_id}, i" in cf
    assert "{auth_authen}" in cf


def test_fail_open_sendmail_relays_while_no_milter_listens(
    sendmail: SendmailInstance, remote_smtp: RemoteSMTP
) -> None:
    good = f"{_uniq('ok')}@remote.example"
    dead = f"{_uniq('unknown')}@remote.example"
    result = sendmail.send("alice@customer.example", [good, dead], source="127.0.0.20")
    assert result.queue_id is not None, result
    outcomes = {o.recipient: o for o in sendmail.wait_outcomes(result.queue_id, 2)}
    assert outcomes[good].dsn == "2.0.0"
    assert outcomes[dead].dsn == "5.1.1"
    assert remote_smtp.received_by(good)
    assert "Milter (extrusion): error connecting to filter" in sendmail.log_text()


SENDMAIL_SETTINGS = {
    "milter": {"rate_limits": True},
    "policyd": {"hold_queued_mail": False},
    "maillog": {"format": "sendmail"},
}


def test_operator_hold_and_block_are_enforced_by_the_milter_on_sendmail(
    sendmail: SendmailInstance, tmp_path: Path, remote_smtp: RemoteSMTP
) -> None:
    """No policy service on Sendmail: the milter quarantines held senders, refuses blocked ones."""
    held_key, blocked_key = "ip:127.0.0.68", "ip:127.0.0.69"
    with extrusion_daemons(tmp_path, sendmail, SENDMAIL_SETTINGS) as daemons:
        daemons.cli("hold", held_key, "--reason", "abuse ticket 77", "--who", "abuse")
        daemons.cli("block", blocked_key, "--reason", "abuse ticket 78", "--who", "abuse")
        time.sleep(2)  # the milter re-reads operator decisions every refresh_seconds
        rcpt = f"{_uniq('someone')}@remote.example"
        held = sendmail.send("pc@customer.example", [rcpt], source="127.0.0.68")
        assert held.queue_id is not None, held
        assert held.queue_id in sendmail.queue(quarantined=True)
        assert remote_smtp.received_by(rcpt) == []

        blocked = sendmail.send("pc@customer.example", [f"{_uniq('x')}@remote.example"],
                                source="127.0.0.69")
        assert blocked.queue_id is None
        codes = [code for code, _ in blocked.rcpt_replies.values()] or [blocked.mail_reply[0]]
        assert all(code == 550 for code in codes), blocked
        assert "5.7.1" in str(blocked)


def test_spam_bot_is_contained_on_sendmail(
    sendmail: SendmailInstance, tmp_path: Path
) -> None:
    """Forged freemail sender, random HELO, mostly dead recipients: tempfailed, then quarantined."""
    # Once throttled, the milter lets the bot's recipients through only within the default
    # [limits.throttled] trickle, whose failures alone can stop a point or two short of
    # the hold threshold; the new recipients it keeps pushing into the throttle are the
    # evidence that holds it ([weights] throttled_refusal).
    with extrusion_daemons(tmp_path, sendmail, SENDMAIL_SETTINGS) as daemons:
        from tests.test_integration_postfix import run_spam_bot

        outcome = run_spam_bot(sendmail, daemons, source="127.0.0.67", tag=_uniq("smbot"))
    assert outcome.failures_before_throttle < 25
    assert outcome.throttle_reply.startswith("4.7.1")
    assert outcome.held_queue_id in outcome.quarantined
