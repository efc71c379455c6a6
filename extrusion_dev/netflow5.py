"""NetFlow v5 export datagrams, as a router sends them to `nfcapd`, for the tests.

A v5 datagram is a 24-byte header and up to 30 flow records of 48 bytes
(Cisco's "NetFlow Export Datagram Format"). Flow times are the router's
uptime in milliseconds; the header ties uptime to wall-clock seconds. The
header's sampling field carries the mode in its top two bits (1: packet
interval) and the interval in the other fourteen.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

MAX_RECORDS = 30
IPPROTO_TCP = 6
_HEADER = struct.Struct("!HHIIIIBBH")
_RECORD = struct.Struct("!4s4s4sHHIIIIHHBBBBHHBBH")
# The router's uptime at the first datagram: any value, flows are stamped relative to it.
BOOT_MS = 3_600_000


@dataclass(frozen=True, slots=True)
class Flow:
    src: str
    dst: str
    start: float  # POSIX seconds
    end: float
    packets: int = 1
    octets: int = 1500
    dport: int = 25
    sport: int = 40000
    proto: int = IPPROTO_TCP


def datagrams(flows: Sequence[Flow], export_time: float, sampling: int = 1,
              seq: int = 0) -> Iterator[bytes]:
    """The datagrams carrying `flows`, exported at `export_time` (after every flow's end);
    `sampling` 1 in N packets (1: unsampled)."""
    if not 1 <= sampling < 1 << 14:
        raise ValueError("a v5 sampling interval is 1 to 16383")
    secs = int(export_time)
    uptime = BOOT_MS  # the router's uptime at export_time

    def ms(t: float) -> int:
        return max(0, uptime - int((export_time - t) * 1000))

    sampling_field = (1 << 14 | sampling) if sampling > 1 else 0
    for i in range(0, len(flows), MAX_RECORDS):
        chunk = flows[i:i + MAX_RECORDS]
        out = [_HEADER.pack(5, len(chunk), uptime, secs, int((export_time - secs) * 1e9),
                            seq, 0, 0, sampling_field)]
        for f in chunk:
            out.append(_RECORD.pack(
                ipaddress.IPv4Address(f.src).packed, ipaddress.IPv4Address(f.dst).packed,
                bytes(4), 1, 2, f.packets, f.octets, ms(f.start), ms(f.end), f.sport, f.dport,
                0, 0x1b, f.proto, 0, 0, 0, 24, 24, 0))
        seq += len(chunk)
        yield b"".join(out)
