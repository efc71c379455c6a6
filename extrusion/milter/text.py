"""Turn whatever an SMTP client sent into bounded, printable text that is safe to record.

pymilter hands envelope and header values over as `str` decoded with
`surrogateescape` (undecodable bytes become U+DC80..U+DCFF), macro values as
`str`, and a macro it cannot decode only as the raw bytes inside the
`UnicodeDecodeError`. `clean()` accepts all of these, cuts the value to a
bound *before* escaping (so a 10 kB HELO costs at most the bound), and
escapes control characters and undecodable bytes.
"""

from __future__ import annotations


# Stand-in for extrusion.scoring.helo.safe_text until that lands.
def safe_text(value: str) -> str:
    """Escape everything but printable characters (backslash too, so the escaping is reversible)."""
    out = []
    for c in value:
        if c == "\\":
            out.append("\\\\")
        elif "\udc80" <= c <= "\udcff":  # an undecodable byte kept by surrogateescape
            out.append(f"\\x{ord(c) - 0xDC00:02x}")
        elif c.isprintable():
            out.append(c)
        elif ord(c) < 0x100:
            out.append(f"\\x{ord(c):02x}")
        else:
            out.append(f"\\u{ord(c):04x}")
    return "".join(out)


def clean(value: str | bytes | None, limit: int) -> str:
    """Printable text of at most about `limit` input characters; never raises."""
    if value is None:
        return ""
    if isinstance(value, bytes):
        value = value.decode("utf-8", "surrogateescape")
    return safe_text(value[:limit])


def reply_text(value: str, limit: int) -> str:
    """Text for an SMTP reply: printable ASCII on one line, no `%` (a format to libmilter)."""
    out = "".join(c if " " <= c <= "~" and c != "%" else "?" for c in value[:limit])
    return out.strip() or "-"
