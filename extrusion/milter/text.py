"""Turn whatever an SMTP client sent into bounded, printable text that is safe to record.

pymilter hands envelope and header values over as `str` decoded with
`surrogateescape` (undecodable bytes become U+DC80..U+DCFF), macro values as
`str`, and a macro it cannot decode only as the raw bytes inside the
`UnicodeDecodeError`. `clean()` accepts all of these, escapes control
characters and undecodable bytes, and stops at a bound (so a 10 kB HELO
costs no more than a short one), marking a cut with "...".
"""

from __future__ import annotations

from extrusion.scoring.helo import safe_text


def clean(value: str | bytes | None, limit: int) -> str:
    """At most `limit` characters of escaped text (then "..." if cut); never raises."""
    if value is None:
        return ""
    if isinstance(value, str) and len(value) <= limit and value.isprintable() and "\\" not in value:
        return value  # what safe_text would return, without its per-character loop
    return safe_text(value, limit)


def reply_text(value: str, limit: int) -> str:
    """Text for an SMTP reply: printable ASCII on one line, no `%` (a format to libmilter)."""
    out = "".join(c if " " <= c <= "~" and c != "%" else "?" for c in value[:limit])
    return out.strip() or "-"
