"""NetFlow shops: a line of `nfdump -q -o csv` output of nfcapd's files, as a flow record.

    2026-12-06 01:12:56,2026-12-06 01:13:06,10.000,10.1.2.3,198.51.0.7,40000,25,TCP,...

nfdump's CSV columns start `ts,te,td,sa,da,sp,dp,pr,flg,fwd,stos,ipkt,ibyt`; we read
te (the flow's end), sa, da, dp, pr and ipkt. nfdump prints times in the local
time zone without saying which: run it with `TZ=UTC` (README, "NetFlow via
nfdump"); they are read as UTC. Packets are taken as they are: nfcapd already
multiplies them by the sampling interval an exporter announces (a v5 header, a v9
sampling option); for exporters that announce none, `[flows] sampling_rate` (or
nfcapd's `-s`) applies. Header and summary lines (nfdump without `-q`) and "No
matching flows" are no records: `parse_csv` returns None for them.
"""

from __future__ import annotations

import calendar
import time

from extrusion.flows.records import MAX_PACKETS, BadRecord, FlowRecord, address

# The lines nfdump writes around the records without -q, and for a file without a
# port-25 flow even with it.
NOT_RECORDS = ("ts,te,", "Summary", "flows,bytes,", "No matching flows")
_TE, _SA, _DA, _DP, _PR, _IPKT = 1, 3, 4, 6, 7, 11
_TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
_TCP = ("TCP", "6")


def parse_csv(line: str) -> FlowRecord | None:
    text = line.strip()
    if text.startswith(NOT_RECORDS):
        return None
    fields = text.split(",", _IPKT + 1)
    if len(fields) <= _IPKT:
        raise BadRecord("not an nfdump csv record (too few fields; nfdump -q -o csv)")
    src = address(fields[_SA].strip(), "sa")
    dst = address(fields[_DA].strip(), "da")
    dport = _number(fields[_DP], "dp", 65535)
    packets = _number(fields[_IPKT], "ipkt", MAX_PACKETS)
    te = fields[_TE].strip()
    try:
        end = float(calendar.timegm(time.strptime(te[:19], _TIME_FORMAT)))
    except ValueError:
        raise BadRecord(f"te {te[:40]!r} is not a time") from None
    return FlowRecord(end, src, dst, dport, fields[_PR].strip().upper() in _TCP, packets, 0)


def _number(text: str, name: str, high: int) -> int:
    value = text.strip()
    if not value.isdigit() or int(value) > high:
        raise BadRecord(f"{name} {value[:20]!r} is not a number up to {high}")
    return int(value)
