"""The one exception a configuration problem raises, already phrased for the operator."""

from __future__ import annotations

import os


class ConfigError(Exception):
    """A configuration problem, already phrased for the operator."""

    def __init__(self, path: str | os.PathLike[str], key: str, reason: str) -> None:
        self.path = str(path)
        self.key = key
        self.reason = reason
        where = f"{self.path}: {key}" if key else self.path
        super().__init__(f"{where}: {reason}")

