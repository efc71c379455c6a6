"""The border's list: addresses held or blocked because they send mail directly.

`extrusion flows export` prints it (or writes it); the follower regenerates
`[flows] export_path` when it changes. Formats: "nft", an nftables file that
(re)fills a set for a `tcp dport 25 ip saddr @SET drop` rule, loaded with
`nft -f` by the operator, never by extrusion; "list", one address per line.
The operator's allow-list wins: [flows] allow_networks and allow_customers,
and [[overrides]] action = "allow", keep an address off the list.
"""

from __future__ import annotations

import ipaddress
import os
from pathlib import Path
from typing import Protocol

from extrusion.atomicfile import replace_file
from extrusion.config import Config
from extrusion.netaddr import networks, parse_ip, within
from extrusion.scoring.kinds import Kind
from extrusion.scoring.overrides import OverrideSet
from extrusion.scoring.rows import SenderRow

BORDER_STATES = ("held", "blocked")
IP_PREFIX = "ip:"


class SenderSource(Protocol):
    def senders(self, state: str | None = None) -> list[SenderRow]: ...


def addresses(store: SenderSource, config: Config) -> list[str]:
    """Addresses of held or blocked senders with a `direct_to_mx` finding, allow-list
    respected, IPv4 before IPv6, in address order."""
    f = config.flows
    allowed = [*networks(f.allow_networks)]
    allowed += [net for c in config.customers
                if c.name in f.allow_customers for net in networks(c.networks)]
    overrides = OverrideSet(config.overrides)
    found: set[ipaddress.IPv4Address | ipaddress.IPv6Address] = set()
    for state in BORDER_STATES:
        for row in store.senders(state):
            finding = row.findings.get(Kind.DIRECT_TO_MX)
            if not isinstance(finding, dict) or row.pinned == "allow":
                continue
            sources = [s for s in finding.get("sources", []) if isinstance(s, str)]
            if row.key.startswith(IP_PREFIX):
                sources.append(row.key[len(IP_PREFIX):])
            for text in sources:
                ip = parse_ip(text)
                if ip is None or within(ip, allowed):
                    continue
                o = overrides.match(row.key, str(ip)) if overrides else None
                if o is not None and o.action == "allow":
                    continue
                found.add(ip)
    return [str(ip) for ip in sorted(found, key=lambda ip: (ip.version, ip))]


def render(addrs: list[str], config: Config, fmt: str) -> str:
    if fmt == "list":
        return "".join(f"{a}\n" for a in addrs)
    f = config.flows
    v4 = [a for a in addrs if ":" not in a]
    v6 = [a for a in addrs if ":" in a]
    table = f.nft_table
    lines = [
        "# extrusion flows export: customer addresses held or blocked for sending mail",
        "# directly. Load with `nft -f`; a rule such as",
        f"#   tcp dport 25 ip saddr @{f.nft_set} drop",
        f"#   tcp dport 25 ip6 saddr @{f.nft_set}6 drop",
        "# in a forward chain of this table uses it.",
        f"table {table} {{",
        f"\tset {f.nft_set} {{ type ipv4_addr; }}",
        f"\tset {f.nft_set}6 {{ type ipv6_addr; }}",
        "}",
        # Flushed first: loading the file again leaves exactly the listed addresses.
        f"flush set {table} {f.nft_set}",
        f"flush set {table} {f.nft_set}6",
    ]
    if v4:
        lines.append(f"add element {table} {f.nft_set} {{ {', '.join(v4)} }}")
    if v6:
        lines.append(f"add element {table} {f.nft_set}6 {{ {', '.join(v6)} }}")
    return "\n".join(lines) + "\n"


def write_if_changed(path: str | os.PathLike[str], text: str) -> bool:
    """Replace the file atomically when its content differs; True when it did."""
    p = Path(path)
    try:
        if p.read_text(encoding="utf-8") == text:
            return False
    except FileNotFoundError:
        pass
    replace_file(p, text)
    return True
