"""Admission: at most a few calls of one kind run at once in a process; the others wait their turn, off the GIL.

A search is mostly Python holding the GIL (the search index counted in
memory) around one round trip. A web server's 40 threads searching at once
do not search faster than a few: they take the GIL from each other (each
handover a context switch, the forced switch every few milliseconds in the
middle of someone's count), and they take 40 turns at a pool of 20. So at
most ``places`` such calls run at once; a caller that finds them all taken
waits on a lock of its own (crmtasks.pg.turns.Turns), first come first
served, and is woken once, when its turn comes. With more callers than
places the process then behaves as it does with ``places`` callers.

The wait is bounded like the pool's: a caller that gets no place within
``timeout_s`` gets the pool's PoolExhausted.
"""

from __future__ import annotations

from collections.abc import Callable

from crmtasks.pg.turns import Turns


class Admission:
    """``with admission:`` runs the block once one of ``places`` places is free, waiting in line at most ``timeout_s``.

    Parameters:
      places(int): Calls of this kind running at once.
      timeout_s(float): Longest a caller waits for its turn.
      exhausted(callable): The error raised by a caller that waited ``timeout_s`` (the pool's PoolExhausted).

    One object serves every thread: the turn is the thread's, not the
    object's, so entering holds no per-call state.
    """

    __slots__ = ("_exhausted", "_turns", "places", "timeout_s")

    def __init__(self, places: int, timeout_s: float, exhausted: Callable[[], Exception]) -> None:
        self.places = max(1, places)
        self.timeout_s = timeout_s
        self._exhausted = exhausted
        self._turns = Turns(self.places)

    def __enter__(self) -> None:
        if not self._turns.acquire(self.timeout_s)[0]:
            raise self._exhausted()

    def __exit__(self, *exc_info) -> None:
        self._turns.release()

    @property
    def waiting(self) -> int:
        """Callers waiting for their turn now."""
        return self._turns.waiting
