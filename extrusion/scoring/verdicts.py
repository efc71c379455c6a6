"""Spam filters' verdicts, read from the headers they add (SpamAssassin and rspamd).

Only the few headers the milter keeps reach here (`milter/constants.py`
HEADER_FIELDS), each already cut to a bounded length; the parsing looks at
the head of a value only and never raises on wire text.

- SpamAssassin: `X-Spam-Flag: YES`, `X-Spam-Status: Yes, score=7.1 required=5.0 …`.
- rspamd (milter_headers module): `X-Spam: Yes`, `X-Spam-Status: Yes, score=15.20`,
  `X-Rspamd-Action: reject | add header | rewrite subject`, and
  `X-Spamd-Result: default: True [15.20 / 15.00]; SYMBOL(1.00)[…]; …`.
"""

from __future__ import annotations

import re

from extrusion.scoring.events import Headers

# rspamd's actions that mean "this is spam"; greylist, soft reject and no action do not.
RSPAMD_SPAM_ACTIONS = frozenset({"reject", "add header", "rewrite subject"})
MAX_VERDICT_CHARS = 120  # of a header value looked at: the verdict is at its head

_YES = re.compile(r"\s*yes\b", re.IGNORECASE)
# "default: True [15.20 / 15.00]": the metric's verdict, then score / required score.
_SPAMD_RESULT = re.compile(
    r"\s*[\w-]{1,40}\s*:\s*(true|false)\b\s*(?:\[\s*(-?\d{1,6}(?:\.\d{1,4})?)\s*/\s*"
    r"(-?\d{1,6}(?:\.\d{1,4})?)\s*\])?", re.IGNORECASE)


def _says_yes(value: str) -> bool:
    return bool(value) and _YES.match(value[:MAX_VERDICT_CHARS]) is not None


def rspamd_result(value: str) -> bool:
    """X-Spamd-Result: the metric's own True/False, or its score reaching the required."""
    m = _SPAMD_RESULT.match(value[:MAX_VERDICT_CHARS]) if value else None
    if m is None:
        return False
    if m.group(1).lower() == "true":
        return True
    score, required = m.group(2), m.group(3)
    return score is not None and required is not None and float(score) >= float(required)


def rspamd_action(value: str) -> bool:
    """X-Rspamd-Action names one of the actions taken on spam."""
    action = " ".join(value[:MAX_VERDICT_CHARS].split()).lower()
    return action in RSPAMD_SPAM_ACTIONS


def spam_verdict(headers: Headers) -> bool:
    """Whether any spam filter upstream said spam, by any of the headers above."""
    return (
        _says_yes(headers.x_spam_flag)
        or _says_yes(headers.x_spam_status)
        or _says_yes(headers.x_spam)
        or rspamd_action(headers.x_rspamd_action)
        or rspamd_result(headers.x_spamd_result)
    )
