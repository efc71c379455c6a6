"""Postfix lines beyond the reference table: cut lines, and which programs reach the parser.

Every kind of line the feed reads, and the ones it must not, is a row of
tests/data/maillog/postfix-3.7.jsonl (tests/test_maillog_reference.py)."""

from __future__ import annotations

import pytest

from extrusion.maillog import postfix
from extrusion.maillog.programs import choose_parser as _choose_parser

SENT = ("3F2A1B0C9D: to=<bob@example.org>, relay=mx1.example.org[198.51.100.7]:25, delay=1.2, "
        "delays=0.1/0.01/0.5/0.6, dsn=2.0.0, status=sent (250 2.0.0 Ok: queued as 4Bx9)")


# --- cut and garbled lines -------------------------------------------------------------------


@pytest.mark.parametrize("cut", [20, 60, 120, len(SENT) - 10])
def test_delivery_cut_in_half_is_garbled_not_misread(cut: int) -> None:
    assert postfix.parse("smtp", SENT[:cut]) is None


# --- service names ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "program",
    ["postfix/smtp", "postfix-out/smtp", "postfix/relay/smtp", "mta2/smtp", "postfix/amavis/smtp"],
)
def test_multi_instance_and_custom_syslog_names_reach_the_postfix_parser(program: str) -> None:
    parser = _choose_parser(program, "auto")
    assert parser is not None
    assert parser(SENT) is not None and len(parser(SENT) or ()) == 1


def test_postfix_sendmail_command_is_not_taken_for_sendmail() -> None:
    parser = _choose_parser("postfix/sendmail", "auto")
    assert parser is not None
    assert parser("fatal: usage: sendmail [options]") == ()


def test_programs_of_other_daemons_have_no_parser() -> None:
    assert _choose_parser("CRON", "auto") is None
    assert _choose_parser("dovecot", "auto") is None
    assert _choose_parser("postfix/smtp", "sendmail") is None
