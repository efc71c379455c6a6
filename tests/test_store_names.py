"""Interned names (scoring/names.py) are bounded by retention, on SQLite and PostgreSQL:
a bot making up a HELO per message grows `names` only while its messages are kept, and
a name a process has cached is never pruned from under a row it writes later."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from extrusion.scoring import schema
from extrusion.scoring.rows import Batch
from extrusion.scoring.store import Store

HL = 3600.0
DAY = 86400
T0 = 1_700_006_400  # a day's start (UTC)
RETENTION = 30 * DAY


@pytest.fixture
def store(store_url: str) -> Iterator[Store]:
    s = Store(store_url)
    yield s
    s.close()


def message(t: float, qid: str, sender: str, helo: str) -> Batch:
    b = Batch()
    b.messages.append({"time": t, "mta": "mx1", "queue_id": qid, "sender": sender,
                       "envelope_from": "a@example.net", "helo": helo, "rcpt_count": 1})
    b.recipients.append({"time": t + 5, "mta": "mx1", "queue_id": qid, "sender": sender,
                         "recipient": "r@example.com", "status": "sent"})
    return b


def names(s: Store) -> set[str]:
    with s._db.read() as conn:
        return set(conn.execute(sa.select(schema.names.c.name)).scalars())


def prune(s: Store, now: float) -> None:
    s.prune(now - RETENTION, detail_before=now - 7 * DAY)


def test_a_bots_invented_helos_go_with_its_messages(store: Store) -> None:
    bot, customer = "ip:192.0.2.66", "sasl:alice@example.net"
    helos = {f"x{i:04d}.invalid" for i in range(300)}
    for i, h in enumerate(sorted(helos)):
        store.write_batch(message(T0 + i, f"B{i:04d}", bot, h), HL)
    later = T0 + 40 * DAY
    store.write_batch(message(later, "C0001", customer, "mail.example.net"), HL)
    assert helos <= names(store)

    prune(store, later + 60)

    left = names(store)
    assert not helos & left, "names of messages past retention are kept"
    assert {customer, "mail.example.net", "mx1"} <= left
    [m] = store.messages(customer, since=later - 1)
    assert (m.sender, m.helo, m.mta) == (customer, "mail.example.net", "mx1")


def test_a_name_kept_in_a_process_cache_is_marked_seen_again_each_day(store: Store) -> None:
    """The store caches the HELO's id on day 0; on day 35 it writes it again. Had the
    cache been trusted across days, `seen` would still say day 0 and a prune would take
    the name from under the day-35 row."""
    sender, helo = "sasl:bob@example.org", "relay.example.org"
    store.write_batch(message(T0, "Q0", sender, helo), HL)
    later = T0 + 35 * DAY
    store.write_batch(message(later, "Q1", sender, helo), HL)

    prune(store, later + 60)

    assert helo in names(store)
    [m] = store.messages(sender, since=later - 1)
    assert (m.queue_id, m.helo) == ("Q1", helo)


def test_a_name_another_host_pruned_comes_back_under_a_new_id(store_url: str) -> None:
    a, b = Store(store_url), Store(store_url)
    try:
        sender, helo = "ip:198.51.100.9", "old.example.com"
        a.write_batch(message(T0, "Q0", sender, helo), HL)  # a caches both names' ids
        later = T0 + 40 * DAY
        prune(b, later)  # another host's prune: nothing names them any more
        assert not {sender, helo} & names(b)

        a.write_batch(message(later, "Q1", sender, helo), HL)

        [m] = b.messages(sender, since=later - 1)
        assert (m.sender, m.helo) == (sender, helo)
    finally:
        a.close()
        b.close()


def test_a_late_batch_does_not_mark_names_seen_past_its_own_day(store: Store) -> None:
    """A batch of rows older than the cache's day (a late outcome, a replayed spool) is
    not kept in the cache: its names were marked seen on its own, earlier day only."""
    sender = "ip:203.0.113.5"
    store.write_batch(message(T0 + 20 * DAY, "N0", "ip:203.0.113.6", "now.example"), HL)
    store.write_batch(message(T0, "E0", sender, "early.example"), HL)
    assert seen(store)["early.example"] == T0 // DAY
    assert seen(store)["now.example"] == (T0 + 20 * DAY) // DAY

    store.write_batch(message(T0 + 20 * DAY + 100, "E1", sender, "early.example"), HL)

    assert seen(store)["early.example"] == (T0 + 20 * DAY) // DAY


def seen(s: Store) -> dict[str, int]:
    with s._db.read() as conn:
        return dict(conn.execute(sa.select(schema.names.c.name, schema.names.c.seen)).all())
