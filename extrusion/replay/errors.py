"""How a replay fails: the message for the operator and the exit status."""

from __future__ import annotations

from extrusion.exits import EX_SOFTWARE as EX_SOFTWARE  # the log reading process died


class ReplayError(Exception):
    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status
