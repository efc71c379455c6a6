"""The engine's exchange with the other smarthosts on one store (`[store] shared_*`).

Each host writes its own failure windows and reads the others' back, and reads
the others' use of restricted senders' budgets; both lag by one flush
interval. Owned by the store synchroniser (sync.py), kept apart from its own
writes: a single host never calls it.
"""

from __future__ import annotations

from collections.abc import Callable

from extrusion.scoring.book import SenderBook
from extrusion.scoring.failwindow import PRUNE_SECONDS, FailureShare
from extrusion.scoring.limits import NO_OTHERS
from extrusion.scoring.store import Store


class SharedWindows:
    """The other hosts' failure windows and budget use, for the senders in play here."""

    def __init__(self, book: SenderBook, store: Store,
                 failed: Callable[[str, Exception], None]) -> None:
        self.book = book
        self.store = store
        self.failed = failed  # tells the synchroniser the store did not answer
        self.failures = FailureShare()  # the failure window the hosts share
        self.shared: set[str] = set()  # senders whose budgets count other hosts' use

    def share_failures(self, now: float) -> None:
        """This host's failure windows out and, while any is in play here or elsewhere,
        the other hosts' back in: one flush interval's lag (failwindow.py)."""
        book = self.book
        if not book.config.store.shared_failures:
            return
        with book.lock:
            snapshots = self.failures.drain()
        prune = None
        if now >= self.failures.next_prune:
            self.failures.next_prune = now + PRUNE_SECONDS
            prune = now - book.window
        if snapshots or prune is not None:
            try:
                self.store.save_failure_windows(book.mta, snapshots, prune)
            except Exception as exc:
                with book.lock:
                    self.failures.restore(snapshots)
                self.failed("writing failure windows", exc)
                return
        if snapshots or self.failures.others:
            self.refresh_failures(now)

    def refresh_failures(self, now: float) -> None:
        """The other hosts' failure windows of the senders in play here (failwindow.py)."""
        book = self.book
        try:
            rows = self.store.others_failures(book.mta, now - book.window)
        except Exception as exc:
            self.failed("reading the other hosts' failure windows", exc)
            return
        with book.lock:
            self.failures.adopt(book.senders, rows)

    def refresh_use(self, now: float) -> None:
        """The other hosts' share of restricted senders' budgets (shared.py)."""
        book = self.book
        try:
            uses = self.store.others_use(book.mta, now, book.judge.probation.window)
        except Exception as exc:
            self.failed("reading the other hosts' budgets", exc)
            return
        with book.lock:
            for key in self.shared - uses.keys():
                mem = book.senders.get(key)
                if mem is not None:
                    mem.rates.others = NO_OTHERS
            for key, use in uses.items():
                mem = book.senders.get(key)
                if mem is not None:
                    mem.rates.others = use
            self.shared = {k for k in uses if k in book.senders}
