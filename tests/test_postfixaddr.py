"""extrusion's listen forms rendered as Postfix writes them, and Postfix's compared with them."""

from __future__ import annotations

import pytest

from extrusion import sockspec
from extrusion.postfixaddr import (
    milter_address,
    milter_listener,
    parse,
    policy_address,
    policy_listener,
)

# (libmilter socket spec, Postfix's address for it)
MILTER_FORMS = [
    ("inet:8890@127.0.0.1", "inet:127.0.0.1:8890"),
    ("inet:8890@[127.0.0.1]", "inet:127.0.0.1:8890"),
    ("inet:8890", "inet:127.0.0.1:8890"),  # every interface: Postfix uses loopback
    ("inet:8890@0.0.0.0", "inet:127.0.0.1:8890"),
    ("inet:8890@192.0.2.7", "inet:192.0.2.7:8890"),
    ("inet:8890@localhost", "inet:localhost:8890"),
    ("inet6:8890@::1", "inet:[::1]:8890"),
    ("inet6:8890@0:0:0:0:0:0:0:1", "inet:[::1]:8890"),
    ("inet6:8890@[::1]", "inet:[::1]:8890"),
    ("inet6:8890", "inet:[::1]:8890"),  # was inet:127.0.0.1:8890 in `serve`'s copy
    ("inet6:8890@::", "inet:[::1]:8890"),
    ("inet6:8890@2001:db8::25", "inet:[2001:db8::25]:8890"),
    ("unix:/run/extrusion/milter.sock", "unix:/run/extrusion/milter.sock"),
    ("local:/run/extrusion/milter.sock", "unix:/run/extrusion/milter.sock"),
]

# (Twisted endpoint string, Postfix's address for it)
POLICY_FORMS = [
    ("tcp:10040:interface=127.0.0.1", "inet:127.0.0.1:10040"),
    ("tcp:10040", "inet:127.0.0.1:10040"),  # every interface: Postfix uses loopback
    ("tcp:10040:interface=0.0.0.0", "inet:127.0.0.1:10040"),
    ("tcp:port=10040:interface=127.0.0.1", "inet:127.0.0.1:10040"),
    ("tcp:10040:interface=192.0.2.7:backlog=100", "inet:192.0.2.7:10040"),
    # was inet:\:10040 in check-config's copy
    ("tcp6:10040:interface=\\:\\:1", "inet:[::1]:10040"),
    ("tcp6:10040", "inet:[::1]:10040"),
    ("tcp6:10040:interface=\\:\\:", "inet:[::1]:10040"),
    ("tcp6:10040:interface=2001\\:db8\\:\\:25", "inet:[2001:db8::25]:10040"),
    ("unix:/run/extrusion/policy.sock", "unix:/run/extrusion/policy.sock"),
    ("unix:/run/extrusion/policy.sock:mode=660:lockfile=1", "unix:/run/extrusion/policy.sock"),
    ("unix:address=/run/extrusion/policy.sock", "unix:/run/extrusion/policy.sock"),
]


@pytest.mark.parametrize(("spec", "postfix"), MILTER_FORMS)
def test_milter_socket_rendered_for_postfix(spec: str, postfix: str) -> None:
    assert milter_address(spec) == postfix


@pytest.mark.parametrize(("endpoint", "postfix"), POLICY_FORMS)
def test_policy_endpoint_rendered_for_postfix(endpoint: str, postfix: str) -> None:
    assert policy_address(endpoint) == postfix


@pytest.mark.parametrize(("spec", "postfix"), MILTER_FORMS)
def test_milter_reached_at_its_rendered_address(spec: str, postfix: str) -> None:
    assert milter_listener(spec).reached_by(postfix)
    assert str(parse(postfix)) == postfix  # Postfix's form survives a round trip


@pytest.mark.parametrize(("endpoint", "postfix"), POLICY_FORMS)
def test_policy_reached_at_its_rendered_address(endpoint: str, postfix: str) -> None:
    assert policy_listener(endpoint).reached_by(postfix)
    assert str(parse(postfix)) == postfix


@pytest.mark.parametrize(
    ("ours", "theirs", "reached"),
    [
        # loopback spellings
        ("tcp:10040:interface=127.0.0.1", "inet:localhost:10040", True),
        ("tcp:10040:interface=127.0.0.1", "inet:LOCALHOST:10040", True),
        ("tcp6:10040:interface=\\:\\:1", "inet:localhost:10040", True),
        ("tcp6:10040:interface=\\:\\:1", "inet:[0:0:0:0:0:0:0:1]:10040", True),
        # a listener on one loopback address is not reached on the other
        ("tcp:10040:interface=127.0.0.1", "inet:[::1]:10040", False),
        ("tcp6:10040:interface=\\:\\:1", "inet:127.0.0.1:10040", False),
        # every interface: IPv4 only for tcp:, both for tcp6: (dual stack)
        ("tcp:10040", "inet:127.0.0.1:10040", True),
        ("tcp:10040", "inet:localhost:10040", True),
        ("tcp:10040", "inet:[::1]:10040", False),
        ("tcp6:10040", "inet:127.0.0.1:10040", True),
        ("tcp6:10040", "inet:[::1]:10040", True),
        # other hosts, ports, kinds
        ("tcp:10040:interface=127.0.0.1", "inet:127.0.0.1:10041", False),
        ("tcp:10040:interface=127.0.0.1", "inet:192.0.2.1:10040", False),
        ("tcp:10040:interface=127.0.0.1", "unix:/run/p.sock", False),
        ("unix:/run/p.sock", "inet:127.0.0.1:10040", False),
        ("unix:/run/p.sock", "unix:/run/p.sock", True),
        ("unix:/run/p.sock", "unix:/run//p.sock", True),
        ("unix:/run/p.sock", "unix:/run/q.sock", False),
        # not Postfix addresses at all: no match, no exception
        ("tcp:10040:interface=127.0.0.1", "inet:::1:10040", False),
        ("tcp:10040:interface=127.0.0.1", "127.0.0.1:10040", False),
        ("tcp:10040:interface=127.0.0.1", "", False),
    ],
)
def test_postfix_address_compared_with_policy_listener(ours: str, theirs: str,
                                                       reached: bool) -> None:
    assert policy_listener(ours).reached_by(theirs) is reached


