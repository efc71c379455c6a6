"""A message's recipients packed into its row (scoring/packing.py): each recipient's last
outcome reads back as written, separators inside a field cannot split a line, and a
message to thousands of recipients makes a bounded row whose counts stay right."""

from __future__ import annotations

from extrusion.scoring.packing import RCPTS_CHARS, Lines, Recipient, recipients
from extrusion.scoring.rows import Batch, MessageRow, RecipientRow
from extrusion.scoring.store import Store

from .storeview import message_rows

T = 1_700_000_000.0


def test_each_recipient_reads_back_as_written() -> None:
    lines = Lines()
    for a in ("q@x", "s@x", "s2@x", "b@x", "d@x", "n@x"):
        lines.queued(a)
    lines.outcome("s@x", "sent", T + 1.5, "2.0.0", "delivered", "250 2.0.0 Ok: queued as X")
    lines.outcome("s2@x", "sent", T + 2, "2.6.0", "forwarded", "")
    lines.outcome("b@x", "bounced", T + 3.25, "5.1.1", "unknown_user", "550 no such user")
    lines.outcome("d@x", "deferred", T + 4, "4.4.1", "temporary", "451 try later")
    lines.outcome("n@x", "sent", T + 5, "", "", "")
    text, delivered, failed = lines.pack(T)
    assert (delivered, failed) == (3, 1)
    assert recipients(text, T) == [
        Recipient(T, "q@x", "queued", "", "", ""),
        # A delivery's remote reply is not kept; its usual DSN and class are implied.
        Recipient(T + 1.5, "s@x", "sent", "2.0.0", "delivered", ""),
        Recipient(T + 2, "s2@x", "sent", "2.6.0", "forwarded", ""),
        Recipient(T + 3.25, "b@x", "bounced", "5.1.1", "unknown_user", "550 no such user"),
        Recipient(T + 4, "d@x", "deferred", "4.4.1", "temporary", "451 try later"),
        Recipient(T + 5, "n@x", "sent", "", "", ""),
    ]
    assert "2.0.0" not in text.split("\n")[1]  # implied, not stored


def test_an_older_outcome_does_not_replace_a_newer_one() -> None:
    lines = Lines()
    lines.outcome("a@x", "bounced", T + 10, "5.1.1", "unknown_user", "550 no")
    lines.outcome("a@x", "deferred", T + 5, "4.4.1", "temporary", "451 later")  # read again
    lines.queued("a@x")  # the submission written after its outcome: no line of its own
    assert [(r.status, r.time) for r in recipients(lines.pack(T)[0], T)] == [
        ("bounced", T + 10)]


def test_tabs_and_newlines_inside_a_field_cannot_split_a_line() -> None:
    lines = Lines()
    lines.queued("a\tb@x")
    lines.outcome("c\n@x", "bounced", T + 1, "5.1.1\t", "unknown_user",
                  "550 no\r\n such\tuser")
    text, _, failed = lines.pack(T)
    assert failed == 1 and len(text.split("\n")) == 2
    assert [(r.recipient, r.dsn, r.reply) for r in recipients(text, T)] == [
        ("a b@x", "", ""), ("c @x", "5.1.1 ", "550 no   such user")]


def test_ten_thousand_recipients_make_a_bounded_row_that_counts_them_all(
        tmp_path: object) -> None:
    rcpts = [f"user{i:05d}@example.org" for i in range(10_000)]
    url = f"sqlite:///{tmp_path}/big.db"
    with Store(url) as store:
        b = Batch(message_rows=[MessageRow(T, "mx1", "BIG", "ip:192.0.2.66",
                                           rcpt_count=len(rcpts))])
        b.recipient_rows += [RecipientRow(T, "mx1", "BIG", "ip:192.0.2.66", r, "queued")
                             for r in rcpts]
        store.write_batch(b, 3600.0)
        # Outcomes in two later flushes: half delivered, then a quarter bounced.
        for status, part in (("sent", rcpts[::2]), ("bounced", rcpts[1::4])):
            store.write_batch(Batch(recipient_rows=[
                RecipientRow(T + 60, "mx1", "BIG", "ip:192.0.2.66", r, status,
                             "", "5.1.1" if status == "bounced" else "2.0.0", "550 no")
                for r in part]), 3600.0)
        (msg,) = store.messages("ip:192.0.2.66")
        (row,) = message_rows(url)
        assert len(row["rcpts"]) <= RCPTS_CHARS
        assert 1000 < len(msg.recipients) < 5000  # lines up to the cap, no further
        totals = store.report_totals(T - 1, T + 3600)["ip:192.0.2.66"]
        assert (totals.recipients, totals.delivered, totals.failed) == (10_000, 5000, 2500)
        assert store.undelivered_queue_ids("ip:192.0.2.66") == ["BIG"]  # 2,500 pending
