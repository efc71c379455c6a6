"""`smtpd_milter_maps` on a real Postfix wired with the shipped snippet.

`extrusion serve` answers Postfix's socketmap: a client the engine holds gets
the milter (the milter's own record of the session, the HELO on the message
row, is in the store), a client in good standing does not (the policy server
and the log still count its message). With the socketmap down (`attach =
"always"`: no socketmap served, the snippet still asks it), Postfix's lookup
fails and it attaches `smtpd_milters`: fail safe.
"""

from __future__ import annotations

import socket
import uuid

import pytest

from extrusion.milter.attach import MAP_NAME, netstring
from extrusion.scoring.rows import StoredMessage
from extrusion.scoring.store import Store
from tests.helpers import wait_for
from tests.mta.daemons import ExtrusionDaemons, postfix_daemons  # noqa: F401 (fixture `daemons`)
from tests.postfix_harness import PostfixInstance

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

GOOD = "127.0.0.150"
HELD = "127.0.0.151"
SETTLE = 30.0




def send(postfix: PostfixInstance, source: str, tag: str) -> str:
    result = postfix.send(f"anna@{tag}.example", [f"friend-{tag}@remote.example"],
                          source=source, helo=f"pc-{tag}.customer.example")
    assert result.queue_id is not None, result
    return result.queue_id


def lookup(postfix: PostfixInstance, client: str) -> bytes:
    """One socketmap lookup as Postfix's smtpd makes it, on the address it was wired with."""
    with socket.create_connection(("127.0.0.1", postfix.map_port), timeout=10) as conn:
        conn.sendall(netstring(f"{MAP_NAME} {client}".encode()))
        return conn.recv(512)


def stored(d: ExtrusionDaemons, source: str, queue_id: str) -> StoredMessage:
    """The message's row once the feed and (if attached) the milter have reported it."""
    def row() -> StoredMessage | None:
        with Store(f"sqlite:///{d.store_path}") as store:
            rows = [m for m in store.messages(f"ip:{source}") if m.queue_id == queue_id]
        return rows[0] if rows and rows[0].rcpt_count else None

    return wait_for(f"the row of {queue_id}", row, SETTLE, interval=0.2)


def test_a_held_client_gets_the_milter_and_one_in_good_standing_does_not(
    postfix: PostfixInstance, daemons: ExtrusionDaemons
) -> None:
    tag = uuid.uuid4().hex[:6]
    daemons.cli("hold", f"ip:{HELD}", "--reason", "attach test")
    # The engine learns of the hold from the store, and the socketmap's list of clients
    # under attention may be attach_refresh_seconds old: wait until it answers for HELD.
    wait_for("the socketmap attaching the held client",
             lambda: lookup(postfix, HELD) == netstring(b"NOTFOUND "), SETTLE)
    assert lookup(postfix, GOOD) == netstring(b"OK DISABLE")
    good_qid = send(postfix, GOOD, f"g{tag}")
    held_qid = send(postfix, HELD, f"h{tag}")

    # The held client's session went through the milter: it wrote the HELO.
    assert stored(daemons, HELD, held_qid).helo == f"pc-h{tag}.customer.example"
    # The other one's did not; the log feed still counted its message and recipient.
    good = stored(daemons, GOOD, good_qid)
    assert good.helo == "" and good.rcpt_count == 1
    assert held_qid in postfix.held()  # the hold is enforced either way
    # Both lookups were answered: Postfix logged no lookup error for either client.
    log = postfix.log_text()
    for source in (GOOD, HELD):
        assert f'lookup error for "{source}"' not in log


@pytest.mark.parametrize("daemons", [{"milter": {"attach": "always"}}], indirect=True)
def test_with_the_socketmap_down_postfix_attaches_the_milter(
    postfix: PostfixInstance, daemons: ExtrusionDaemons
) -> None:
    tag = uuid.uuid4().hex[:6]
    qid = send(postfix, GOOD, f"d{tag}")
    assert stored(daemons, GOOD, qid).helo == f"pc-d{tag}.customer.example"  # the milter's
    assert f'milters lookup error for "{GOOD}"' in postfix.log_text()  # Postfix's warning
    assert {o.status for o in postfix.wait_removed(qid).values()} == {"sent"}
