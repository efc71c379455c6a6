"""A sender's lazy parts: its nine evidence windows and its baseline, made on first use.

Properties over private slots, not a `__getattr__`: on CPython 3.11 a class with a
Python `__getattr__` gets a getattr hook that stops LOAD_ATTR from specialising for
EVERY attribute of the class (a sender's state, key, pending, dirty, ...), not only
for the lazy ones; measured, a slot read went from ~26 ns to ~75 ns. A property
costs a call, but only where a window or the baseline is read (benchmarks/README.md,
"Issue 17, seventh round: SenderMemory without __getattr__").

Written out one by one, not made by a factory: each getter then reads its own slot
with a specialised LOAD_ATTR instead of a `getattr(self, name)` call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from extrusion.scoring.baseline import Baseline
from extrusion.scoring.limits import RateState

if TYPE_CHECKING:
    from extrusion.scoring.windowset import WindowSet


class LazyParts(RateState):
    """The lazy parts of `SenderMemory`: an unset slot until first read (made
    then by `_window`, which `SenderMemory` defines with the sender's spans)."""

    __slots__ = (
        "_attempted",
        "_auto_failures",
        "_baseline",
        "_env_domains",
        "_failed",
        "_helos",
        "_lists",
        "_rcpt_domains",
        "_refused",
        "_shown",
    )
    # Unset until made (an unset slot costs its pointer only).
    _failed: WindowSet
    _auto_failures: WindowSet
    _lists: WindowSet
    _helos: WindowSet
    _refused: WindowSet
    _attempted: WindowSet
    _env_domains: WindowSet
    _rcpt_domains: WindowSet
    _shown: WindowSet
    _baseline: Baseline

    def _window(self, name: str) -> WindowSet:
        """A new window for `name` (SenderMemory's: it knows the sender's spans)."""
        raise NotImplementedError

    def made(self, name: str) -> Any:
        """The lazy part `name` if it was made, else None (without making it)."""
        return getattr(self, "_" + name, None)

    @property
    def baseline(self) -> Baseline:
        try:
            return self._baseline
        except AttributeError:
            self._baseline = value = Baseline()
            return value

    @baseline.setter
    def baseline(self, value: Baseline) -> None:
        self._baseline = value

    @property
    def failed(self) -> WindowSet:
        """Distinct failed recipients that count."""
        try:
            return self._failed
        except AttributeError:
            self._failed = value = self._window("failed")
            return value

    @property
    def auto_failures(self) -> WindowSet:
        """Failed auto-replies (rejection daemon)."""
        try:
            return self._auto_failures
        except AttributeError:
            self._auto_failures = value = self._window("auto_failures")
            return value

    @property
    def lists(self) -> WindowSet:
        """Distinct mailing lists."""
        try:
            return self._lists
        except AttributeError:
            self._lists = value = self._window("lists")
            return value

    @property
    def helos(self) -> WindowSet:
        """Distinct (anomaly kind, helo)."""
        try:
            return self._helos
        except AttributeError:
            self._helos = value = self._window("helos")
            return value

    @property
    def refused(self) -> WindowSet:
        """Distinct recipients refused while throttled."""
        try:
            return self._refused
        except AttributeError:
            self._refused = value = self._window("refused")
            return value

    @property
    def attempted(self) -> WindowSet:
        """Distinct recipients with any outcome."""
        try:
            return self._attempted
        except AttributeError:
            self._attempted = value = self._window("attempted")
            return value

    @property
    def env_domains(self) -> WindowSet:
        """Distinct envelope-sender domains (extrusion.scoring.shown)."""
        try:
            return self._env_domains
        except AttributeError:
            self._env_domains = value = self._window("env_domains")
            return value

    @property
    def rcpt_domains(self) -> WindowSet:
        """Distinct recipient domains (extrusion.scoring.shown)."""
        try:
            return self._rcpt_domains
        except AttributeError:
            self._rcpt_domains = value = self._window("rcpt_domains")
            return value

    @property
    def shown(self) -> WindowSet:
        """Submission finding kinds already counted (extrusion.scoring.shown)."""
        try:
            return self._shown
        except AttributeError:
            self._shown = value = self._window("shown")
            return value
