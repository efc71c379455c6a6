"""The clock a replay reads classic syslog stamps by (they carry no year).

Opening and reading the logs is `replay.input`'s."""

from __future__ import annotations

import os
import time

from extrusion.replay.input import STDIN


def reference_time(paths: list[str]) -> float:
    """Anchor for the year of classic stamps: when the first file was last written."""
    for p in paths:
        if p != STDIN:
            try:
                return os.stat(p).st_mtime
            except OSError:
                break
    return time.time()
