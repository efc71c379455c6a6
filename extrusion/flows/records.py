"""One flow record as pmacct's print plugin writes it (`print_output: json`), checked.

    {"ip_src": "10.1.2.3", "ip_dst": "198.51.100.7", "port_dst": 25, "ip_proto": "tcp",
     "sampling_rate": 2000, "stamp_inserted": 1764972000, "stamp_updated": 1764972060,
     "packets": 1, "bytes": 1500}

Only the fields the analysis needs are read; anything else is ignored, so a
config aggregating more primitives still works. A record that is not a JSON
object, lacks a field or carries a wrong value raises `BadRecord` with one
line saying why.
"""

from __future__ import annotations

import calendar
import json
import socket
import time
from dataclasses import dataclass
from typing import Any

from extrusion.netaddr import ip_of

SMTP_PORT = 25
IPPROTO_TCP = 6
# pmacct writes the protocol by name, or by number with `protos_numeric` (or when unknown).
_TCP_NAMES = ("tcp", "6", 6)
# Time fields in the order we trust them: the end of the time bin's activity first.
_TIME_FIELDS = ("stamp_updated", "timestamp_end", "timestamp_arrival", "stamp_inserted",
                "timestamp_start")
# A record claiming more packets than this is a garbled one, not traffic.
MAX_PACKETS = 10**12
MAX_SAMPLING_RATE = 10**7
_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"


class BadRecord(ValueError):
    """A line that is no usable flow record; the message says why in one line."""


@dataclass(frozen=True, slots=True)
class FlowRecord:
    time: float
    src: str
    dst: str
    dport: int
    tcp: bool
    packets: int
    sampling_rate: int  # 0 when the record does not say


def parse_json(line: str) -> FlowRecord:
    """A JSON line of pmacct's print plugin (`extrusion.flows.parse` picks the format)."""
    try:
        data = json.loads(line)
    except ValueError:
        raise BadRecord("not JSON") from None
    if not isinstance(data, dict):
        raise BadRecord("not a JSON object")
    src = _field_address(data, "ip_src")
    dst = _field_address(data, "ip_dst")
    dport = _int(data, "port_dst", 0, 65535)
    proto = data.get("ip_proto")
    if proto is None:
        raise BadRecord("no ip_proto (aggregate on proto)")
    packets = _int(data, "packets", 0, MAX_PACKETS)
    rate = _int(data, "sampling_rate", 0, MAX_SAMPLING_RATE) if "sampling_rate" in data else 0
    return FlowRecord(_time(data), src, dst, dport, proto in _TCP_NAMES, packets, rate)


def _field_address(data: dict[str, Any], name: str) -> str:
    value = data.get(name)
    if not isinstance(value, str):
        raise BadRecord(f"no {name} (aggregate on src_host and dst_host)")
    return address(value, name)


def address(value: str, name: str) -> str:
    """`value` as the canonical text of its IP address (BadRecord naming `name` if none)."""
    if ":" not in value:
        # inet_pton takes only the canonical dotted quad (no leading zeros, four parts),
        # at a tenth of the cost of ipaddress: two addresses in every record.
        try:
            socket.inet_pton(socket.AF_INET, value)
            return value
        except OSError:
            pass
    ip = ip_of(value)  # canonical IPv6, IPv4-mapped folded, as every sender key is
    if ip is None:
        raise BadRecord(f"{name} {value[:60]!r} is not an IP address")
    return str(ip)


def _int(data: dict[str, Any], name: str, low: int, high: int) -> int:
    value = data.get(name)
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadRecord(f"{name} is missing or not an integer")
    if not low <= value <= high:
        raise BadRecord(f"{name} {value} is out of range")
    return value


def _time(data: dict[str, Any]) -> float:
    """Epoch seconds (`timestamps_since_epoch: true`) or pmacct's UTC text form."""
    for name in _TIME_FIELDS:
        value = data.get(name)
        if value is None or value == "":
            continue
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):
            try:
                if value.replace(".", "", 1).isdigit():
                    return float(value)
                return float(calendar.timegm(time.strptime(value[:19], _TIME_FORMAT)))
            except ValueError:
                raise BadRecord(f"{name} {value[:40]!r} is not a time") from None
        raise BadRecord(f"{name} is not a time")
    raise BadRecord("no time (print_history, or timestamp_start in the aggregate)")
