"""The replay's log reader and the engine's side agree on every event's fields.

The engine's side rebuilds events positionally from the reader's tuples, so a
field added to an event, or two swapped in the encoding, must show here
rather than as a quietly different verdict.
"""

from __future__ import annotations

import dataclasses
import io
import pickle

import pytest

from extrusion.maillog.join import NO_HEADERS
from extrusion.replay import worker
from extrusion.scoring.events import ClientEvidence, Outcome, Refused, Seen, Status, Submission


def _round_trip(event: object) -> object:
    encoders = {Submission: worker.encode_submission, Outcome: worker.encode_outcome,
                Refused: worker.encode_refused, ClientEvidence: worker.encode_evidence}
    item = encoders[type(event)](12.5, event)  # type: ignore[operator]
    assert item[1] == 12.5  # the engine's clock travels beside the event
    # Through a pickle as across the pipe: plain tuples in, equal events out.
    return worker.decode(pickle.loads(pickle.dumps(item, worker.PICKLE_PROTOCOL)))


def test_submission_every_field_the_log_fills() -> None:
    s = Submission(time=1.0, sender="ip:192.0.2.1", queue_id="Q1", envelope_from="a@x.test",
                   recipients=("b@y.test", "c@z.test"), size=1234, mta="mx1",
                   client_addr="192.0.2.1", client_name="h.x.test", helos=("h",),
                   headers=NO_HEADERS, message_id="<m@x.test>")
    assert _round_trip(s) == s


def test_outcome_every_field() -> None:
    o = Outcome(time=2.0, queue_id="Q2", recipient="r@y.test", status=Status.DEFERRED,
                dsn="4.2.0", reply="busy", sender="sasl:u", envelope_from="", mta="mx2",
                relay="mx.y.test[198.51.100.2]:25", client_name="srs.x.test")
    back = _round_trip(o)
    assert back == o
    assert isinstance(back, Outcome) and back.status is Status.DEFERRED


def test_refused_and_evidence_every_field() -> None:
    r = Refused(3.0, "ip:192.0.2.3", "r@y.test")
    assert _round_trip(r) == r
    e = ClientEvidence(time=4.0, sender="ip:192.0.2.4", client_addr="192.0.2.4",
                       kind=Seen.POSTSCREEN, client_name="unknown", helos=("a", "b"),
                       envelope_from="e@x.test", recipients=("r@y.test",), detail="PREGREET",
                       queue_id="Q4", mta="mx4", client_evidence=False)
    assert _round_trip(e) == e


def test_log_events_are_hashable_values() -> None:
    a = Outcome(5.0, "Q5", "r@y.test", Status.SENT)
    b = dataclasses.replace(a)
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert dataclasses.replace(a, sender="ip:192.0.2.5").sender == "ip:192.0.2.5"


def test_work_batches_lines_and_ends_with_counts() -> None:
    # More lines than one batch, so a full batch and the last partial one both go out.
    from extrusion.config import Config
    from extrusion.maillog.feed import join_settings

    cfg = Config()
    settings = worker.WorkerSettings(
        fmt=cfg.maillog.format, join=join_settings(cfg), timezone="UTC",
        reference_time=1_700_000_000.0, customers=(), flush_every_lines=worker.BATCH_LINES)
    lines = [f"Nov 14 22:13:{i % 60:02d} mx1 postfix/smtpd[7]: connect from h[192.0.2.9]\n"
             for i in range(worker.BATCH_LINES + 5)]
    out = io.BytesIO()
    worker.work(settings, lines, out, lambda: "")
    out.seek(0)
    messages = []
    while out.tell() < len(out.getvalue()):
        messages.append(pickle.load(out))
    assert [m[0] for m in messages] == ["batch", "batch", "end"]
    assert [m[1] for m in messages] == [worker.BATCH_LINES, len(lines), len(lines)]
    assert messages[0][3] == [worker.FLUSH]  # flushed where a one-process replay does
    assert messages[2][2].lines == len(lines)


def test_outcome_status_travels_as_its_plain_value() -> None:
    # A Status member pickled is the enum's class and value: a plain str keeps the stream
    # as it was, for every status.
    for status in Status:
        item = worker.encode_outcome(1.0, Outcome(1.0, "Q6", "r@y.test", status))
        assert type(item[5]) is str and item[5] == status.value
        assert worker.decode(item).status is status  # type: ignore[union-attr]


class _At:
    now = 7.5


@pytest.mark.parametrize("status", list(Status))
@pytest.mark.parametrize("helos", [(), ("h.x.test",)])
def test_events_encoded_from_their_fields_as_from_the_events(
        status: Status, helos: tuple[str, ...]) -> None:
    # The joiner hands the reader's encoder an event's fields (`submission_fields`,
    # `outcome_fields`) instead of the event: the same tuple, the same pickle.
    enc = worker._Encoder(())
    enc.clock = _At()
    s = ("sasl:u" if helos else "", "Q7", "" if helos else "e@x.test", ("a@y", "b@z"), 12,
         "mx7", "192.0.2.7", "h.x.test", helos, "<m@x>")
    o = ("Q7", "r@y.test", status, "5.1.1", "550 no", s[0], None if helos else "e@x.test",
         "mx7", "mx.y.test[198.51.100.7]:25")
    enc.submission_fields(3.0, *s)
    enc.outcome_fields(4.0, *o)
    expected = [worker.encode_submission(7.5, Submission(3.0, *s[:9], NO_HEADERS, s[9])),
                worker.encode_outcome(7.5, Outcome(4.0, *o))]
    assert enc.items == expected
    assert pickle.dumps(enc.items) == pickle.dumps(expected)


def test_the_settings_cross_to_the_reader_whole() -> None:
    # Pickled down the reader's standard input; compiled, they go by __reduce__.
    from extrusion.config import Customer
    from extrusion.maillog.join import JoinSettings

    join = JoinSettings(submissions=False, wait_seconds=7.0, mta="mx9",
                        local_hosts=("a", "b"), skip_replies=("x",), live=True)
    settings = worker.WorkerSettings(
        fmt="postfix", join=join, timezone="Europe/Berlin", reference_time=1.5,
        customers=(Customer(name="c", networks=("192.0.2.0/24",)),), flush_every_lines=9)
    back = pickle.loads(pickle.dumps(settings, worker.PICKLE_PROTOCOL))
    assert back == settings and type(back.join) is JoinSettings
    assert dataclasses.astuple(back) == dataclasses.astuple(settings)
