"""Sample reports: the listings from the extrusion-detection talk, and synthetic ones of any size.

The fixed scenario is what the golden-output tests render; the synthetic
generator feeds the benchmark and the browser test. Both are deterministic.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime

from extrusion.report.model import (
    Category,
    Counts,
    Finding,
    HourBucket,
    MessageRecord,
    RecipientLine,
    Report,
    ReportOutcome,
    SenderActivity,
    SenderReport,
    StateChangeRecord,
)
from extrusion.scoring.events import State

HOUR = 3600


def at(text: str) -> float:
    """POSIX seconds of `2007-05-19 10:47:15` read as UTC."""
    return datetime.strptime(text, "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC).timestamp()


def _rcpts(failed: list[str], delivered: list[str], pending: tuple[str, ...] = ()) -> tuple[
    RecipientLine, ...
]:
    return (
        *(RecipientLine(a, ReportOutcome.FAILED, "bounced", "5.1.1", "550 5.1.1 User unknown")
          for a in failed),
        *(RecipientLine(a, ReportOutcome.PENDING, "deferred", "4.4.1", "connection timed out")
          for a in pending),
        *(RecipientLine(a, ReportOutcome.DELIVERED, "sent", "2.0.0", "250 ok") for a in delivered),
    )


def _counts(messages: tuple[MessageRecord, ...]) -> Counts:
    rcpts = [r for m in messages for r in m.recipients]
    return Counts(
        messages=len(messages),
        recipients=len(rcpts),
        delivered=sum(r.delivery is ReportOutcome.DELIVERED for r in rcpts),
        failed=sum(r.delivery is ReportOutcome.FAILED for r in rcpts),
        pending=sum(r.delivery is ReportOutcome.PENDING for r in rcpts),
    )


def _hourly(messages: tuple[MessageRecord, ...]) -> tuple[HourBucket, ...]:
    buckets: dict[float, list[int]] = {}
    for m in messages:
        b = buckets.setdefault(m.time - m.time % HOUR, [0, 0])
        for r in m.recipients:
            if r.delivery is ReportOutcome.DELIVERED:
                b[0] += 1
            elif r.delivery is ReportOutcome.FAILED:
                b[1] += 1
    return tuple(HourBucket(start, d, f) for start, (d, f) in sorted(buckets.items()))


def _valid(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i:03d}@example{i % 7}.com.tw" for i in range(n)]


def classic_scenario() -> Report:
    """A spam bot and a mass-mailing worm from the talk, and a rejection daemon."""
    bot_msgs = (
        MessageRecord(
            at("2007-05-19 10:47:15"), "vzjwcqk0n@msa.hinet.net", 2199,
            _rcpts(["0930456496@yahoo.com", "09365874588@fdf.sdfads", "0939155631@yahoo.com.yw"],
                   ["0931244221@fetnet.net", "0932132625@pchome.com.tw"]),
            helo="dsl-10-47.example.net", queue_id="4C1A2B3D4E", mta="smarthost1",
            client_addr="192.0.2.10",
        ),
        MessageRecord(
            at("2007-05-19 10:50:22"), "985eubg@msa.hinet.net", 2206,
            _rcpts(["cy-i88222@ms.cy.edw.tw", "cynthia0421@1111.com.tw"],
                   ["cy.tung@msa.hinet.net", "cy3219@hotmail.com", "cy_chiang@hotmail.com",
                    "cyc.aa508@msa.hinet.net", *_valid("cy", 31)]),
            helo="dsl-10-47.example.net", queue_id="4C1A2B3D4F", mta="smarthost1",
            client_addr="192.0.2.10",
        ),
        MessageRecord(
            at("2007-05-19 10:59:15"), "4uzdcr@msa.hinet.net", 2228,
            _rcpts(["peter@syzygia.com.tw"],
                   ["peter.y@seed.net.tw", "peter.zr.kuo@foxconn.com", "peter548@ms37.hinet.net",
                    "peter62514@yahoo.com.tw", "peter740916@yahoo.com.tw", *_valid("peter", 44)]),
            helo="dsl-10-47.example.net", queue_id="4C1A2B3D50", mta="smarthost1",
            client_addr="192.0.2.10",
        ),
        MessageRecord(
            at("2007-05-19 11:02:40"), "q8zz1@msa.hinet.net", 2231,
            _rcpts([f"user{i}@invented{i}.example" for i in range(9)],
                   ["amy@example.org", "bo@example.org"], pending=("cy@slow.example",)),
            helo="dsl-10-47.example.net", queue_id="4C1A2B3D51", mta="smarthost1",
            client_addr="192.0.2.10",
        ),
    )
    bot = SenderReport(
        key="sasl:dsl-0047@example.net",
        customer="example-dsl",
        state=State.HELD,
        score=57.5,
        first_seen=bot_msgs[0].time,
        last_seen=bot_msgs[-1].time,
        counts=_counts(bot_msgs),
        category=Category.SPAM,
        reasons=(
            "15 distinct recipients failed within 1 hour",
            "mail to ancient and invented addresses: 12 unknown users, 1 unknown domain",
        ),
        findings=(
            Finding("failed_recipients", "15 distinct recipients failed within 1 hour", 15.0,
                    {"failed": 15, "window_seconds": 3600,
                     "examples": ["0930456496@yahoo.com", "09365874588@fdf.sdfads"]}),
            Finding("mailing_lists", "4 different list-like mailings from one sender",
                    30.0, {"lists": 4}),
        ),
        messages=bot_msgs,
        changes=(
            StateChangeRecord(at("2007-05-19 10:50:30"), State.OK, State.WATCH, 12.0,
                              "failures to 5 distinct recipients"),
            StateChangeRecord(at("2007-05-19 10:59:20"), State.WATCH, State.THROTTLED, 28.0,
                              "more than one mailing list"),
            StateChangeRecord(at("2007-05-19 11:02:45"), State.THROTTLED, State.HELD, 57.5,
                              "15 distinct recipients failed within 1 hour"),
        ),
        hourly=_hourly(bot_msgs),
    )
    worm_helos = (
        ("lrhnow.usa.net", "2007-05-19 23:11:22", "kwntefsqhi@usa.net", 8339,
         "ken@example1.demon.co.uk"),
        ("lkrw.hotmail.com", "2007-05-19 23:11:24", "zmjkuzzs@hotmail.com", 11340,
         "ken@example2.demon.co.uk"),
        ("pshw.netscape.net", "2007-05-19 23:14:52", "dscceljzmy@netscape.net", 6122,
         "steve.xf@example3.demon.co.uk"),
        ("zmgp.cs.com", "2007-05-19 23:18:06", "wmqjympdr@cs.com", 6925,
         "kroll@example4.demon.co.uk"),
    )
    worm_msgs = tuple(
        MessageRecord(at(t), sender, size, _rcpts([], [rcpt]), helo=helo, helo_suspect=True,
                      queue_id=f"5D0000000{i}", mta="smarthost1", client_addr="198.51.100.23")
        for i, (helo, t, sender, size, rcpt) in enumerate(worm_helos)
    )
    worm = SenderReport(
        key="ip:198.51.100.23",
        customer="",
        state=State.THROTTLED,
        score=40.0,
        first_seen=worm_msgs[0].time,
        last_seen=worm_msgs[-1].time,
        counts=_counts(worm_msgs),
        category=Category.VIRUS,
        reasons=(
            "HELO names a random host under the MAIL FROM domain (lrhnow.usa.net for usa.net)",
            "4 different HELO names from one client",
        ),
        findings=(
            Finding("helo_anomalies", "HELO under the MAIL FROM domain from a client outside it",
                    40.0, {"helos": [h for h, *_ in worm_helos], "client": "198.51.100.23"}),
        ),
        messages=worm_msgs,
        changes=(
            StateChangeRecord(at("2007-05-19 23:14:53"), State.OK, State.THROTTLED, 30.0,
                              "HELO anomaly: pshw.netscape.net"),
        ),
        hourly=_hourly(worm_msgs),
    )
    daemon_msgs = tuple(
        MessageRecord(at(f"2007-05-19 1{h}:0{h}:00"), "postmaster@acme.example", 1520,
                      _rcpts([f"forged{h}@victim{h}.example"], []), helo="mail.acme.example",
                      queue_id=f"6E000000{h}", mta="smarthost1", client_addr="203.0.113.5")
        for h in range(3)
    )
    daemon = SenderReport(
        key="customer:acme",
        customer="acme",
        state=State.WATCH,
        score=3.0,
        first_seen=daemon_msgs[0].time,
        last_seen=daemon_msgs[-1].time,
        counts=_counts(daemon_msgs),
        category=Category.MISCONFIGURED,
        reasons=("automatic replies sent with a return path (not <>), to forged senders",),
        findings=(
            Finding("misconfigured", "auto-replies without a null return path", 0.0,
                    {"auto_submitted": "auto-replied", "replies": 3}),
        ),
        messages=daemon_msgs,
    )
    activity = (
        SenderActivity(bot.key, bot.state, 4, 101, 15, 2, 1, Category.SPAM),
        SenderActivity(worm.key, worm.state, 4, 4, 0, 1, 1, Category.VIRUS),
        SenderActivity(daemon.key, daemon.state, 3, 3, 3, 3, 1, Category.MISCONFIGURED),
        SenderActivity("ip:192.0.2.77", State.OK, 40, 60, 1, 9, 3),
        SenderActivity("sasl:newsletter@shop.example", State.OK, 2, 4000, 310, 2, 1),
        SenderActivity("ip:192.0.2.80", State.WATCH, 12, 12, 4, 5, 2),
    )
    return Report(
        generated_at=at("2007-05-20 00:00:00"),
        since=at("2007-05-19 00:00:00"),
        until=at("2007-05-20 00:00:00"),
        senders=(bot, worm),
        misconfigured=(daemon,),
        activity=activity,
        source="sample",
        half_life=3600.0,
    )


def synthetic(
    messages: int = 100_000,
    per_sender: int = 500,
    quiet_senders: int = 5000,
    seed: int = 1,
    start: float = 1_700_000_000.0,
) -> Report:
    """A report over `messages` messages of flagged senders, plus everyone's activity."""
    rng = random.Random(seed)
    span = 24 * HOUR
    senders = []
    for n in range(max(1, messages // per_sender)):
        virus = n % 4 == 0
        first = start + rng.uniform(0, span * 0.8)
        msgs = []
        for i in range(per_sender):
            t = first + i * rng.uniform(5, 20)
            k = rng.randint(1, 8)
            fails = rng.randint(0, k)
            rcpts = tuple(
                RecipientLine(
                    f"r{n}-{i}-{j}@dest{rng.randint(0, 999)}.example",
                    ReportOutcome.FAILED if j < fails else ReportOutcome.DELIVERED,
                    "bounced" if j < fails else "sent",
                )
                for j in range(k)
            )
            msgs.append(
                MessageRecord(t, f"x{rng.getrandbits(32):08x}@spoofed.example",
                              rng.randint(900, 30_000), rcpts,
                              helo=f"h{rng.getrandbits(20):05x}.example.com", helo_suspect=virus,
                              queue_id=f"{n:05X}{i:05X}")
            )
        mt = tuple(msgs)
        detected = mt[min(20, len(mt) - 1)].time
        senders.append(
            SenderReport(
                key=f"ip:10.{n // 256}.{n % 256}.1",
                state=(State.THROTTLED, State.HELD, State.BLOCKED)[n % 3],
                score=20.0 + rng.uniform(0, 80),
                first_seen=mt[0].time,
                last_seen=mt[-1].time,
                counts=_counts(mt),
                category=Category.VIRUS if virus else Category.SPAM,
                reasons=("many distinct recipients failed within 1 hour",),
                findings=(Finding("failed_recipients", "failures", 25.0, {"failed": 25}),),
                messages=mt,
                changes=(StateChangeRecord(detected, State.OK, State.THROTTLED, 21.0, "failures"),),
                hourly=_hourly(mt),
            )
        )
    activity = [
        SenderActivity(s.key, s.state, s.counts.messages, s.counts.recipients, s.counts.failed,
                       rng.randint(1, 6), rng.randint(1, 2), s.category)
        for s in senders
    ]
    for q in range(quiet_senders):
        sent_to = rng.randint(1, 200)
        activity.append(
            SenderActivity(f"ip:172.16.{q // 256}.{q % 256}", State.OK, rng.randint(1, 50),
                           sent_to, rng.randint(0, max(1, sent_to // 20)), rng.randint(1, 24),
                           rng.randint(1, 6))
        )
    return Report(
        generated_at=start + span,
        since=start,
        until=start + span,
        senders=tuple(sorted(senders, key=lambda s: -s.score)),
        activity=tuple(activity),
        source="synthetic",
    )
