"""Who gets a live (kernel-backed) view of the dashboard, and who waits in line.

The server asks `enter` for each page view: `live` when a kernel is free for it and nobody is
waiting before it, else a ticket and a place in line (the view is answered at once with the
shared data and a banner saying so). A waiting page asks `poll` every few seconds; when a
kernel frees up the ticket at the head is admitted and kept for it `claim_seconds`, and the
page comes back with the ticket to take it. A page that stopped asking (closed) leaves the line
after `gone_seconds`. The kernel manager enforces the bound itself; this only decides who
waits, first come first served. Pure bookkeeping, so it is tested without a server.
"""

from __future__ import annotations

import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

LIVE, WAIT = "live", "wait"


@dataclass
class Ticket:
    id: str
    since: float
    seen: float
    admitted: float = 0.0  # when it was let in (0: still waiting)


class Admission:
    """A first-come-first-served line in front of `free()` live views (views that can start
    now: a ready pre-heated kernel, or room under the bound)."""

    def __init__(
        self,
        free: Callable[[], int],
        claim_seconds: float = 30.0,
        gone_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        self._free, self._clock = free, clock
        self.claim_seconds, self.gone_seconds = claim_seconds, gone_seconds
        self._waiting: OrderedDict[str, Ticket] = OrderedDict()
        self._admitted: dict[str, Ticket] = {}

    def enter(self, ticket: str | None = None) -> tuple[str, Ticket | None]:
        """A page view: (`LIVE`, None) to serve it now, or (`WAIT`, its ticket)."""
        self.tidy()
        if ticket and ticket in self._admitted:
            del self._admitted[ticket]
            return LIVE, None
        now = self._clock()
        if ticket and ticket in self._waiting:
            found = self._waiting[ticket]
            found.seen = now
            return WAIT, found
        if not self._waiting and self.free() > 0:
            return LIVE, None
        found = Ticket(secrets.token_urlsafe(16), now, now)
        self._waiting[found.id] = found
        return WAIT, found

    def poll(self, ticket: str) -> tuple[str, int]:
        """A waiting page asks: ("go", 0) when its turn came, ("wait", place) while in line,
        ("unknown", 0) when the ticket is not (or no longer) in line."""
        self.tidy()
        if ticket in self._admitted:
            return "go", 0
        found = self._waiting.get(ticket)
        if found is None:
            return "unknown", 0
        found.seen = self._clock()
        return WAIT, self.place(ticket)

    def place(self, ticket: str) -> int:
        """1 for the head of the line."""
        for i, key in enumerate(self._waiting, start=1):
            if key == ticket:
                return i
        return 0

    def free(self) -> int:
        """Live views that can start now and are not promised to an admitted ticket."""
        return self._free() - len(self._admitted)

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    @property
    def admitted(self) -> int:
        return len(self._admitted)

    def tidy(self) -> None:
        """Forget closed pages and unclaimed turns, then let the head of the line in."""
        now = self._clock()
        for key in [k for k, t in self._admitted.items() if now - t.admitted > self.claim_seconds]:
            del self._admitted[key]
        for key in [k for k, t in self._waiting.items() if now - t.seen > self.gone_seconds]:
            del self._waiting[key]
        while self._waiting and self.free() > 0:
            _, head = self._waiting.popitem(last=False)
            head.admitted = now
            self._admitted[head.id] = head
