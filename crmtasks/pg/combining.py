"""Combining: short calls beyond a few at once are served together, one statement for many callers.

A web server's threads make the same short calls at once (an access check,
the same report). Served one by one, with more threads than cores, each call
pays its own turn: a thread woken to borrow a connection, one round trip,
the connection given back, the next thread woken; and 40 threads spend the
GIL taking it from each other. Here at most ``places`` calls are served at
once. A caller that finds every place taken leaves its request in a line and
waits (off the GIL). A caller holding a place (a *server*) takes its own
request together with every request of the same kind waiting at that
moment, serves them in one go (``run_many``: one statement for all), and
hands each waiter its answer: one wake-up each, with the work done.

Exact as served alone: a server takes the waiting requests *before* it sends
its statement, so every answer is read after its request arrived (a request
never joins a statement already sent); a change committed before a caller
asked is seen by its answer.

Fair and bounded: a server serves its own request and one batch, then hands
its place to the longest waiter (which serves next, its batch taken at that
moment) instead of serving on while its own caller waits. A waiter that
gets no answer within ``timeout_s`` leaves the line with the pool's
PoolExhausted (TurnTakingPool.combiner).
A request ``run_many`` cannot answer together with the others (it returns
``ALONE`` for it, or fails as a whole) is run by its own caller with
``run_one``, in its own thread: its errors are its own.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable, Hashable

# What run_many returns for a request it could not answer with the others: its caller runs it with run_one.
ALONE = object()
# Most requests served by one statement (a bounded array, a bounded wait for the last one served).
MAX_BATCH = 256

_ANSWERED, _SERVE, _RUN_ALONE = 1, 2, 3


class _Ticket:
    """One caller's request in line: a lock of its own, released once its outcome is set.

    ``then``: the ticket answered by the same batch right after this one, whose caller this one's caller wakes as
    soon as it is awake itself (``woken``): a batch wakes its callers one after another, in the order they came.
    """

    __slots__ = ("answer", "key", "lock", "outcome", "request", "then")

    def __init__(self, key: Hashable, request: object) -> None:
        self.key = key
        self.request = request
        self.lock = threading.Lock()
        self.lock.acquire()
        self.outcome = 0
        self.answer = None
        self.then = None

    def settle(self, outcome: int, answer: object = None) -> None:
        self.answer = answer
        self.outcome = outcome
        self.lock.release()

    def woken(self) -> None:
        """This ticket's caller is awake: wake the next caller of its batch, if any."""
        following, self.then = self.then, None
        if following is not None:
            following.lock.release()


class Combiner:
    """At most ``places`` callers served at once; the others' requests are served in batches by those.

    Parameters:
      places(int): Servers at once (each holds a pooled connection while it serves).
      timeout_s(float): Longest a caller waits in line.
      exhausted(callable): The error raised by a caller that waited ``timeout_s`` (the pool's PoolExhausted).

    ``counts``: ``batches`` (statements serving two requests or more) and
    ``combined`` (requests they answered).
    """

    def __init__(self, places: int, timeout_s: float, exhausted: Callable[[], Exception]) -> None:
        self.places = max(1, places)
        self.timeout_s = timeout_s
        self._exhausted = exhausted
        self._busy = 0
        self._lock = threading.Lock()
        self._line: collections.deque[_Ticket] = collections.deque()
        self.counts: collections.Counter = collections.Counter()

    def call(self, key: Hashable, request: object, run_one: Callable[[object], object],
             run_many: Callable[[Hashable, list], list]) -> object:
        """``run_one(request)``'s answer, or that of ``run_many(key, [request, ...])`` served with others of ``key``.

        ``run_many`` returns one answer per request, in order (``ALONE`` for
        one it leaves to ``run_one``); it is only given requests of one key.
        """
        with self._lock:
            if self._busy < self.places and not self._line:
                self._busy += 1
                ticket = None
            else:
                ticket = _Ticket(key, request)
                self._line.append(ticket)
        if ticket is None:  # a place was free and nobody waits: served alone, as without a line
            try:
                return run_one(request)
            finally:
                self._pass_place()
        self._wait(ticket)
        if ticket.outcome == _ANSWERED:
            return ticket.answer
        if ticket.outcome == _RUN_ALONE:
            return run_one(request)
        # A server: this request and those of its kind waiting now, then the place goes on.
        try:
            self._serve(ticket, run_one, run_many)
        finally:
            self._pass_place()
        if ticket.outcome == _ANSWERED:
            return ticket.answer
        return run_one(request)

    def _wait(self, ticket: _Ticket) -> None:
        if not ticket.lock.acquire(timeout=self.timeout_s):
            with self._lock:
                try:
                    self._line.remove(ticket)
                except ValueError:
                    pass  # taken by a server just as the wait ended: its outcome is on the way
                else:
                    raise self._exhausted()
            ticket.lock.acquire()
        ticket.woken()

    def _serve(self, own: _Ticket, run_one, run_many) -> None:
        """Answer ``own`` and the requests of its key waiting now; every ticket taken gets an outcome."""
        batch = [own]
        with self._lock:
            if self._line:
                kept = collections.deque()
                for waiting in self._line:
                    if waiting.key == own.key and len(batch) < MAX_BATCH:
                        batch.append(waiting)
                    else:
                        kept.append(waiting)
                self._line = kept
        if len(batch) == 1:
            own.answer = run_one(own.request)  # raises in its own caller, like an uncombined call
            own.outcome = _ANSWERED
            return
        answers = None
        try:
            answers = run_many(own.key, [ticket.request for ticket in batch])
        except Exception:  # noqa: BLE001 - each caller then runs its own request and meets its own error
            answers = None
        finally:
            if answers is None or len(answers) != len(batch):
                answers = [ALONE] * len(batch)
            self.counts["batches"] += 1
            waiters = []
            for ticket, answer in zip(batch, answers):
                if answer is ALONE:
                    ticket.outcome = _RUN_ALONE
                else:
                    ticket.outcome = _ANSWERED
                    self.counts["combined"] += 1
                ticket.answer = answer
                if ticket is not own:
                    waiters.append(ticket)
            # Woken one after another, in the order they came (each wakes the next, _Ticket.woken): one caller at a
            # time wants the GIL instead of the whole batch at once, and the first to ask is the first answered.
            for ticket, following in zip(waiters, waiters[1:]):
                ticket.then = following
            if waiters:
                waiters[0].lock.release()

    def _pass_place(self) -> None:
        """The place goes to the longest waiter (who serves next), else it is free."""
        with self._lock:
            if self._line:
                self._line.popleft().settle(_SERVE)
            else:
                self._busy -= 1

    @property
    def waiting(self) -> int:
        """Callers in line now."""
        return len(self._line)
