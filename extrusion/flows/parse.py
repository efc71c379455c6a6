"""One line of the flow records extrusion follows, whichever collector wrote it.

pmacct's print plugin writes JSON lines (`records.parse_json`); a NetFlow shop's
`nfdump -q -o csv` writes CSV lines (`nfdump.parse_csv`). Kept apart from both so
neither format's module imports the other.
"""

from __future__ import annotations

from extrusion.flows.nfdump import parse_csv
from extrusion.flows.records import FlowRecord, parse_json

# The first words of nfdump's lines that are no record.
_NFDUMP_WORDS = ("ts,te,", "Summary", "flows,bytes,", "No matching flows")


def parse(line: str) -> FlowRecord | None:
    """A JSON line of pmacct's print plugin, or else a line of `nfdump -q -o csv`; None
    for a line of nfdump's that holds no record; `records.BadRecord` for a bad one."""
    head = line.lstrip()[:20]
    # nfdump's records start with their date, its other lines with known words.
    if head[:1].isdigit() or head.startswith(_NFDUMP_WORDS):
        return parse_csv(line)
    return parse_json(line)
