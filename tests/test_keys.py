"""Sender keys: one canonical form whichever path a client or an operator comes in by."""

from __future__ import annotations

from typing import Any

import pytest

from extrusion import config as configmod
from extrusion.config import Customer
from extrusion.exits import EX_DATAERR, EX_USAGE
from extrusion.keys import (
    SenderKeyError,
    client_key,
    normal_address,
    operator_key,
    override_problem,
)
from extrusion.milter.adapter import fallback_sender_key
from extrusion.scoring.overrides import SenderMap

CUSTOMERS = (
    Customer("acme", networks=("192.0.2.0/28", "2001:db8:a::/48"), sasl=("*@acme.example",)),
)


@pytest.mark.parametrize(
    ("given", "key"),
    [
        ("ip:192.0.2.7", "ip:192.0.2.7"),
        ("ip:2001:DB8::0001", "ip:2001:db8::1"),
        ("ip:2001:db8:0:0:0:0:0:1", "ip:2001:db8::1"),
        ("ip:::ffff:192.0.2.5", "ip:192.0.2.5"),
        ("ip:::FFFF:C000:0205", "ip:192.0.2.5"),
        ("ip:[192.0.2.7]", "ip:192.0.2.7"),
        ("ip:IPv6:2001:db8::1", "ip:2001:db8::1"),
        ("ip:[IPv6:2001:DB8::1]", "ip:2001:db8::1"),
        ("IP:192.0.2.7", "ip:192.0.2.7"),
        ("  ip:192.0.2.7\n", "ip:192.0.2.7"),
        ("sasl:Anna@Example.NET", "sasl:Anna@Example.NET"),  # kept as the MTA passes it
        ("SASL:anna", "sasl:anna"),
        ("sasl:user:with:colons", "sasl:user:with:colons"),
        ("customer:acme", "customer:acme"),
    ],
)
def test_operator_keys_are_canonical(given: str, key: str) -> None:
    assert operator_key(given) == key


@pytest.mark.parametrize(
    ("given", "words"),
    [
        ("", "is not a sender key"),
        ("192.0.2.7", "is not a sender key"),
        ("host:mail.example", "is not a sender key"),
        ("ip:", "names nobody"),
        ("sasl:", "names nobody"),
        ("customer:  ", "names nobody"),
        ("sasl: anna", "names nobody"),
        ("sasl:an\tna", "control characters"),
        ("ip:192.0.2.300", "is not an IP address"),
        ("ip:not-an-ip", "is not an IP address"),
        ("ip:192.0.2.07", "is not an IP address"),
        ("ip:2001:db8::1::2", "is not an IP address"),
        ("ip:192.0.2.0/24", "is a range"),
        ("ip:2001:DB8::/32", 'match = "2001:db8::/32"'),
        ("ip:192.0.2.0/33", "is not an IP address"),
    ],
)
def test_malformed_operator_keys_are_usage_errors(given: str, words: str) -> None:
    with pytest.raises(SenderKeyError) as caught:
        operator_key(given)
    assert caught.value.status == EX_USAGE
    assert words in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("given", "key", "status"),
    [
        ("customer:acme", "customer:acme", 0),
        ("customer:nobody", "", EX_DATAERR),
        ("customer:Acme", "", EX_DATAERR),  # traffic is keyed by the config's spelling
        ("ip:192.0.2.5", "", EX_DATAERR),  # acme's range: its mail is customer:acme
        ("ip:::ffff:192.0.2.5", "", EX_DATAERR),
        ("ip:2001:db8:a::9", "", EX_DATAERR),
        ("sasl:joe@ACME.example", "", EX_DATAERR),
        ("ip:192.0.2.17", "ip:192.0.2.17", 0),
        ("sasl:joe@other.example", "sasl:joe@other.example", 0),
        ("ip:192.0.2.300", "", EX_USAGE),
    ],
)
def test_keys_traffic_never_has_are_data_errors(given: str, key: str, status: int) -> None:
    senders = SenderMap(CUSTOMERS)
    if not status:
        assert senders.operator_key(given) == key
        return
    with pytest.raises(SenderKeyError) as caught:
        senders.operator_key(given)
    assert caught.value.status == status


@pytest.mark.parametrize(
    ("addr", "user", "key"),
    [
        ("192.0.2.5", "", "ip:192.0.2.5"),
        ("::ffff:192.0.2.5", "", "ip:192.0.2.5"),
        ("[IPv6:::ffff:192.0.2.5]", "", "ip:192.0.2.5"),
        ("2001:DB8::0001", "", "ip:2001:db8::1"),
        ("[IPv6:2001:db8::1]", "", "ip:2001:db8::1"),
        ("unknown", "", "ip:unknown"),  # traffic is keyed whatever the MTA says
        ("192.0.2.5", "Anna", "sasl:Anna"),
    ],
)
def test_traffic_keys_match_what_operators_name(addr: str, user: str, key: str) -> None:
    assert client_key(addr, user) == key
    assert SenderMap(()).key(addr, user) == key
    assert fallback_sender_key(normal_address(addr), user) == key  # the milter's
    if key != "ip:unknown":
        assert operator_key(key) == key


def test_one_client_one_key_mapped_or_not() -> None:
    senders = SenderMap(CUSTOMERS)
    assert senders.key("::ffff:192.0.2.99") == senders.key("192.0.2.99") == "ip:192.0.2.99"
    # A customer's range claims its mapped addresses too.
    assert senders.key("::ffff:192.0.2.5") == senders.key("192.0.2.5") == "customer:acme"


@pytest.mark.parametrize(
    ("match", "ok"),
    [
        ("ip:192.0.2.1", True),
        ("ip:2001:DB8::1", True),
        ("ip:192.0.2.0/24", True),
        ("192.0.2.0/24", True),
        ("2001:db8::/32", True),
        ("sasl:*@lists.example", True),
        ("sasl:bob", True),
        ("customer:acme", True),
        ("customer:nobody", False),
        ("ip:192.0.2.300", False),
        ("ip:not-an-ip", False),
        ("ip:192.0.2.0/33", False),
        ("bob", False),
        ("host:mail.example", False),
        ("", False),
    ],
)
def test_config_overrides_must_be_able_to_match(match: str, ok: bool) -> None:
    assert (override_problem(match, {"acme"}) is None) is ok


def test_config_refuses_an_override_for_an_undefined_customer() -> None:
    data: dict[str, Any] = {
        "customers": [{"name": "acme", "networks": ["192.0.2.0/28"]}],
        "overrides": [{"match": "customer:acme", "action": "allow"},
                      {"match": "customer:acme-corp", "action": "block"}],
    }
    with pytest.raises(configmod.ConfigError) as caught:
        configmod.from_dict(data, "x.toml")
    assert "overrides[1].match" in str(caught.value)
    assert "acme-corp" in str(caught.value)
