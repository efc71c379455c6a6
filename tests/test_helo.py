"""HELO anomalies: the worm's tells, and the honest clients that must not be flagged.

The true positives are the talk's own examples (`lrhnow.usa.net` with MAIL
FROM `kwntefsqhi@usa.net`, `lkrw.hotmail.com`, `pshw.netscape.net`,
`zmgp.cs.com`); the false-positive side is how real MUAs, business servers
and the big providers' outbound hosts introduce themselves.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from extrusion.scoring import helo as h
from extrusion.scoring.helo import (
    HeloFinding,
    address_domain,
    helo_anomalies,
    registered_domain,
    safe_text,
)
from extrusion.scoring.providers import provider_family

DSL = "198.51.100.5"
DSL_NAME = "host-198-51-100-5.dsl.isp.example"
OWN = ("isp.example",)


def kinds(findings: list[HeloFinding]) -> set[str]:
    return {f.kind for f in findings}


# --- true positives --------------------------------------------------------------------------

WORMS = [
    # (id, helo, envelope_from, expected kinds) -- from a customer's DSL line
    ("usa-net", "lrhnow.usa.net", "kwntefsqhi@usa.net", {h.PROVIDER_NAME, h.SENDER_DOMAIN}),
    ("hotmail", "lkrw.hotmail.com", "zmjkuzzs@hotmail.com", {h.PROVIDER_NAME, h.SENDER_DOMAIN}),
    ("netscape", "pshw.netscape.net", "dscceljzmy@netscape.net",
     {h.PROVIDER_NAME, h.SENDER_DOMAIN}),
    ("compuserve", "zmgp.cs.com", "wmqjympdr@cs.com", {h.PROVIDER_NAME, h.SENDER_DOMAIN}),
    ("gmail-bare", "gmail.com", "x7f3@gmail.com", {h.PROVIDER_NAME, h.SENDER_DOMAIN}),
    ("yahoo-tw", "yahoo.com.tw", "0939155631@yahoo.com.tw", {h.PROVIDER_NAME, h.SENDER_DOMAIN}),
    ("aol-de", "mx.aol.de", "bob@customer.example", {h.PROVIDER_NAME}),
    ("outlook-with-other-sender", "outlook.com", "bob@customer.example", {h.PROVIDER_NAME}),
    ("bare-sender-domain", "customer.example", "bob@customer.example", {h.SENDER_DOMAIN}),
    ("bare-idn-sender-domain", "Bücher.example", "info@bücher.example", {h.SENDER_DOMAIN}),
    ("own-smarthost-name", "smtp.isp.example", "bob@customer.example", {h.OWN_NAME}),
    ("own-bare-domain", "ISP.EXAMPLE", "bob@customer.example", {h.OWN_NAME}),
]


@pytest.mark.parametrize(
    ("helo", "envelope_from", "expected"),
    [pytest.param(helo, frm, exp, id=i) for i, helo, frm, exp in WORMS],
)
def test_worm_helos(helo: str, envelope_from: str, expected: set[str]) -> None:
    found = helo_anomalies([helo], DSL, DSL_NAME, envelope_from, ["ken@example1.test"], OWN)
    assert kinds(found) == expected
    assert all(f.helo == helo for f in found)


def test_a_provider_name_from_a_client_without_rdns() -> None:
    found = helo_anomalies(["lkrw.hotmail.com"], DSL, "unknown", "zmjkuzzs@hotmail.com")
    assert kinds(found) == {h.PROVIDER_NAME, h.SENDER_DOMAIN}
    assert "without a name" in found[0].detail


def test_recipient_domain() -> None:
    found = helo_anomalies(
        ["bigcorp.example"], DSL, DSL_NAME, "x@other.example", ["ceo@bigcorp.example"]
    )
    assert kinds(found) == {h.RECIPIENT_DOMAIN}


def test_recipient_domain_under_a_host_label() -> None:
    found = helo_anomalies(
        ["mx.bigcorp.example"],
        DSL,
        DSL_NAME,
        "x@other.example",
        ["a@x.test", "ceo@bigcorp.example"],
    )
    assert kinds(found) == {h.RECIPIENT_DOMAIN}


@pytest.mark.parametrize("helo", ["[203.0.113.7]", "203.0.113.7"])
def test_an_address_that_is_not_the_clients(helo: str) -> None:
    found = helo_anomalies([helo], DSL, DSL_NAME)
    assert kinds(found) == {h.IP_MISMATCH}
    assert "203.0.113.7" in found[0].detail and DSL in found[0].detail


def test_an_ipv6_literal_that_is_not_the_clients() -> None:
    found = helo_anomalies(["[IPv6:2001:db8::99]"], "2001:db8::5", "")
    assert kinds(found) == {h.IP_MISMATCH}


@pytest.mark.parametrize(
    ("helo", "detail"),
    [("JOHNS-PC", "has no dot"), ("localhost", "has no dot"), ("", "empty HELO")],
)
def test_no_dot(helo: str, detail: str) -> None:
    found = helo_anomalies([helo], DSL, DSL_NAME)
    assert kinds(found) == {h.NO_DOT}
    assert detail in found[0].detail


def test_several_different_helos_in_one_session() -> None:
    found = helo_anomalies(["mail.customer.example", "relay.other.example"], DSL, DSL_NAME)
    assert kinds(found) == {h.MULTIPLE}
    assert found[-1].detail.startswith("2 different HELOs")


def test_many_helos_are_bounded_but_all_counted() -> None:
    helos = [f"host{i}.spam.example" for i in range(1000)]
    found = helo_anomalies(helos, DSL, DSL_NAME)
    multiple = [f for f in found if f.kind == h.MULTIPLE]
    assert len(multiple) == 1
    assert multiple[0].detail.startswith("1000 different HELOs")
    assert "and 995 more" in multiple[0].detail


def test_findings_keep_the_order_the_helos_came_in() -> None:
    found = helo_anomalies(["JOHNS-PC", "lkrw.hotmail.com"], DSL, DSL_NAME)
    assert [f.kind for f in found] == [h.NO_DOT, h.PROVIDER_NAME, h.MULTIPLE]


# --- false positives: honest clients say nothing suspicious ----------------------------------

HONEST = [
    # (id, helos, client_addr, client_name, envelope_from, recipients)
    ("own-rdns-name", ["mail.customer.example"], DSL, "mail.customer.example",
     "bob@customer.example", ["alice@gmail.com"]),
    ("own-rdns-name-any-case", ["Mail.Customer.Example."], DSL, "mail.customer.example.",
     "bob@customer.example", ["alice@gmail.com"]),
    ("customer-fqdn-from-dsl", ["mail.customer.example"], DSL, DSL_NAME,
     "bob@customer.example", ["alice@gmail.com"]),
    ("customer-fqdn-to-colleague", ["mail.customer.example"], DSL, DSL_NAME,
     "bob@customer.example", ["alice@customer.example"]),
    ("windows-ad-workstation", ["reception.customer.example"], DSL, DSL_NAME,
     "bob@customer.example", ["alice@customer.example", "jo@yahoo.co.uk"]),
    ("customer-fqdn-without-rdns", ["mail.customer.example"], DSL, "",
     "bob@customer.example", ["alice@gmail.com"]),
    ("host-named-as-its-sender-domain", ["backup.customer.example"], DSL, DSL_NAME,
     "root@backup.customer.example", ["admin@customer.example"]),
    ("thunderbird-behind-nat", ["[192.168.1.10]"], DSL, DSL_NAME,
     "bob@customer.example", ["alice@gmail.com"]),
    ("behind-cgnat", ["[100.64.12.7]"], DSL, DSL_NAME, "bob@customer.example", []),
    ("loopback-literal", ["[127.0.0.1]"], DSL, DSL_NAME, "bob@customer.example", []),
    ("own-address-literal", ["[198.51.100.5]"], DSL, DSL_NAME, "bob@customer.example", []),
    ("own-address-bare", ["198.51.100.5"], DSL, DSL_NAME, "bob@customer.example", []),
    ("own-ipv6-literal", ["[IPv6:2001:DB8:0:0::5]"], "2001:db8::5", "", "bob@customer.example",
     []),
    ("ipv4-mapped-client", ["[198.51.100.5]"], "::ffff:198.51.100.5", "", "bob@customer.example",
     []),
    ("ehlo-again-after-starttls", ["mail.customer.example", "MAIL.customer.example."], DSL,
     DSL_NAME, "bob@customer.example", []),
    ("gmail-outbound", ["mail-wr1-f54.google.com"], "209.85.221.54", "mail-wr1-f54.google.com",
     "someone@gmail.com", ["jo@isp.example"]),
    ("gmail-outbound-rdns-differs", ["mail-ej1-f41.google.com"], "209.85.218.41",
     "mail-ej1-f41.google.com.", "someone@googlemail.com", ["jo@isp.example"]),
    ("outlook-com-outbound", ["EUR05-AM6-obe.outbound.protection.outlook.com"], "40.92.1.1",
     "mail-am6eur05olkn2101.outbound.protection.outlook.com", "someone@hotmail.com",
     ["jo@isp.example"]),
    ("yahoo-uk-outbound", ["sonic301-2.consmr.mail.ir2.yahoo.com"], "77.238.176.1",
     "sonic301-2.consmr.mail.ir2.yahoo.com", "someone@yahoo.co.uk", ["jo@isp.example"]),
    ("aol-outbound-cs-com-sender", ["sonic.mx.aol.com"], "66.163.1.1", "sonic.mx.aol.com",
     "someone@cs.com", ["jo@isp.example"]),
    ("gmx-outbound", ["mout.gmx.net"], "212.227.15.1", "mout.gmx.net", "someone@gmx.de",
     ["jo@isp.example"]),
    ("isp-own-server-own-name", ["webmail.isp.example"], "192.0.2.10", "webmail.isp.example",
     "someone@isp.example", []),
    ("null-sender", ["mail.customer.example"], DSL, DSL_NAME, "", ["alice@gmail.com"]),
    ("no-session-data", ["mail.customer.example"], "", "", "", []),
    ("idn-customer-domain", ["mail.bücher.example"], DSL, DSL_NAME, "info@bücher.example", []),
]


@pytest.mark.parametrize(
    ("helos", "addr", "name", "envelope_from", "recipients"),
    [pytest.param(*row[1:], id=row[0]) for row in HONEST],
)
def test_honest_clients_give_no_finding(
    helos: list[str], addr: str, name: str, envelope_from: str, recipients: list[str]
) -> None:
    assert helo_anomalies(helos, addr, name, envelope_from, recipients, OWN) == []


def test_mx_mode_sender_at_a_provider_is_judged_by_the_client_family() -> None:
    # Hotmail's mail comes from outlook.com hosts: same operator, no finding ...
    honest = helo_anomalies(
        ["x.outbound.protection.outlook.com"], "40.92.1.1", "y.outbound.protection.outlook.com",
        "someone@hotmail.com",
    )
    assert honest == []
    # ... but a hotmail.com HELO from a DSL line is the worm's tell.
    assert kinds(helo_anomalies(["x.hotmail.com"], DSL, DSL_NAME, "someone@hotmail.com")) == {
        h.PROVIDER_NAME,
        h.SENDER_DOMAIN,
    }


def test_recipient_domain_is_not_flagged_for_the_senders_own_domain() -> None:
    found = helo_anomalies(
        ["customer.example"], DSL, DSL_NAME, "bob@customer.example", ["alice@customer.example"]
    )
    assert kinds(found) == {h.SENDER_DOMAIN}  # the bare domain; not also RECIPIENT_DOMAIN


# --- hostile input -------------------------------------------------------------------------------


def test_control_characters_are_escaped() -> None:
    found = helo_anomalies(["evil\x00.example\r\nMAIL FROM:<x>"], DSL, DSL_NAME)
    assert h.MALFORMED in kinds(found)
    malformed = next(f for f in found if f.kind == h.MALFORMED)
    assert malformed.helo == "evil\\x00.example\\x0d\\x0aMAIL FROM:<x>"
    assert all(c.isprintable() for f in found for c in f.helo + f.detail)


def test_a_ten_kilobyte_helo() -> None:
    found = helo_anomalies(["a" * 5000 + "." + "b" * 5000], DSL, DSL_NAME)
    assert kinds(found) == {h.MALFORMED}
    assert "10001 characters" in found[0].detail
    assert len(found[0].helo) <= h.SAFE_TEXT_LIMIT + len(h.TRUNCATION_MARK)


def test_undecodable_bytes_are_shown_as_hex() -> None:
    raw = b"mail.\xff\xfe.example".decode("utf-8", "surrogateescape")
    found = helo_anomalies([raw], DSL, DSL_NAME)
    assert kinds(found) == {h.MALFORMED}
    assert found[0].helo == "mail.\\xff\\xfe.example"


def test_white_space_inside_a_helo() -> None:
    assert kinds(helo_anomalies(["mail example.com"], DSL, DSL_NAME)) == {h.MALFORMED}


def test_a_bare_string_is_one_helo_not_a_list_of_letters() -> None:
    assert kinds(helo_anomalies("lkrw.hotmail.com", DSL, DSL_NAME)) == {h.PROVIDER_NAME}


def test_hostile_session_data_is_survived() -> None:
    found = helo_anomalies(
        ["lkrw.hotmail.com"],
        "not an address\x00",
        "x" * 10000,
        "<@@@>" + "\udcff" * 100,
        ["\x00@\x00", "a@" + "b." * 3000 + "com", ""],
        ["", "\udcff", "co.uk"],
    )
    assert kinds(found) == {h.PROVIDER_NAME}


# Any text at all: control characters, surrogates (undecodable bytes), long strings.
printable_or_not = st.one_of(
    st.text(alphabet=st.characters(exclude_categories=()), max_size=300),
    st.binary(max_size=300).map(lambda b: b.decode("utf-8", "surrogateescape")),
    st.from_regex(r"[a-z0-9.\[\]:-]{1,40}", fullmatch=True),
)


@settings(max_examples=300, deadline=None)
@given(
    helos=st.lists(printable_or_not, max_size=6),
    client_addr=printable_or_not,
    client_name=printable_or_not,
    envelope_from=printable_or_not,
    recipients=st.lists(printable_or_not, max_size=4),
    own_domains=st.lists(printable_or_not, max_size=3),
)
def test_never_raises(
    helos: list[str],
    client_addr: str,
    client_name: str,
    envelope_from: str,
    recipients: list[str],
    own_domains: list[str],
) -> None:
    found = helo_anomalies(helos, client_addr, client_name, envelope_from, recipients, own_domains)
    for f in found:
        assert f.kind in h.KINDS
        assert all(c.isprintable() for c in f.helo + f.detail)
        assert len(f.helo) <= h.SAFE_TEXT_LIMIT + len(h.TRUNCATION_MARK)
        assert len(f.detail) <= h.SAFE_TEXT_LIMIT + len(h.TRUNCATION_MARK)


@settings(max_examples=200, deadline=None)
@given(
    label=st.from_regex(r"[a-z]{3,8}", fullmatch=True),
    provider=st.sampled_from(["hotmail.com", "usa.net", "netscape.net", "cs.com", "yahoo.fr"]),
)
def test_any_random_label_under_a_provider_is_flagged_from_a_dsl_line(
    label: str, provider: str
) -> None:
    helo = f"{label}.{provider}"
    found = helo_anomalies([helo], DSL, DSL_NAME, f"{label}@{provider}")
    assert {h.PROVIDER_NAME, h.SENDER_DOMAIN} <= kinds(found)


# --- helpers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("lrhnow.usa.net", "usa.net"),
        ("mail.yahoo.co.uk", "yahoo.co.uk"),
        ("A.B.Example.COM.", "example.com"),
        ("mail.bücher.example", "xn--bcher-kva.example"),
        ("co.uk", None),
        ("localhost", None),
        ("192.0.2.1", None),
        ("[192.0.2.1]", None),
        ("a..b.com", None),
        ("x" * 300 + ".com", None),
        ("", None),
        ("mail example.com", None),
    ],
)
def test_registered_domain(name: str, expected: str | None) -> None:
    assert registered_domain(name) == expected


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("<Jo@Example.COM>", "example.com"),
        ("jo@example.com.", "example.com"),
        ("a@b@c.example", "c.example"),
        ("", ""),
        ("<>", ""),
        ("postmaster", ""),
    ],
)
def test_address_domain(address: str, expected: str) -> None:
    assert address_domain(address) == expected


@pytest.mark.parametrize(
    ("domain", "family"),
    [
        ("hotmail.com", "microsoft"),
        ("hotmail.co.jp", "microsoft"),
        ("outlook.com", "microsoft"),
        ("yahoo.com.tw", "yahoo"),
        ("netscape.net", "aol"),
        ("cs.com", "aol"),
        ("aol.de", "aol"),
        ("gmx.at", "united-internet"),
        ("usa.net", "usa.net"),
        ("Gmail.COM.", "google"),
        ("live.example", None),
        ("customer.example", None),
        ("yahoo", None),
    ],
)
def test_provider_family(domain: str, family: str | None) -> None:
    assert provider_family(domain) == family


@pytest.mark.parametrize(
    ("raw", "limit", "expected"),
    [
        ("plain text", 200, "plain text"),
        ("tab\there", 200, "tab\\x09here"),
        ("back\\slash", 200, "back\\\\slash"),
        ("bidi\u202eoverride", 200, "bidi\\u202eoverride"),
        ("Büro-PC", 200, "Büro-PC"),
        ("\U000e0001tag", 200, "\\U000e0001tag"),
        ("abcdef", 3, "abc..."),
        ("ab\x00cd", 4, "ab..."),  # an escape is never cut in half
        (b"caf\xc3\xa9 \xff", 200, "café \\xff"),
    ],
)
def test_safe_text(raw: str | bytes, limit: int, expected: str) -> None:
    assert safe_text(raw, limit) == expected


def test_safe_text_rejects_a_useless_limit() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        safe_text("x", 0)


def test_safe_text_stops_at_the_limit_on_huge_input() -> None:
    assert safe_text("\x00" * 10_000_000, 8) == "\\x00\\x00..."


@settings(max_examples=300, deadline=None)
@given(raw=printable_or_not)
def test_safe_text_is_printable_and_bounded(raw: str) -> None:
    out = safe_text(raw, 50)
    assert all(c.isprintable() for c in out)
    assert len(out) <= 50 + len(h.TRUNCATION_MARK)
