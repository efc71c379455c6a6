"""Per customer address: where its port-25 packets went and in which hours.

The talk's sFlow analysis, on records already cut to port 25 by the collector:
an address in the ISP's customer ranges ([[customers]] networks, [general]
own_networks) that sends to hosts other than the ISP's own smarthosts is
sending mail directly. Within `window_seconds` we count its distinct
destination hosts and /24 networks (IPv6: /48), its packets scaled by the
sampling rate, the hours it was active and the four-hour blocks of the day
it was active in ("excessive variation": a bot is active in every hour of
its blocks, a person in a few). It is flagged, once per hour, when both
counts reach the configured minimum: a consumer posting to one fixed host
now and then never does. Ranges the operator allows (business mail
servers) are never looked at. In MX mode the address's mail at our MX
annotates its flows (mxnotes.py): refused or spam mail lowers the minimums by
`mx_escalation`, clean mail and a low rate keep it from being flagged.
"""

from __future__ import annotations

import ipaddress
import math
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field

from extrusion.config import Config
from extrusion.flows.mxnotes import MxMail, MxNotes
from extrusion.flows.records import SMTP_PORT, FlowRecord
from extrusion.netaddr import IPNetwork, networks, within
from extrusion.scoring.events import FlowEvidence

HOUR = 3600
BLOCK_HOURS = 4  # the talk's four-hour blocks, aligned to midnight UTC
# Destinations remembered per source: far above any threshold, bounded against a flood.
MAX_DESTINATIONS = 2048
EXAMPLES = 5
# Skip reasons, counted (the metrics and `flows replay` report them).
NOT_SMTP = "not tcp port 25"
NOT_CUSTOMER = "not a customer range"
ALLOWED = "allowed to send directly"
OWN_SMARTHOST = "to an own smarthost"
NO_PACKETS = "no packets"
CLEAN_AT_MX = "clean mail at our MX, low rate"

Network = IPNetwork


@dataclass(slots=True)
class _Source:
    """One customer address within the window."""

    dests: OrderedDict[str, float] = field(default_factory=OrderedDict)  # dst -> last seen
    nets: dict[str, int] = field(default_factory=dict)  # /24 -> destinations in it
    hours: dict[int, int] = field(default_factory=dict)  # hour index -> estimated packets
    flagged_hour: int = -1


def network_of(addr: str) -> str:
    """The /24 (IPv4) or /48 (IPv6) a destination lies in, as text."""
    if ":" in addr:
        return str(ipaddress.IPv6Network((addr, 48), strict=False))
    return addr.rpartition(".")[0]


