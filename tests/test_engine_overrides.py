"""Sender keys, customers and config overrides (by key, CIDR and SASL pattern)."""

from __future__ import annotations

import pytest

from extrusion.config import Customer, Override
from extrusion.keys import parse_address as parse_addr
from extrusion.scoring.overrides import OverrideSet, SenderMap

CUSTOMERS = (
    Customer("acme", limits="business", networks=("10.0.0.0/8",), sasl=("*@acme.example",)),
    Customer("small", limits="consumer", networks=("10.1.0.0/16", "2001:db8:1::/48")),
)


@pytest.mark.parametrize(
    ("addr", "user", "key"),
    [
        ("192.0.2.7", "", "ip:192.0.2.7"),
        ("192.0.2.7", "joe", "sasl:joe"),
        ("10.2.3.4", "", "customer:acme"),
        ("10.1.3.4", "", "customer:small"),  # the most specific range wins
        ("192.0.2.7", "Joe@ACME.example", "customer:acme"),
        ("[IPv6:2001:db8:1::5]", "", "customer:small"),
        ("2001:db8:2::5", "", "ip:2001:db8:2::5"),
        ("unknown", "", "ip:unknown"),
    ],
)
def test_sender_keys(addr: str, user: str, key: str) -> None:
    assert SenderMap(CUSTOMERS).key(addr, user) == key


def test_limits_class_of_customers_and_others() -> None:
    m = SenderMap(CUSTOMERS)
    assert m.limits_class("customer:acme") == "business"
    assert m.limits_class("ip:192.0.2.7") == "default"


def test_parse_addr_forms() -> None:
    assert str(parse_addr("[192.0.2.1]")) == "192.0.2.1"
    assert str(parse_addr("IPv6:2001:db8::1")) == "2001:db8::1"
    assert parse_addr("mail.example") is None


OVERRIDES = OverrideSet((
    Override("sasl:*@lists.example", "allow", reason="list server"),
    Override("192.0.2.0/24", "block", reason="abuse 17"),
    Override("ip:198.51.100.1", "hold"),
    Override("customer:acme", "limits", limits="business"),
    Override("2001:db8::/32", "monitor"),
))


@pytest.mark.parametrize(
    ("key", "addr", "action"),
    [
        ("sasl:news@lists.example", "", "allow"),
        ("sasl:NEWS@Lists.Example", "", "allow"),
        ("sasl:bob@other.example", "192.0.2.9", "block"),  # CIDR against the client address
        ("ip:192.0.2.200", "", "block"),
        ("ip:198.51.100.1", "", "hold"),
        ("sasl:carol", "198.51.100.1", None),  # ip:ADDR matches that IP sender only
        ("customer:ACME", "", "limits"),
        ("ip:2001:db8::99", "", "monitor"),
        ("ip:203.0.113.1", "", None),
    ],
)
def test_override_matching(key: str, addr: str, action: str | None) -> None:
    found = OVERRIDES.match(key, addr)
    assert (found.action if found else None) == action


def test_first_match_in_file_order_wins() -> None:
    s = OverrideSet((Override("ip:192.0.2.1", "allow"), Override("192.0.2.0/24", "block")))
    found = s.match("ip:192.0.2.1")
    assert found is not None and found.action == "allow"
    assert not OverrideSet(())
