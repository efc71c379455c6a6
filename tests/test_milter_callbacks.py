"""The milter's own entry points from pymilter agree with pymilter's generic ones.

ExtrusionMilter replaces a few of pymilter's Base methods with cheaper ones
(negotiation with macro lists worked out once, header/envelope decoding
without per-call lookups, no address parsing for IPv4). These tests hold
them to what the generic versions do, on the same inputs.
"""

from __future__ import annotations

import ipaddress
from typing import Any

import Milter
import pytest
from Milter import testctx

from extrusion.milter.adapter import ExtrusionMilter, Runtime, normal_address
from extrusion.milter.session import Message

ALL_STEPS = 0x1FFFFF


class Recorder(ExtrusionMilter):
    """ExtrusionMilter whose envelope callbacks only record what they were given."""

    def __init__(self) -> None:
        super().__init__(Runtime(guard=None))  # type: ignore[arg-type]  # never reached
        self.seen: list[tuple[str, tuple[Any, ...]]] = []

    def envfrom(self, mailfrom: str, *params: str) -> int:
        self.seen.append(("envfrom", (mailfrom,)))
        return Milter.CONTINUE

    def envrcpt(self, rcpt: str, *params: str) -> int:
        self.seen.append(("envrcpt", (rcpt,)))
        return Milter.CONTINUE


def negotiated(negotiate: Any, actions: int = Milter.CURR_ACTS) -> tuple[int, list[int], Any]:
    ctx = testctx.TestCtx()
    ctx._stage = -1
    m = ExtrusionMilter(Runtime(guard=None))  # type: ignore[arg-type]
    m._setctx(ctx)
    opts = [actions, ALL_STEPS, 0, 0]
    rc = negotiate(m, opts)
    return rc, opts, ctx._symlist


@pytest.mark.parametrize("actions", [Milter.CURR_ACTS, Milter.CURR_ACTS & ~Milter.SETSYMLIST])
def test_negotiation_is_the_one_pymilter_would_make(actions: int) -> None:
    ours = negotiated(ExtrusionMilter.negotiate, actions)
    generic = negotiated(Milter.Base.negotiate, actions)
    assert ours == generic
    if actions & Milter.SETSYMLIST:
        rc, opts, symlists = ours
        assert rc == Milter.CONTINUE
        assert symlists[Milter.M_ENVFROM] == {b"{auth_authen}", b"i", b"s"}
        assert symlists[Milter.M_EOM] == {b"i"}
        # eoh and unknown are never asked for; connect, HELO and headers need no reply
        assert opts[1] & Milter.P_NOEOH and opts[1] & Milter.P_NOUNKNOWN
        assert opts[1] & Milter.P_NR_HDR and opts[1] & Milter.P_NR_BODY
        assert not opts[1] & (Milter.P_NOHDRS | Milter.P_NOBODY | Milter.P_NODATA)
    else:  # the MTA refused macro lists: pymilter's fallback, everything
        assert ours[0] == Milter.ALL_OPTS


@pytest.mark.parametrize("raw", [b"<a@example.net>", b"<\xff\xfe@example.net>", b""])
def test_envelope_values_are_decoded_as_pymilter_decodes_them(raw: bytes) -> None:
    ours, generic = Recorder(), Recorder()
    for m, entry in ((ours, Recorder.envfrom_bytes), (generic, Milter.Base.envfrom_bytes)):
        assert entry(m, raw, b"SIZE=1000") == Milter.CONTINUE
    for m, entry in ((ours, Recorder.envrcpt_bytes), (generic, Milter.Base.envrcpt_bytes)):
        assert entry(m, raw, b"NOTIFY=NEVER") == Milter.CONTINUE
    assert ours.seen == generic.seen
    assert [what for what, _ in ours.seen] == ["envfrom", "envrcpt"]


@pytest.mark.parametrize("protocol", [0, Milter.P_NR_HDR])
@pytest.mark.parametrize("value", [b"list.example.org", b"caf\xc3\xa9", b"bad \xff byte"])
def test_header_bytes_keeps_what_header_keeps_and_answers_like_noreply(
    protocol: int, value: bytes
) -> None:
    results = []
    for entry in (ExtrusionMilter.header_bytes, Milter.Base.header_bytes):
        m = ExtrusionMilter(Runtime(guard=None))  # type: ignore[arg-type]
        m._protocol = protocol
        m.session.message = Message(sender="ip:192.0.2.1", envelope_from="a@example.net")
        rc = entry(m, "List-Id", value)
        results.append((rc, m.session.message.headers, m.session.message.size))
    assert results[0] == results[1]
    assert results[0][0] == (Milter.NOREPLY if protocol else Milter.CONTINUE)
    assert results[0][1]["list_id"]


def test_header_outside_a_message_is_ignored() -> None:
    m = ExtrusionMilter(Runtime(guard=None))  # type: ignore[arg-type]
    m._protocol = 0
    assert m.header_bytes("Subject", b"hi") == Milter.CONTINUE
    assert m.session.message is None


@pytest.mark.parametrize("addr", [
    "192.0.2.1", "0.0.0.0", "255.255.255.255", "10.1.2.3",
    "192.0.2.01", "1.2.3", "16909060", "not an address", "", "[192.0.2.1]",
    "::ffff:192.0.2.7", "2001:DB8::1", "2001:db8:0:0:0:0:0:1", "fe80::1%eth0", "::1",
])
def test_normal_address_is_canonical_text(addr: str) -> None:
    try:
        ip = ipaddress.ip_address(addr)
    except ValueError:
        expected = addr
    else:
        mapped = getattr(ip, "ipv4_mapped", None)
        expected = str(mapped if mapped is not None else ip)
    assert normal_address(addr) == expected
