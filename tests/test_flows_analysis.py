"""Flow records in, direct senders out: pmacct's JSON lines parsed, customer addresses judged.

The records are those pmacct's print plugin writes (see conf/pmacct/sfacctd.conf);
the integration with a real sfacctd is tests/test_flows_sfacctd.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from extrusion.config import Config, ConfigError, from_dict
from extrusion.flows import analysis
from extrusion.flows.analysis import FlowAnalysis
from extrusion.flows.feed import FlowFeed
from extrusion.flows.parse import parse
from extrusion.flows.records import BadRecord, FlowRecord
from extrusion.flows.simulate import Sender, mx_address, pmacct_records, sampled
from extrusion.scoring.events import FlowEvidence

T0 = 1_796_515_200.0  # midnight UTC
BOT = "10.1.2.3"


def config(**flows: Any) -> Config:
    return from_dict({
        "general": {"own_networks": ["10.0.0.0/8"]},
        "customers": [{"name": "acme", "networks": ["192.0.2.0/24"]}],
        "flows": flows,
    })


def rec(src: str = BOT, dst: str = "198.51.100.7", t: float = T0, **kw: Any) -> FlowRecord:
    fields: dict[str, Any] = {"dport": 25, "tcp": True, "packets": 1, "sampling_rate": 2000}
    fields.update(kw)
    return FlowRecord(t, src, dst, **fields)


def line(**kw: Any) -> str:
    data = {"event_type": "purge", "ip_src": BOT, "ip_dst": "198.51.100.7", "port_dst": 25,
            "ip_proto": "tcp", "sampling_rate": 2000, "stamp_inserted": "1796508000",
            "stamp_updated": "1796509426", "packets": 2, "bytes": 3000}
    data.update(kw)
    return json.dumps({k: v for k, v in data.items() if v is not None})


# --- records ---------------------------------------------------------------------------------


def test_a_pmacct_record_is_read_with_its_time_and_sampling_rate() -> None:
    r = parse(line())
    assert (r.src, r.dst, r.dport, r.tcp, r.packets, r.sampling_rate) == (
        BOT, "198.51.100.7", 25, True, 2, 2000)
    assert r.time == 1796509426.0  # stamp_updated, given as text by pmacct


def test_addresses_are_canonical_as_sender_keys_are() -> None:
    assert parse(line(ip_src="::ffff:10.1.2.3")).src == BOT
    assert parse(line(ip_dst="2001:DB8::0:1")).dst == "2001:db8::1"


def test_pmacct_text_times_are_utc() -> None:
    r = parse(line(stamp_updated=None, stamp_inserted="2026-12-05 22:00:00"))
    assert r.time == 1796508000.0


@pytest.mark.parametrize(("text", "why"), [
    ("not json", "not JSON"),
    ("[1, 2]", "not a JSON object"),
    (line(ip_src=None), "no ip_src"),
    (line(ip_dst="mx.example"), "is not an IP address"),
    (line(ip_src="010.1.2.3"), "is not an IP address"),
    (line(port_dst=70000), "port_dst 70000 is out of range"),
    (line(packets="many"), "packets is missing or not an integer"),
    (line(packets=-1), "out of range"),
    (line(ip_proto=None), "no ip_proto"),
    (line(stamp_updated=None, stamp_inserted=None), "no time"),
    (line(stamp_updated="yesterday"), "is not a time"),
])
def test_a_bad_record_says_why_in_one_line(text: str, why: str) -> None:
    with pytest.raises(BadRecord) as err:
        parse(text)
    assert why in str(err.value)
    assert "\n" not in str(err.value)


def test_a_bad_record_is_counted_and_the_next_one_read() -> None:
    found: list[FlowEvidence] = []

    class Sink:
        def direct_sending(self, event: FlowEvidence) -> None:
            found.append(event)

    feed = FlowFeed(Sink(), config(min_destinations=2, min_networks=2))
    feed.line("garbage {")
    feed.line(line(ip_dst="198.51.100.7"))
    feed.too_long('{"event_type": "purge", ' + "x" * 100)
    feed.line(line(ip_dst="203.0.113.9"))
    assert (feed.stats.lines, feed.stats.parsed, feed.stats.bad) == (3, 2, 2)
    assert len(found) == 1 and found[0].destinations == 2


# --- analysis -----------------------------------------------------------------------------


def test_a_consumer_bot_sending_to_many_mx_hosts_is_found() -> None:
    a = FlowAnalysis(config())
    found = [e for i in range(12) if (e := a.record(rec(dst=mx_address(i), t=T0 + i))) is not None]
    assert len(found) == 1  # at the tenth destination, once this hour
    e = found[0]
    assert (e.client_addr, e.destinations, e.networks) == (BOT, 10, 10)
    assert e.packets == 10 * 2000  # scaled by the sampling rate
    assert (e.hours_active, e.blocks_active) == (1, 1)
    assert e.hourly == ((int(T0 // 3600), 20000),)


def test_it_is_found_again_each_hour_it_keeps_sending() -> None:
    a = FlowAnalysis(config())
    hits = []
    for h in range(6):
        for i in range(12):
            e = a.record(rec(dst=mx_address(h * 100 + i), t=T0 + h * 3600 + i))
            if e is not None:
                hits.append(e)
    assert len(hits) == 6
    assert [e.hours_active for e in hits] == [1, 2, 3, 4, 5, 6]
    assert [e.blocks_active for e in hits] == [1, 1, 1, 1, 2, 2]  # 00-04, 04-08


def test_a_consumer_posting_to_one_fixed_host_now_and_then_is_not_found() -> None:
    a = FlowAnalysis(config())
    assert all(a.record(rec(dst="203.0.113.25", t=T0 + h * 3600, packets=3)) is None
               for h in range(48))


def test_mail_to_the_isps_own_smarthosts_is_the_normal_path() -> None:
    a = FlowAnalysis(config(smarthosts=["198.0.0.0/8"]))
    assert all(a.record(rec(dst=mx_address(i))) is None for i in range(50))
    assert a.skipped == {analysis.OWN_SMARTHOST: 50}


@pytest.mark.parametrize("flows", [
    {"allow_networks": ["192.0.2.0/28"]},
    {"allow_customers": ["acme"]},
])
def test_a_business_allowed_to_send_directly_is_not_looked_at(flows: dict[str, Any]) -> None:
    a = FlowAnalysis(config(**flows))
    assert all(a.record(rec(src="192.0.2.5", dst=mx_address(i))) is None for i in range(50))
    assert a.skipped == {analysis.ALLOWED: 50}


def test_the_same_business_without_an_allowance_is_found() -> None:
    a = FlowAnalysis(config())
    assert any(a.record(rec(src="192.0.2.5", dst=mx_address(i))) for i in range(50))


def test_addresses_outside_the_customer_ranges_and_other_ports_are_skipped() -> None:
    a = FlowAnalysis(config())
    for i in range(20):
        assert a.record(rec(src="203.0.113.1", dst=mx_address(i))) is None
        assert a.record(rec(dst=mx_address(i), dport=587)) is None
        assert a.record(rec(dst=mx_address(i), tcp=False)) is None
    assert a.skipped == {analysis.NOT_CUSTOMER: 20, analysis.NOT_SMTP: 40}


def test_destinations_older_than_the_window_no_longer_count() -> None:
    a = FlowAnalysis(config(window_seconds=3600))
    for i in range(9):
        assert a.record(rec(dst=mx_address(i), t=T0 + i)) is None
    # Two hours later the nine are gone: one more destination is not ten.
    assert a.record(rec(dst=mx_address(99), t=T0 + 7200)) is None
    assert len(a.sources[BOT].dests) == 1


@pytest.mark.parametrize(("flows", "why"), [
    ({"window_seconds": 60}, "window_seconds must be from 3600"),
    ({"window_seconds": 30 * 86400}, "window_seconds must be from 3600"),
    ({"sampling_rate": 0}, "sampling_rate must be at least 1"),
    ({"nft_set": "a b"}, "nft_set must be a plain name"),
    ({"nft_table": "extrusion"}, "nft_table must be FAMILY NAME"),
    ({"allow_customers": ["nobody"]}, "'nobody' is no customer"),
])
def test_flows_config_is_checked_at_start(flows: dict[str, Any], why: str) -> None:
    with pytest.raises(ConfigError, match=why):
        config(**flows)


def test_memory_is_bounded_by_max_sources() -> None:
    a = FlowAnalysis(config(max_sources=100))
    for i in range(1000):
        a.record(rec(src=f"10.0.{i // 250}.{i % 250}", dst=mx_address(i)))
    assert len(a.sources) == 100
    assert "10.0.3.249" in a.sources  # the newest stay


def test_destinations_per_source_are_bounded() -> None:
    a = FlowAnalysis(config())
    for i in range(analysis.MAX_DESTINATIONS + 500):
        a.record(rec(dst=mx_address(i), t=T0 + i * 0.001))
    assert len(a.sources[BOT].dests) == analysis.MAX_DESTINATIONS


def test_a_simulated_day_at_one_in_2000_finds_the_bot_not_the_occasional_sender() -> None:
    senders = [Sender(BOT, per_hour=1000), Sender("10.9.9.9", per_hour=20, mx_pool=1)]
    feed_found: list[FlowEvidence] = []

    class Sink:
        def direct_sending(self, event: FlowEvidence) -> None:
            feed_found.append(event)

    feed = FlowFeed(Sink(), config())
    for text in pmacct_records(sampled(senders, 2000, T0, 24), 2000):
        feed.line(text)
    assert feed.stats.bad == 0
    assert {e.client_addr for e in feed_found} == {BOT}
    assert feed_found[-1].hours_active >= 20
