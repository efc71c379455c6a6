"""Reference log lines and what the parsers must make of them, one row per line.

tests/data/maillog/*.jsonl hold one JSON object per line (tests/data/maillog/README.md):
`line` as the MTA or syslog wrote it, `records` the parse — a list of records
by class name and the fields that differ from their defaults, [] for a line of
no interest, null for a relevant line too garbled to read. Each row goes the
feed's way: syslog header split off, the parser chosen by the program name.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from extrusion.maillog import records as recordsmod
from extrusion.maillog.lines import LineSplitter
from extrusion.maillog.programs import choose_parser as _choose_parser

from .maillog_helpers import REFERENCE

DATA = Path(__file__).parent / "data" / "maillog"
FILES = ("postfix-3.7.jsonl", "sendmail.jsonl", "exim.jsonl")
# What each file must show at least once: every record its MTA's parser makes.
KINDS = {
    "postfix-3.7.jsonl": {"ClientSeen", "MessageIdSeen", "Queued", "Delivery", "Expired",
                          "Rejected", "Held", "BounceNotice", "LocalSubmission", "Removed"},
    "sendmail.jsonl": {"Queued", "MessageIdSeen", "ClientSeen", "SaslSeen", "Delivery",
                       "BounceNotice", "Rejected"},
    "exim.jsonl": {"Queued", "ClientSeen", "MessageIdSeen", "Delivery", "Removed", "Rejected"},
}


@dataclass(frozen=True)
class Row:
    file: str
    number: int
    line: str
    records: list[dict[str, Any]] | None
    note: str

    @property
    def id(self) -> str:
        return f"{self.file}:{self.number}"


def rows(name: str) -> list[Row]:
    out = []
    for number, text in enumerate((DATA / name).read_text().splitlines(), 1):
        data = json.loads(text)
        out.append(Row(name, number, data["line"], data["records"], data.get("note", "")))
    return out


ALL = [row for name in FILES for row in rows(name)]


def record(fields: dict[str, Any]) -> object:
    fields = dict(fields)
    cls = getattr(recordsmod, fields.pop("record"))
    return cls(**fields)


@pytest.mark.parametrize("row", ALL, ids=[row.id for row in ALL])
def test_reference_line(row: Row) -> None:
    parts = LineSplitter(REFERENCE, None).parts(row.line)
    assert parts is not None, f"{row.id}: not a log line"
    _t, _host, program, _pid, message = parts
    parser = _choose_parser(program, "auto")
    assert parser is not None, f"{row.id}: no parser for {program!r}"
    expected = None if row.records is None else tuple(record(r) for r in row.records)
    assert parser(message) == expected, f"{row.id} ({row.note})"


@pytest.mark.parametrize("name", FILES)
def test_each_file_shows_every_record_its_parser_makes_and_both_failures(name: str) -> None:
    kinds = {r["record"] for row in rows(name) for r in row.records or ()}
    assert kinds == KINDS[name]
    assert any(row.records is None for row in rows(name))  # garbled
    assert any(row.records == [] for row in rows(name))  # of no interest


def test_the_postfix_file_holds_lines_of_the_real_postfix_3_7() -> None:
    real = [row for row in rows("postfix-3.7.jsonl") if " smarthost postfix/" in row.line]
    assert any("daemon started -- version 3.7." in row.line for row in real)
    statuses = {r.get("status") for row in real for r in row.records or ()}
    assert {"sent", "bounced", "deferred"} <= statuses
