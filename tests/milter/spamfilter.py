"""A third-party spam filter's milter, as the MX wiring test needs one: it marks every
message the way SpamAssassin's and rspamd's milters do (headers added at end of message).

Run as `python spamfilter.py PORT`; serves inet:PORT@127.0.0.1 until killed.
"""

from __future__ import annotations

import sys

import Milter


class SpamFilter(Milter.Base):  # type: ignore[misc]
    def eom(self) -> int:
        self.addheader("X-Spam-Flag", "YES")
        self.addheader("X-Spamd-Result", "default: True [15.20 / 15.00]; BAYES_SPAM(5.10)")
        return int(Milter.ACCEPT)


def main() -> None:
    Milter.factory = SpamFilter
    Milter.set_flags(Milter.ADDHDRS)
    Milter.runmilter("spamfilter", f"inet:{int(sys.argv[1])}@127.0.0.1", 60)


if __name__ == "__main__":
    main()
