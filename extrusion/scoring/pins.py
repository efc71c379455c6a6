"""A sender's pin: the operator's (store, CLI, API) or the config's `[[overrides]]`.

An operator's pin wins over the config's; an override of action "limits" only
sets the budget and pins no state.
"""

from __future__ import annotations

from extrusion.scoring.memory import SenderMemory


def pin_of(mem: SenderMemory) -> str | None:
    """The pin in force on `mem` ("block", "hold", "allow", "monitor"...), None for none."""
    if mem.pin:
        return mem.pin
    o = mem.config_pin
    return o.action if o is not None and o.action != "limits" else None


def pin_reason(mem: SenderMemory, pin: str) -> str:
    """The operator's (or the config's) own words for a pin: "block by NOC: stolen"."""
    who = (mem.pinned_by or "operator") if mem.pin else "config"
    why = (mem.pinned_reason if mem.pin else getattr(mem.config_pin, "reason", "")) or ""
    return f"{pin} by {who}: {why}".rstrip(": ")
