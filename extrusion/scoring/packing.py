"""A message's recipients packed into one text column of its `messages` row (issue 20).

One line per recipient, its fields separated by tabs, trailing empty fields left off:

    address  status  after  dsn  class  reply

`status` is one letter (STATUS_CODE), `after` the outcome's time less the message's in
milliseconds (empty while queued). A delivery's DSN 2.0.0 and class `delivered` are
implied (left out), and its remote reply is not kept: a report's reader wants a
failure's reply, which is. Only each recipient's last outcome is kept (the one a report
shows and counts). Tabs and newlines inside a field become spaces, or a line would split.

The text is capped (RCPTS_CHARS): a message to thousands of recipients would otherwise
be a row rewritten whole by every flush that brings one of its outcomes. Recipients
past the cap have no line; their final outcomes are still counted in the row's
`delivered` and `failed` (`Lines.overflow`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import NamedTuple

STATUS_CODE = {"queued": "q", "sent": "s", "deferred": "d", "bounced": "b", "expired": "e",
               "rejected": "r"}
STATUS_OF = {v: k for k, v in STATUS_CODE.items()}
DELIVERED = frozenset("s")
FAILED = frozenset("ber")
# What a status says of itself: a delivered recipient's DSN and class are nearly always
# these, so they are left out, and a delivery without a DSN says NONE.
IMPLIED = {"s": ("2.0.0", "delivered")}
NONE = "-"
# About 1,500 recipients' lines: a list post's are all kept, a bulk run's are not (each
# flush that brings one of its outcomes rewrites the row whole).
RCPTS_CHARS = 65_536
# Bits of `messages.flags`: three header/envelope booleans, and ORPHAN for a row made
# by outcomes whose submission was never seen (a log replay, a NOQUEUE refusal).
NULL_SENDER, AUTO_REPLY, LIST_LIKE, ORPHAN = 1, 2, 4, 8
_SEPARATORS = str.maketrans("\t\n\r", "   ")


class Line(NamedTuple):
    """One recipient's last outcome; `time` absolute (None while queued)."""

    status: str  # the status's name ("sent", "queued", ...)
    time: float | None = None
    dsn: str = ""
    cls: str = ""
    reply: str = ""


def clean(value: str) -> str:
    return value.translate(_SEPARATORS) if ("\t" in value or "\n" in value
                                            or "\r" in value) else value


@dataclass
class Lines:
    """A message's recipients by address, in the order first seen, and the final
    outcomes counted for recipients past the cap (no line of their own)."""

    by_address: dict[str, Line] = field(default_factory=dict)
    overflow_delivered: int = 0
    overflow_failed: int = 0
    chars: int = 0

    @classmethod
    def unpack(cls, text: str, base: float, delivered: int = 0, failed: int = 0) -> Lines:
        """The lines of a stored `rcpts` (times relative to `base`), with the row's
        counts: what they count beyond the lines is the overflow."""
        out = cls(chars=len(text))
        for raw in text.split("\n") if text else ():
            f = raw.split("\t") + [""] * 5
            code = f[1] or "q"
            dsn, kind = IMPLIED.get(code, ("", ""))
            out.by_address[f[0]] = Line(
                STATUS_OF.get(code, code), base + int(f[2]) / 1000 if f[2] else None,
                "" if f[3] == NONE else f[3] or dsn, "" if f[4] == NONE else f[4] or kind,
                f[5])
        d, fl = out.finals()
        out.overflow_delivered, out.overflow_failed = max(delivered - d, 0), max(failed - fl, 0)
        return out

    def queued(self, address: str) -> None:
        """A recipient of the submission: a line unless it has one (or no room)."""
        address = clean(address)
        if address not in self.by_address and self._room(address, 4):
            self.by_address[address] = Line("queued")

    def outcome(self, address: str, status: str, time: float, dsn: str, cls: str,
                reply: str) -> None:
        """An outcome replaces the recipient's line unless that holds a later one (a log
        read again after a crash, a deferral logged after the bounce was written)."""
        address = clean(address)
        old = self.by_address.get(address)
        if old is not None and old.time is not None and old.time > time:
            return
        line = Line(status, time, clean(dsn), clean(cls),
                    "" if STATUS_CODE.get(status) in DELIVERED else clean(reply))
        if old is not None or self._room(address, 16 + len(line.reply)):
            self.by_address[address] = line
        elif STATUS_CODE.get(status) in DELIVERED:
            self.overflow_delivered += 1
        elif STATUS_CODE.get(status) in FAILED:
            self.overflow_failed += 1

    def _room(self, address: str, extra: int) -> bool:
        need = len(address) + extra
        if self.chars + need > RCPTS_CHARS:
            return False
        self.chars += need
        return True

    def finals(self) -> tuple[int, int]:
        """(delivered, failed) among the lines."""
        codes = [STATUS_CODE.get(x.status, "") for x in self.by_address.values()]
        return (sum(c in DELIVERED for c in codes), sum(c in FAILED for c in codes))

    def pack(self, base: float) -> tuple[str, int, int]:
        """The `rcpts` text, outcome times relative to `base` (the row's time), and the
        message's (delivered, failed); lines past the cap are counted only."""
        out: list[str] = []
        size = 0
        delivered, failed = self.overflow_delivered, self.overflow_failed
        for address, x in self.by_address.items():
            code = STATUS_CODE.get(x.status, x.status[:1])
            delivered += code in DELIVERED
            failed += code in FAILED
            # Negative when an outcome's clock ran behind the submission's (two hosts).
            after = "" if x.time is None else str(round((x.time - base) * 1000))
            dsn, kind = IMPLIED.get(code, ("", ""))
            line = "\t".join((address, code, after, "" if x.dsn == dsn else x.dsn or NONE,
                              "" if x.cls == kind else x.cls or NONE, x.reply)).rstrip("\t")
            size += len(line) + 1
            if size <= RCPTS_CHARS + 1:
                out.append(line)
        return "\n".join(out), delivered, failed


class Recipient(NamedTuple):
    """One line read back: absolute outcome time (the message's while queued)."""

    time: float
    recipient: str
    status: str
    dsn: str
    cls: str
    reply: str


def recipients(text: str, base: float) -> list[Recipient]:
    """The recipients of a stored `rcpts`, as a report reads them."""
    return [Recipient(base if x.time is None else x.time, a, x.status, x.dsn, x.cls, x.reply)
            for a, x in Lines.unpack(text, base).by_address.items()]


def flags(null_sender: bool, auto_reply: bool, list_like: bool) -> int:
    return (NULL_SENDER if null_sender else 0) | (AUTO_REPLY if auto_reply else 0) \
        | (LIST_LIKE if list_like else 0)
