"""Build sFlow v5 datagrams: flow samples carrying a sampled Ethernet/IPv4/TCP header.

What a router's sFlow agent sends to a collector (sFlow version 5, sflow.org
`sflow_version_5.txt`), reduced to the one record the port-25 analysis needs:
a flow sample whose `sampled_header` holds the first bytes of the packet. The
tests send these to a real `sfacctd`; an operator can use them to check that a
collector is listening (`extrusion flows` never sends sFlow itself).
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Sequence
from dataclasses import dataclass

SFLOW_VERSION = 5
ADDRESS_IPV4 = 1
FLOW_SAMPLE = 1  # enterprise 0, format 1
RAW_PACKET_HEADER = 1  # enterprise 0, format 1
HEADER_ETHERNET = 1  # header_protocol ETHERNET-ISO88023
ETHERTYPE_IPV4 = 0x0800
IPPROTO_TCP = 6
TCP_PSH_ACK = 0x18
# sFlow agents put at most this many samples in one datagram in practice (MTU-bound).
MAX_SAMPLES_PER_DATAGRAM = 10


@dataclass(frozen=True)
class Sample:
    """One sampled packet: a TCP segment from `src` to `dst`:`dport`."""

    src: str
    dst: str
    dport: int = 25
    sport: int = 40000
    frame_length: int = 1500


def _ipv4(addr: str) -> bytes:
    return ipaddress.IPv4Address(addr).packed


def packet_header(s: Sample) -> bytes:
    """Ethernet + IPv4 + TCP headers (54 bytes) of the sampled packet."""
    eth = b"\x02\x00\x00\x00\x00\x02" + b"\x02\x00\x00\x00\x00\x01" + struct.pack(
        "!H", ETHERTYPE_IPV4)
    total = s.frame_length - 14
    ip_wo_sum = struct.pack("!BBHHHBBH4s4s", 0x45, 0, total, 1, 0x4000, 64, IPPROTO_TCP, 0,
                            _ipv4(s.src), _ipv4(s.dst))
    ip = ip_wo_sum[:10] + struct.pack("!H", _checksum(ip_wo_sum)) + ip_wo_sum[12:]
    tcp = struct.pack("!HHIIBBHHH", s.sport, s.dport, 1, 1, 0x50, TCP_PSH_ACK, 65535, 0, 0)
    return eth + ip + tcp


def _checksum(data: bytes) -> int:
    total: int = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _pad4(data: bytes) -> bytes:
    return data + b"\x00" * (-len(data) % 4)


def flow_sample(s: Sample, seq: int, rate: int, pool: int, input_if: int = 1) -> bytes:
    """One flow_sample with one raw packet header record."""
    header = packet_header(s)
    record = struct.pack("!IIII", HEADER_ETHERNET, s.frame_length, 4, len(header)) + _pad4(header)
    body = struct.pack("!IIIIIIII", seq, input_if, rate, pool, 0, input_if, 2, 1)
    body += struct.pack("!II", RAW_PACKET_HEADER, len(record)) + record
    return struct.pack("!II", FLOW_SAMPLE, len(body)) + body


def datagram(samples: Sequence[Sample], *, rate: int, agent: str = "127.0.0.1",
             seq: int = 1, first_sample_seq: int = 1, uptime_ms: int = 1000) -> bytes:
    """An sFlow v5 datagram from `agent` with `samples` taken 1 in `rate`."""
    if not 0 < len(samples) <= MAX_SAMPLES_PER_DATAGRAM:
        raise ValueError(f"1 to {MAX_SAMPLES_PER_DATAGRAM} samples per datagram")
    head = struct.pack("!II4sIIII", SFLOW_VERSION, ADDRESS_IPV4, _ipv4(agent), 0, seq,
                       uptime_ms, len(samples))
    body = b"".join(
        flow_sample(s, first_sample_seq + i, rate, (first_sample_seq + i) * rate)
        for i, s in enumerate(samples))
    return head + body


def datagrams(samples: Sequence[Sample], *, rate: int, agent: str = "127.0.0.1",
              seq: int = 1) -> list[bytes]:
    """`samples` packed into as many datagrams as they need, numbered from `seq`."""
    out = []
    step = MAX_SAMPLES_PER_DATAGRAM
    for n, i in enumerate(range(0, len(samples), step)):
        out.append(datagram(samples[i:i + step], rate=rate, agent=agent, seq=seq + n,
                            first_sample_seq=1 + i, uptime_ms=1000 + n))
    return out
