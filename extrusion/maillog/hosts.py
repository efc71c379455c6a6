"""Which other hosts write to a log: the host fields of Postfix lines near its end that are
none of this host's names (`check-config --mta postfix` warns of a shared log)."""

from __future__ import annotations

import os

from extrusion.maillog.lines import LineSplitter

#: How much of the end of the log `foreign_hosts` reads.
TAIL_BYTES = 256 * 1024


def foreign_hosts(path: str, names: tuple[str, ...], tail_bytes: int = TAIL_BYTES) -> list[str]:
    """Host fields of Postfix lines near the end of the log at `path` that are none of
    `names`, most frequent first ([] when the log cannot be read)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - tail_bytes))
            data = f.read(tail_bytes)
    except OSError:
        return []
    splitter = LineSplitter()
    counts: dict[str, int] = {}
    for raw in data.decode("utf-8", "replace").splitlines()[1:]:  # the first may be cut
        parts = splitter.parts(raw)
        if parts is None or not parts[2].startswith("postfix"):
            continue
        host = parts[1]
        if host.lower() not in names:
            counts[host] = counts.get(host, 0) + 1
    return sorted(counts, key=lambda h: -counts[h])
