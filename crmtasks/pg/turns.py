"""Turns: a counting gate whose waiters are served first come, first served, each woken alone, off the GIL.

The pool lends its connections through one (crmtasks.pg.pool), and
admission (crmtasks.pg.admission) limits how many calls of one kind run at
once with another. A waiter blocks on a lock of its own, so a released place
wakes exactly the thread whose turn it is, and nobody else.
"""

from __future__ import annotations

import collections
import threading


class _Waiter:
    """One caller waiting for a place: a lock of its own, released to hand it the place and its item."""

    __slots__ = ("lock", "item")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.lock.acquire()
        self.item = None


class Turns:
    """A counting gate whose waiters are served first come, first served, keeping what holders give back.

    A place comes with an item: the one given back most recently (an idle
    connection), or None when none is kept (the holder then makes one). A
    released place goes straight to the longest waiter, with the item given
    back (it is never put back for another thread to grab), so no caller
    waits more than its turn; only that waiter is woken. With no waiter the
    item is kept for the next holder, most recent first.

    Parameters:
      places(int): How many holders at once.
    """

    def __init__(self, places: int) -> None:
        self._free = places
        self._idle: list = []  # items kept, the most recently given back last (at most _free of them)
        self._lock = threading.Lock()
        self._waiters: collections.deque[_Waiter] = collections.deque()

    def acquire(self, timeout_s: float) -> tuple[bool, object]:
        """``(True, item or None)``: a place, waiting at most ``timeout_s`` seconds; ``(False, None)`` when none came."""
        with self._lock:
            if self._free and not self._waiters:
                self._free -= 1
                return True, (self._idle.pop() if self._idle else None)
            waiter = _Waiter()
            self._waiters.append(waiter)
        if waiter.lock.acquire(timeout=timeout_s):
            return True, waiter.item
        with self._lock:
            try:
                self._waiters.remove(waiter)
            except ValueError:
                return True, waiter.item  # handed over (under this lock) just as the wait ended
            return False, None

    def release(self, item: object = None) -> None:
        """Give the place back with ``item`` (None: nothing worth keeping): to the longest waiter if any, else kept."""
        with self._lock:
            if self._waiters:
                waiter = self._waiters.popleft()
                waiter.item = item
                waiter.lock.release()
                return
            self._free += 1
            if item is not None:
                self._idle.append(item)

    def drain(self) -> list:
        """Take every kept item out (their places stay free)."""
        with self._lock:
            items, self._idle = self._idle, []
        return items

    @property
    def waiting(self) -> int:
        """Callers waiting for a place now."""
        return len(self._waiters)

    @property
    def kept(self) -> int:
        """Items kept for the next holders now."""
        return len(self._idle)
