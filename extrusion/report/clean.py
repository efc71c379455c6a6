"""Make strings that came off the wire safe to print, mail, store in JSON and put in HTML.

HELO names, addresses and remote replies are chosen by whoever connects, so a
report must never let one of them forge a line ("\\n!!! victim@example"),
drive a terminal (escape sequences), reorder text (bidi overrides), break
UTF-8 encoding (lone surrogates from `surrogateescape` decoding) or flood the
page (10 kB HELOs). `clean()` keeps every printable character and writes the
rest as visible Python-style escapes, so the evidence stays readable and
nothing is silently dropped. HTML escaping comes on top, in the HTML renderer.
"""

from __future__ import annotations

from collections.abc import Mapping

# Longer strings are cut: HELO names and addresses are at most a few hundred
# characters in RFC 5321 (domain 255, local part 64); anything longer is noise
# or an attack, and the count of cut characters is kept as evidence.
MAX_CHARS = 512

_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\"}
# surrogateescape maps an undecodable byte 0xNN to U+DCNN.
_SURROGATE_ESCAPE_LOW = 0xDC80
_SURROGATE_ESCAPE_HIGH = 0xDCFF


def _escape_char(ch: str) -> str:
    if ch in _NAMED:
        return _NAMED[ch]
    code = ord(ch)
    if _SURROGATE_ESCAPE_LOW <= code <= _SURROGATE_ESCAPE_HIGH:
        return f"\\x{code - 0xDC00:02x}"  # the original byte
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


def clean(value: str, limit: int = MAX_CHARS) -> str:
    """`value` with non-printable characters escaped and cut to about `limit` characters.

    Idempotent only in the sense that the output is always printable; a
    backslash is doubled so that an escape in the output is never ambiguous.
    """
    if value.isprintable() and "\\" not in value:
        if len(value) <= limit:
            return value
        return _cut(value, limit)
    out = "".join(ch if ch.isprintable() and ch != "\\" else _escape_char(ch) for ch in value)
    return out if len(out) <= limit else _cut(out, limit)


def _cut(value: str, limit: int) -> str:
    return f"{value[:limit]}…[{len(value) - limit} more chars]"


def clean_evidence(value: object) -> object:
    """Evidence values (str, numbers, lists, mappings) with every string cleaned."""
    if isinstance(value, str):
        return clean(value)
    if isinstance(value, bool | int | float) or value is None:
        return value
    if isinstance(value, Mapping):
        return {clean(str(k)): clean_evidence(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = sorted(value, key=str) if isinstance(value, set | frozenset) else value
        return [clean_evidence(v) for v in items]
    return clean(str(value))


def decode_wire(raw: bytes) -> str:
    """Bytes from a log or SMTP session as text, undecodable bytes kept as surrogates."""
    return raw.decode("utf-8", "surrogateescape")