class FlowAnalysis:
    def __init__(self, config: Config, notes: MxNotes | None = None) -> None:
        # MX mode: the address's mail at our MX annotates its flows (mxnotes.py).
        self.notes = notes
        self.sources: OrderedDict[str, _Source] = OrderedDict()
        self.skipped: dict[str, int] = {}
        self.configure(config)

    def configure(self, config: Config) -> None:
        """Thresholds, sampling and ranges from `config`: at start and on reload (SIGHUP).
        What was counted per source stays; only the verdicts per address are redone."""
        f = config.flows
        self.window = f.window_seconds
        self.min_destinations = f.min_destinations
        self.min_networks = f.min_networks
        self.max_sources = f.max_sources
        self.default_rate = f.sampling_rate
        self.escalation = f.mx_escalation
        self.clean_rate = f.mx_clean_packets_per_hour
        allowed_names = set(f.allow_customers)
        self.ranges = _nets(config.general.own_networks) + _nets(
            n for c in config.customers if c.name not in allowed_names for n in c.networks)
        self.allowed = _nets(f.allow_networks) + _nets(
            n for c in config.customers if c.name in allowed_names for n in c.networks)
        self.smarthosts = _nets(f.smarthosts)
        # The verdict per source address (watched or the reason it is not): addresses
        # repeat in every record, and a range lookup per record would dominate.
        self._verdicts: dict[str, str] = {}
        while len(self.sources) > self.max_sources:
            self.sources.popitem(last=False)

    def _verdict(self, src: str) -> str:
        v = self._verdicts.get(src)
        if v is None:
            ip = ipaddress.ip_address(src)
            if within(ip, self.allowed):
                v = ALLOWED
            elif within(ip, self.ranges):
                v = ""
            else:
                v = NOT_CUSTOMER
            if len(self._verdicts) >= self.max_sources:
                self._verdicts.clear()  # bounded; rebuilt from the next records
            self._verdicts[src] = v
        return v

    def _skip(self, why: str) -> None:
        self.skipped[why] = self.skipped.get(why, 0) + 1

    def record(self, rec: FlowRecord) -> FlowEvidence | None:
        """Count one record; the evidence when it makes its source one to flag this hour."""
        if not rec.tcp or rec.dport != SMTP_PORT:
            self._skip(NOT_SMTP)
            return None
        if rec.packets <= 0:
            self._skip(NO_PACKETS)
            return None
        if why := self._verdict(rec.src):
            self._skip(why)
            return None
        if self.smarthosts and within(ipaddress.ip_address(rec.dst), self.smarthosts):
            self._skip(OWN_SMARTHOST)
            return None
        src = self.sources.get(rec.src)
        if src is None:
            src = self.sources[rec.src] = _Source()
            while len(self.sources) > self.max_sources:
                self.sources.popitem(last=False)  # the one quiet longest
        else:
            self.sources.move_to_end(rec.src)
        now = rec.time
        self._expire(src, now)
        hour = int(now // HOUR)
        rate = rec.sampling_rate or self.default_rate
        src.hours[hour] = src.hours.get(hour, 0) + rec.packets * rate
        if rec.dst in src.dests:
            src.dests.move_to_end(rec.dst)
            src.dests[rec.dst] = max(src.dests[rec.dst], now)
        elif len(src.dests) < MAX_DESTINATIONS:
            src.dests[rec.dst] = now
            net = network_of(rec.dst)
            src.nets[net] = src.nets.get(net, 0) + 1
        if hour == src.flagged_hour:
            return None
        return self._judge(rec.src, src, now, hour)

    def _judge(self, addr: str, src: _Source, now: float, hour: int) -> FlowEvidence | None:
        """Flag when the counts reach the minimums; in MX mode, sooner for an address
        whose mail at our MX was refused or spam, not at all at a low rate for one whose
        mail there is clean."""
        dests, nets = len(src.dests), len(src.nets)
        full = dests >= self.min_destinations and nets >= self.min_networks
        mx: MxMail | None = None
        if self.notes is not None and (full or (
                dests >= math.ceil(self.min_destinations / self.escalation)
                and nets >= math.ceil(self.min_networks / self.escalation))):
            mx = self.notes.of(addr, now)
        escalated = mx is not None and mx.bad > 0
        if not (full or escalated):
            return None
        if mx is not None and mx.clean and max(src.hours.values()) < self.clean_rate:
            self._skip(CLEAN_AT_MX)
            return None
        src.flagged_hour = hour
        return FlowEvidence(
            time=now, client_addr=addr, destinations=dests, networks=nets,
            hours_active=len(src.hours),
            blocks_active=len({h // BLOCK_HOURS for h in src.hours}),
            packets=sum(src.hours.values()),
            examples=tuple(list(src.dests)[-EXAMPLES:]),
            hourly=tuple(sorted(src.hours.items())),
            mx_delivered=mx.delivered if mx is not None else -1,
            mx_refused=mx.bad if mx is not None else -1,
            escalated=escalated,
        )

    def _expire(self, src: _Source, now: float) -> None:
        horizon = now - self.window
        dests = src.dests
        while dests:
            dst, seen = next(iter(dests.items()))
            if seen > horizon:
                break
            del dests[dst]
            net = network_of(dst)
            left = src.nets[net] - 1
            if left:
                src.nets[net] = left
            else:
                del src.nets[net]
        first_hour = int(horizon // HOUR)
        for h in [h for h in src.hours if h <= first_hour]:
            del src.hours[h]


def _nets(texts: Iterable[str]) -> list[Network]:
    return list(networks(texts))
