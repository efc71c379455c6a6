"""Simulated port-25 traffic as a router samples it, for tests and `benchmarks/flows.py`.

A direct sender sends `per_hour` messages an hour in the hours it is active,
each a TCP session of `PACKETS_PER_MESSAGE` packets from it to one MX host;
the router samples each packet with probability 1/rate. The result is either
sFlow samples (sent to a real `sfacctd`) or the records pmacct's print plugin
writes for them with one-hour time bins (`print_history: 1h`), so a simulated
day can be replayed with its own clock — a collector stamps what it receives
with the time it arrives, so a day cannot be pushed through one in seconds.
"""

from __future__ import annotations

import ipaddress
import json
import random
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from extrusion.flows.sflowgen import Sample

# Client-to-server packets of one SMTP session with a small message: the handshake's
# ACK, EHLO, MAIL, RCPT, DATA, two of body, the final dot, QUIT, the closing ACKs.
PACKETS_PER_MESSAGE = 10
HOUR = 3600


@dataclass(frozen=True)
class Sender:
    """One customer address sending straight to port 25."""

    addr: str
    per_hour: int
    hours: tuple[int, ...] = tuple(range(24))  # hours of the day it sends in
    mx_pool: int = 50_000  # distinct MX hosts its mail goes to (1: one fixed host)
    pool_seed: int = 0


def mx_address(i: int, seed: int = 0) -> str:
    """The i-th MX host of a pool: spread over many /24s as the Internet's are."""
    n = (i * 2654435761 + seed * 40503) % (1 << 24)
    return str(ipaddress.IPv4Address((198 << 24) | n))


def sampled(senders: Iterable[Sender], rate: int, start: float, hours: int,
            seed: int = 1) -> Iterator[tuple[float, Sample]]:
    """(time, sampled packet) for every packet the router samples, in time order."""
    rng = random.Random(seed)
    senders = list(senders)
    for h in range(hours):
        found: list[tuple[float, Sample]] = []
        for s in senders:
            if h % 24 not in s.hours:
                continue
            packets = s.per_hour * PACKETS_PER_MESSAGE
            # Binomial(packets, 1/rate), drawn the cheap way when the mean is small.
            n = _binomial(rng, packets, 1.0 / rate)
            for _ in range(n):
                message = rng.randrange(s.per_hour)
                # Packets of one message go to one host; the message's host is random.
                host = mx_address(rng.randrange(s.mx_pool) if s.mx_pool > 1 else 0,
                                  s.pool_seed)
                t = start + h * HOUR + (message + rng.random()) * HOUR / s.per_hour
                found.append((t, Sample(s.addr, host)))
        found.sort(key=lambda x: x[0])
        yield from found


def _binomial(rng: random.Random, n: int, p: float) -> int:
    if n * p < 30:
        # Poisson approximation by counting exponential gaps (exact enough for p << 1).
        count, t, lam = 0, 0.0, n * p
        while True:
            t += rng.expovariate(1.0)
            if t > lam:
                return count
            count += 1
    return max(0, round(rng.gauss(n * p, (n * p * (1 - p)) ** 0.5)))


def pmacct_records(samples: Iterable[tuple[float, Sample]], rate: int) -> Iterator[str]:
    """The JSON lines pmacct's print plugin writes for these samples with the shipped
    aggregate and one-hour bins: one record per (bin, source, destination)."""
    bins: dict[tuple[int, str, str], list[float]] = {}
    current = None
    for t, s in samples:
        hour = int(t // HOUR)
        if current is not None and hour != current:
            yield from _purge(bins, rate)
        current = hour
        key = (hour, s.src, s.dst)
        if key in bins:
            bins[key][0] += 1
            bins[key][1] = t
        else:
            bins[key] = [1, t]
    yield from _purge(bins, rate)


def _purge(bins: dict[tuple[int, str, str], list[float]], rate: int) -> Iterator[str]:
    for (hour, src, dst), (n, last) in bins.items():
        yield json.dumps({
            "event_type": "purge", "ip_src": src, "ip_dst": dst, "port_dst": 25,
            "ip_proto": "tcp", "sampling_rate": rate, "stamp_inserted": hour * HOUR,
            "stamp_updated": int(last), "packets": int(n), "bytes": int(n) * 1500,
        })
    bins.clear()
