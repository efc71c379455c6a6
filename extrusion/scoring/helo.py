"""HELO anomalies: how a client introduced itself, judged against who it is.

Virus authors don't know how to say HELO. Mass-mailing worms announce a big
provider's name or the domain they forge in MAIL FROM (`lrhnow.usa.net`
with `kwntefsqhi@usa.net`), the ISP's own name, the recipient's domain, an
IP literal that is not theirs, or a bare word; spam bots send several HELOs
in one session. A legitimate client says its own name, its own address, a
proper host name in its customer's domain, or (behind NAT) its LAN address,
and none of these give a finding.

Everything here is pure and never raises: HELO arguments are whatever a
client sent (control characters, 10 kB, undecodable bytes), and findings
carry them escaped and cut to length by `safe_text()`.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from extrusion.scoring.domains import (
    IPAddress,
    host_name,
    normalise_name,
    parse_literal,
    same_operator,
)

# Re-exported: the milter, forwarding and the sender views take them from here.
from extrusion.scoring.domains import address_domain as address_domain
from extrusion.scoring.domains import is_lan_address as is_lan_address
from extrusion.scoring.domains import registered_domain as registered_domain
from extrusion.scoring.providers import provider_family

# --- finding kinds ------------------------------------------------------------------------------
NO_DOT = "helo_no_dot"  # a bare word ("JOHNS-PC", "localhost") or nothing at all
IP_MISMATCH = "helo_ip_mismatch"  # an address literal, public, and not the client's
OWN_NAME = "helo_own_name"  # the ISP's own domain, from a client that is not that host
PROVIDER_NAME = "helo_provider_name"  # a big provider's name, from a client that is not theirs
SENDER_DOMAIN = "helo_sender_domain"  # the MAIL FROM domain, to mislead
RECIPIENT_DOMAIN = "helo_recipient_domain"  # the RCPT TO domain
MULTIPLE = "helo_multiple"  # several different HELOs in one session
MALFORMED = "helo_malformed"  # control characters, white space, longer than a domain can be

KINDS: tuple[str, ...] = (
    NO_DOT,
    IP_MISMATCH,
    OWN_NAME,
    PROVIDER_NAME,
    SENDER_DOMAIN,
    RECIPIENT_DOMAIN,
    MULTIPLE,
    MALFORMED,
)

# --- bounds -------------------------------------------------------------------------------------
SAFE_TEXT_LIMIT = 200  # characters of escaped text in a finding or a log line
TRUNCATION_MARK = "..."
MAX_DOMAIN_LENGTH = 255  # RFC 5321 4.5.3.1.2: longest domain an SMTP client may send
MAX_HELOS_CHECKED = 16  # distinct HELOs judged one by one; the rest only count for MULTIPLE
MAX_RECIPIENTS_CHECKED = 100  # distinct recipient domains compared with a HELO
MAX_NAMES_IN_DETAIL = 5
_PART = 60  # characters of one untrusted value quoted inside a detail

_NO_NAME = frozenset({"", "unknown"})  # Postfix says "unknown" when the client has no rDNS


@dataclass(frozen=True)
class HeloFinding:
    """One anomaly; `helo` and `detail` are escaped and length-capped, safe to log."""

    kind: str
    helo: str
    detail: str


# --- safe text ----------------------------------------------------------------------------------


def _escape(c: str) -> str:
    if c == "\\":
        return "\\\\"  # so the escaping can be read back unambiguously
    if "\udc80" <= c <= "\udcff":  # an undecodable byte kept by surrogateescape
        return f"\\x{ord(c) - 0xDC00:02x}"
    if c.isprintable():
        return c
    code = ord(c)
    if code < 0x100:
        return f"\\x{code:02x}"
    if code < 0x10000:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def safe_text(s: str | bytes, limit: int = SAFE_TEXT_LIMIT) -> str:
    """`s` with control characters, non-printables and undecodable bytes escaped.

    At most `limit` characters of escaped text, then TRUNCATION_MARK if
    something was cut. Bytes are decoded as UTF-8 with undecodable bytes
    shown as \\xNN. Work stops at the limit, so a 10 MB value is as cheap as
    a short one. Raises ValueError only for a `limit` below 1.
    """
    if limit < 1:
        raise ValueError(f"safe_text limit must be at least 1, not {limit}")
    if isinstance(s, bytes):
        s = s[: limit * 4].decode("utf-8", "surrogateescape")
    out: list[str] = []
    used = 0
    for c in s:
        piece = _escape(c)
        used += len(piece)
        if used > limit:
            return "".join(out) + TRUNCATION_MARK
        out.append(piece)
    return "".join(out)


def _malformation(raw: str) -> str:
    """Why `raw` cannot be a HELO argument at all, or "" when it could be."""
    stripped = raw.strip()
    if len(stripped) > MAX_DOMAIN_LENGTH:
        return f"HELO is {len(stripped)} characters long"
    if stripped.isprintable() and " " not in stripped:
        return ""
    if any(c.isspace() for c in stripped):
        return "HELO contains white space"
    return "HELO contains control or undecodable characters"


# --- the judgement ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Session:
    client_ip: IPAddress | None
    client_name: str
    client_rd: str | None
    from_domain: str
    from_rd: str | None
    recipient_rds: frozenset[str]
    own_rds: frozenset[str]
    confirmed: frozenset[str] = frozenset()


def _finding(kind: str, raw: str, detail: str) -> HeloFinding:
    return HeloFinding(kind=kind, helo=safe_text(raw), detail=safe_text(detail))


def _q(value: str) -> str:
    """An untrusted value cut short for quoting inside a detail (escaped later, once)."""
    return value if len(value) <= _PART else value[:_PART] + TRUNCATION_MARK


def _judge_one(raw: str, s: _Session) -> list[HeloFinding]:
    found: list[HeloFinding] = []
    name = normalise_name(raw)
    shown = _q(raw.strip())
    malformation = _malformation(raw)
    if malformation:
        found.append(_finding(MALFORMED, raw, malformation))

    literal = parse_literal(raw)
    if literal is not None:
        # A LAN address is what a client behind NAT says; only a public address
        # that is not the client's own is a lie.
        if s.client_ip is not None and literal != s.client_ip and not is_lan_address(literal):
            detail = f"HELO address {literal} is not the client's {s.client_ip}"
            found.append(_finding(IP_MISMATCH, raw, detail))
        return found

    if "." not in name:
        what = f"HELO {shown} has no dot" if name else "empty HELO"
        found.append(_finding(NO_DOT, raw, what))
        return found

    if s.client_name and name == s.client_name:
        return found  # the client's own rDNS name: the most honest answer there is
    helo_rd = registered_domain(name)
    if helo_rd is not None:
        found.extend(_domain_findings(raw, name, helo_rd, s))
    return found


def _domain_findings(raw: str, name: str, helo_rd: str, s: _Session) -> list[HeloFinding]:
    """The findings for a HELO that is a name in the registered domain `helo_rd`."""
    found: list[HeloFinding] = []
    shown = _q(raw.strip())
    client = _q(s.client_name) or "without a name"

    if helo_rd in s.own_rds:
        found.append(_finding(OWN_NAME, raw, f"HELO {shown} is one of our names; client {client}"))

    family = provider_family(helo_rd)
    if family is not None and not same_operator(helo_rd, s.client_rd):
        found.append(
            _finding(PROVIDER_NAME, raw, f"HELO {shown} is a name of {family}; client {client}")
        )

    # The MAIL FROM domain: for a big provider any name under it is a lie from
    # a client outside that provider; for any other domain a proper host name
    # in it (mail.customer.example) is what the customer's server says, so only
    # the bare domain counts, and not even that from a small firm's own server:
    # one whose reverse name is in the domain, or the domain resolves to it
    # (`confirmed`, looked up by the milter). A bot cannot make either so.
    if (
        s.from_rd is not None
        and helo_rd == s.from_rd
        and not same_operator(s.client_rd, s.from_rd)
        and name not in s.confirmed
        and (provider_family(s.from_rd) is not None or host_name(name) == s.from_rd)
    ):
        found.append(
            _finding(
                SENDER_DOMAIN,
                raw,
                f"HELO {shown} matches MAIL FROM domain {_q(s.from_domain)}; client {client}",
            )
        )

    if (
        helo_rd in s.recipient_rds
        and not same_operator(helo_rd, s.from_rd)
        and not same_operator(helo_rd, s.client_rd)
    ):
        found.append(
            _finding(
                RECIPIENT_DOMAIN, raw, f"HELO {shown} matches a RCPT TO domain; client {client}"
            )
        )
    return found


def _distinct(helos: Iterable[str]) -> list[tuple[str, str]]:
    """(raw, normalised) for each different HELO, first spelling kept, in order."""
    seen: dict[str, str] = {}
    for raw in helos:
        if not isinstance(raw, str):
            continue
        seen.setdefault(normalise_name(raw), raw)
    return [(raw, name) for name, raw in seen.items()]


def _session(
    client_addr: str,
    client_name: str,
    envelope_from: str,
    recipients: Sequence[str],
    own_domains: Sequence[str],
    confirmed: Sequence[str] = (),
) -> _Session:
    name = normalise_name(client_name) if isinstance(client_name, str) else ""
    if name in _NO_NAME or _malformation(name):
        name = ""
    from_domain = address_domain(envelope_from) if isinstance(envelope_from, str) else ""
    recipient_rds: set[str] = set()
    for rcpt in list(recipients)[:MAX_RECIPIENTS_CHECKED]:
        rd = registered_domain(address_domain(rcpt)) if isinstance(rcpt, str) else None
        if rd is not None:
            recipient_rds.add(rd)
    own_rds = {
        registered_domain(d) or normalise_name(d) for d in own_domains if isinstance(d, str)
    }
    own_rds.discard("")
    return _Session(
        client_ip=parse_literal(client_addr) if isinstance(client_addr, str) else None,
        client_name=name,
        client_rd=registered_domain(name) if name else None,
        from_domain=from_domain,
        from_rd=registered_domain(from_domain) if from_domain else None,
        recipient_rds=frozenset(recipient_rds),
        own_rds=frozenset(own_rds),
        confirmed=frozenset(normalise_name(n) for n in confirmed if isinstance(n, str)),
    )


def helo_anomalies(
    helos: Sequence[str],
    client_addr: str,
    client_name: str = "",
    envelope_from: str = "",
    recipients: Sequence[str] = (),
    own_domains: Sequence[str] = (),
    confirmed: Sequence[str] = (),
) -> list[HeloFinding]:
    """Every anomaly in a session's HELO/EHLO arguments, in the order they were sent.

    One HELO may give several findings (`lrhnow.usa.net` with MAIL FROM
    `@usa.net` is both PROVIDER_NAME and SENDER_DOMAIN); MULTIPLE comes last.
    `client_name` is the verified rDNS name ("" or "unknown" when there is
    none); `own_domains` are the ISP's domains; `confirmed` are HELO names known
    to resolve to the client's address. Never raises.
    """
    if isinstance(helos, str):
        helos = (helos,)  # one HELO passed bare is still one HELO, not a list of letters
    session = _session(client_addr, client_name, envelope_from, recipients, own_domains,
                       confirmed)
    distinct = _distinct(helos)
    findings: list[HeloFinding] = []
    for raw, _name in distinct[:MAX_HELOS_CHECKED]:
        findings.extend(_judge_one(raw, session))

    named = [(raw, name) for raw, name in distinct if name]
    if len(named) > 1:
        shown = ", ".join(_q(raw.strip()) for raw, _name in named[:MAX_NAMES_IN_DETAIL])
        extra = len(named) - MAX_NAMES_IN_DETAIL
        more = f" and {extra} more" if extra > 0 else ""
        findings.append(
            _finding(MULTIPLE, named[0][0], f"{len(named)} different HELOs: {shown}{more}")
        )
    return findings
