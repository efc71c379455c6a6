"""Mail handed on to a content filter or a second instance on the same host.

`relay=…[127.0.0.1]…, status=sent (250 … queued as NEWQID)` is no outcome: the
identity moves to NEWQID, whose deliveries are the real ones. When NEWQID's lines
come after the hand-off line, the sender waits here (bounded) for its first line.
"""

from __future__ import annotations

import re
from collections import OrderedDict

from extrusion.maillog.joinstate import OpenMessage
from extrusion.maillog.records import Delivery
from extrusion.netaddr import is_loopback, networks, parse_ip, within

_QUEUED_AS = re.compile(r"queued as ([0-9A-Za-z]{5,20})")
_RELAY_ADDR = re.compile(r"\[(?:IPv6:)?([^\]]+)\]")
# Hand-offs whose next queue id was not logged yet, remembered at most.
LINKS_KEPT = 10_000

Link = tuple[str, str, str, bool]  # the sender's (client name, address, SASL user, null sender)


class Handoffs:
    def __init__(self, relays: tuple[str, ...]) -> None:
        self._nets = networks(relays)
        # Next-queue ids (keyed like the joiner's messages) announced before their first line.
        # Oldest first, dropped by popitem(): `next(iter(d))` on a plain dict walks the
        # slots its deletions left, ever more of them until it resizes.
        self.links: OrderedDict[str, Link] = OrderedDict()

    def child(self, msgs: dict[str, OpenMessage], m: OpenMessage, r: Delivery
              ) -> OpenMessage | None:
        """The next queue's message, when this delivery handed the mail to a content
        filter or a second instance whose lines for it were already logged (it logs its
        client line before it answers 250). A next hop on loopback that is not logged
        (a test peer) is an ordinary delivery; should its queue id show up later after
        all, it still inherits the sender (`links`)."""
        if "queued as " not in r.reply:
            return None
        a = _RELAY_ADDR.search(r.relay)
        if a is None or not self.is_relay_addr(a.group(1)):
            return None
        q = _QUEUED_AS.findall(r.reply)
        if not q:
            return None
        key = m.host + " " + q[-1]
        child = msgs.get(key)
        if child is None and m.known:
            links = self.links
            if len(links) >= LINKS_KEPT:
                links.popitem(last=False)
            links[key] = (m.client_name, m.client_addr, m.sasl_user, m.null_sender)
        return child

    def is_relay_addr(self, addr: str) -> bool:
        """Loopback or a configured content filter / second instance."""
        if _is_loopback(addr):
            return True
        if not self._nets:
            return False
        ip = parse_ip(addr)
        return ip is not None and within(ip, self._nets)


def _is_loopback(addr: str) -> bool:
    # The two common spellings first: this runs for every delivery line.
    return addr.startswith("127.") or addr == "::1" or is_loopback(addr)