@pytest.mark.parametrize(
    ("ours", "theirs", "reached"),
    [
        ("inet:8890@127.0.0.1", "inet:localhost:8890", True),
        ("inet:8890@127.0.0.1", "inet:[127.0.0.1]:8890", True),
        ("inet6:8890@::1", "inet:[::1]:8890", True),
        ("inet6:8890@::1", "inet:127.0.0.1:8890", False),
        ("inet6:8890", "inet:127.0.0.1:8890", True),
        ("inet:8890", "inet:[::1]:8890", False),
        ("local:/run/m.sock", "unix:/run/m.sock", True),
        ("unix:/run/m.sock", "local:/run/m.sock", True),
    ],
)
def test_postfix_address_compared_with_milter_listener(ours: str, theirs: str,
                                                       reached: bool) -> None:
    assert milter_listener(ours).reached_by(theirs) is reached


@pytest.mark.parametrize(
    ("theirs", "queue_directory", "reached"),
    [
        # a chrooted smtpd sees the socket relative to the queue directory
        ("unix:/extrusion/milter.sock", "/var/spool/postfix", True),
        ("unix:/extrusion/milter.sock", "/var/spool/postfix/", True),
        ("unix:extrusion/milter.sock", "/var/spool/postfix", True),
        ("unix:/var/spool/postfix/extrusion/milter.sock", "/var/spool/postfix", True),
        ("unix:/extrusion/milter.sock", "", False),
        ("unix:/other/milter.sock", "/var/spool/postfix", False),
    ],
)
def test_unix_path_seen_from_the_queue_directory(theirs: str, queue_directory: str,
                                                 reached: bool) -> None:
    ours = milter_listener("unix:/var/spool/postfix/extrusion/milter.sock")
    assert ours.reached_by(theirs, queue_directory) is reached


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("inet:http@127.0.0.1", "bad port 'http'"),
        ("inet:0@127.0.0.1", "bad port '0'"),
        ("inet:70000@127.0.0.1", "bad port '70000'"),
        ("inet@127.0.0.1", "expected inet:PORT@HOST"),
        ("tcp:8890@127.0.0.1", "expected inet:PORT@HOST or unix:/path"),
        ("unix:", "no path after unix:"),
        ("inet:8890@::1", "::1 is not an IPv4 address"),
        ("inet6:8890@127.0.0.1", "127.0.0.1 is not an IPv6 address"),
        ("inet6:8890@0.0.0.0", "0.0.0.0 is not an IPv6 address"),
        ("inet:8890@bad host", "'bad host' is neither an address nor a host name"),
    ],
)
def test_bad_milter_socket_refused_with_the_reason(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match="milter socket") as info:
        milter_address(spec)
    assert message in str(info.value)
    assert repr(spec) in str(info.value)


@pytest.mark.parametrize(
    ("endpoint", "message"),
    [
        ("tcp:10040:interface=::1", "escape the colons"),
        ("tcp:10040:interface=\\:\\:1", "::1 is not an IPv4 address"),
        ("tcp6:10040:interface=127.0.0.1", "127.0.0.1 is not an IPv6 address"),
        ("tcp:policy", "bad port 'policy'"),
        ("tcp", "bad port ''"),
        ("tcp:10040:127.0.0.1", "give the address as interface=ADDR"),
        ("unix:", "no path after unix:"),
        ("ssl:10040:privateKey=k.pem", "plain TCP, not TLS"),
        ("systemd:domain=INET:index=0", "passed by systemd"),
        ("udp:10040", "expected tcp:PORT:interface=ADDR"),
        ("inet:10040@127.0.0.1", "expected tcp:PORT:interface=ADDR"),
    ],
)
def test_bad_policy_endpoint_refused_with_the_reason(endpoint: str, message: str) -> None:
    with pytest.raises(ValueError, match="policy endpoint") as info:
        policy_address(endpoint)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("inet:::1:8890", "an IPv6 host goes in brackets, inet:[::1]:8890"),
        ("inet:127.0.0.1", "expected inet:HOST:PORT"),
        ("inet:127.0.0.1:smtp", "expected inet:HOST:PORT"),
        ("tcp:127.0.0.1:8890", "expected inet:HOST:PORT, inet:[IPV6]:PORT or unix:/path"),
        ("unix:", "expected inet:HOST:PORT"),
    ],
)
def test_bad_postfix_address_refused_with_the_reason(address: str, message: str) -> None:
    with pytest.raises(ValueError, match="Postfix address") as info:
        parse(address)
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("spec", "parsed"),
    [
        ("inet:8890@127.0.0.1", sockspec.MilterSocket("inet", "127.0.0.1", 8890)),
        ("inet:8890", sockspec.MilterSocket("inet", "", 8890)),
        ("inet6:8890@[::1]", sockspec.MilterSocket("inet6", "::1", 8890)),
        ("local:/run/m.sock", sockspec.MilterSocket("unix", path="/run/m.sock")),
    ],
)
def test_sockspec_keeps_an_omitted_host_empty(spec: str,
                                              parsed: sockspec.MilterSocket) -> None:
    assert sockspec.parse(spec) == parsed
