"""pymilter's negotiation and macros, done once per class instead of per connection.

The base of `ExtrusionMilter`: it asks the MTA for the macros its callbacks
name with `@Milter.symlist`, reads them back, and decodes values from
pymilter's C layer as pymilter would. Nothing here knows the engine.
"""

from __future__ import annotations

from typing import Any

import Milter

from extrusion.milter import constants as c

CONTINUE: int = Milter.CONTINUE
# The UTF-8 decoding pymilter applies to envelope and header values (its default).
DECODE_ERRORS = "surrogateescape"


class MacroMilter(Milter.Base):  # type: ignore[misc]  # pymilter has no type hints
    """pymilter's `Base` with a cheaper negotiation and a macro reader that never raises."""

    def negotiate(self, opts: list[int]) -> int:
        """pymilter's negotiation, with the macro lists worked out once per class.

        Base.negotiate looks up every callback that may carry a macro list and
        joins the lists again for every SMTP connection; the outcome is the same.
        """
        try:
            self._actions, protocol, _f1, _f2 = opts
            requests = _macro_requests(type(self))
            if requests and not self._actions & Milter.SETSYMLIST:
                raise Milter.DisabledAction("SETSYMLIST")
            for stage, names in requests:
                self._ctx.setsymlist(stage, names)
            opts[1] = self._protocol = protocol & ~self.protocol_mask()
            opts[2] = 0
            opts[3] = 0
        except Exception:
            # As pymilter does: if negotiation fails, change nothing.
            return int(Milter.ALL_OPTS)
        return CONTINUE

    def setsymlist(self, stage: int, *macros: str) -> Any:
        """Ask the MTA for these macros at `stage`.

        pymilter 1.0.5's own version hands its C module bytes where that wants
        str, so negotiation raised and fell back to "everything, every reply":
        no macro list, and the MTA waiting on every header.
        """
        if not self._actions & Milter.SETSYMLIST:
            raise Milter.DisabledAction("SETSYMLIST")
        return self._ctx.setsymlist(stage, _macro_list(macros))

    def _macro(self, name: str) -> str | bytes | None:
        """A macro's value; its raw bytes when pymilter cannot decode it as UTF-8."""
        try:
            value: str | None = self.getsymval(name)
        except UnicodeDecodeError as exc:
            return bytes(exc.object)
        return value


def _macro_list(macros: tuple[str, ...]) -> str:
    """One stage's macro names as libmilter wants them: one string, space-separated."""
    names = [n for m in macros for n in m.split()]
    if len(names) > c.MAX_MACROS_PER_STAGE:
        raise ValueError(f"at most {c.MAX_MACROS_PER_STAGE} macros per stage")
    return " ".join(names)


_REQUESTS: dict[type, tuple[tuple[int, str], ...]] = {}


def _macro_requests(cls: type) -> tuple[tuple[int, str], ...]:
    """(stage, macro list) for every callback of `cls` marked with @Milter.symlist."""
    try:
        return _REQUESTS[cls]
    except KeyError:
        pass
    found = []
    for name, stage in Milter.MACRO_CALLBACKS.items():
        macros = getattr(getattr(cls, name), "_symlist", None)
        if macros is not None:
            found.append((stage, _macro_list(tuple(macros))))
    requests = _REQUESTS[cls] = tuple(found)
    return requests


def decoded(value: bytes | str) -> str:
    """A value from pymilter's C layer as pymilter's Base decodes it (never raises)."""
    return value.decode("utf-8", DECODE_ERRORS) if isinstance(value, bytes) else value
