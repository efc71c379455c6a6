"""Addresses and networks read once, one way, for every part of extrusion."""

from __future__ import annotations

import ipaddress

import pytest

from extrusion.netaddr import ip_of, is_loopback, networks, parse_ip, within


@pytest.mark.parametrize(("text", "plain", "folded"), [
    ("192.0.2.1", "192.0.2.1", "192.0.2.1"),
    ("2001:DB8::0001", "2001:db8::1", "2001:db8::1"),
    ("::ffff:192.0.2.1", "::ffff:c000:201", "192.0.2.1"),  # a dual-stack socket's IPv4 client
    ("unknown", None, None),  # what Postfix says for a client without an address
    ("", None, None),
    ("192.0.2.1/24", None, None),
])
def test_parse_ip_and_ip_of(text: str, plain: str | None, folded: str | None) -> None:
    assert (str(parse_ip(text)) if parse_ip(text) else None) == plain
    assert (str(ip_of(text)) if ip_of(text) else None) == folded


def test_networks_allow_host_bits_and_refuse_nonsense() -> None:
    assert networks([" 192.0.2.7/24", "2001:db8::/32"]) == (
        ipaddress.ip_network("192.0.2.0/24"), ipaddress.ip_network("2001:db8::/32"))
    with pytest.raises(ValueError):
        networks(["192.0.2.0/33"])


def test_within_never_mixes_families() -> None:
    nets = networks(["192.0.2.0/24", "::/0"])
    assert within(ipaddress.ip_address("192.0.2.99"), nets)
    assert not within(ipaddress.ip_address("198.51.100.1"), networks(["192.0.2.0/24"]))
    assert within(ipaddress.ip_address("2001:db8::1"), nets)
    assert not within(ipaddress.ip_address("203.0.113.1"), networks(["::/0"]))


@pytest.mark.parametrize(("text", "loopback"), [
    ("127.0.0.1", True), ("127.8.9.10", True), ("::1", True),
    ("192.0.2.1", False), ("localhost", False), ("unknown", False),
])
def test_is_loopback(text: str, loopback: bool) -> None:
    assert is_loopback(text) is loopback
