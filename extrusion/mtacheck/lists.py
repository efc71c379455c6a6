"""Postfix restriction and milter lists as entries, `{ address, option=value }` groups kept
together (`check_policy_service { inet:127.0.0.1:10040, timeout=10s }`)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Entry:
    """One element of a restriction or milter list; `args` from `{ a, k=v }` groups."""

    name: str
    target: str = ""
    options: Mapping[str, str] = field(default_factory=dict)

    @property
    def address(self) -> str:
        """The service address: a check's argument, or the entry itself in a milter list."""
        return self.target or self.name


def _tokens(value: str) -> list[str | list[str]]:
    """Split a Postfix list on commas/space, keeping `{ ... }` groups together."""
    out: list[str | list[str]] = []
    i = 0
    while i < len(value):
        c = value[i]
        if c in ", \t\n":
            i += 1
        elif c == "{":
            end = value.find("}", i)
            end = len(value) if end < 0 else end
            inner = [p.strip() for p in value[i + 1:end].split(",") if p.strip()]
            out.append(inner)
            i = end + 1
        else:
            m = re.match(r"[^,\s{]+", value[i:])
            assert m is not None
            out.append(m.group(0))
            i += len(m.group(0))
    return out


_TAKES_ARGUMENT = frozenset({"check_policy_service"})


def parse_list(value: str) -> list[Entry]:
    """A restriction list as entries; check_policy_service carries its target and options."""
    toks = _tokens(value)
    entries: list[Entry] = []
    i = 0
    while i < len(toks):
        tok = toks[i]
        if isinstance(tok, list):  # a bare { addr, opts } group, as in smtpd_milters
            entries.append(_group_entry("", tok))
            i += 1
            continue
        if tok in _TAKES_ARGUMENT and i + 1 < len(toks):
            arg = toks[i + 1]
            entries.append(_group_entry(tok, arg) if isinstance(arg, list)
                           else Entry(tok, arg))
            i += 2
            continue
        entries.append(Entry(tok))
        i += 1
    return entries


def _group_entry(name: str, group: list[str]) -> Entry:
    target = group[0] if group else ""
    options = {}
    for part in group[1:]:
        k, _, v = part.partition("=")
        options[k.strip()] = v.strip()
    return Entry(name or target, target, options)
