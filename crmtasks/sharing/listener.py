"""Keeping the memory of ``notify`` mode honest: one LISTEN connection per process, in a thread of its own.

Triggers (migration 0008_sharing_notify.sql) send a notification on channel
``crmtasks_sharing`` in the same transaction as every change to what a
check reads: an epoch bump (roles, users, rules, defaults) or a record's
owner, account or criteria fields. PostgreSQL delivers notifications when,
and only if, their transaction commits, in commit order. This thread applies
them to the process's memory: a record's facts are forgotten, the known
epoch advances (so cached visibilities of older epochs stop being used).

The memory is trusted only while ``state.listening``:
- before the first LISTEN, and from the moment the connection is found lost
  until a new one listens, checks answer in ``exact`` mode;
- a new connection first LISTENs, then forgets every record fact and reads
  the current epoch: nothing a missed notification could have changed
  survives a reconnection.

``sync()`` is the read-your-writes fence: the thread sends a notification of
its own on its connection and waits for it to come back. Everything committed
before the call was queued before it, and the thread applies notifications in
order, so once it is back every earlier change is applied.

The connection is a plain psycopg2 one, never from the pool (it is held
for the life of the process). After fork() the child never touches the
parent's connection (closing it would end the parent's session): it
starts a thread and a connection of its own on first use.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
import os
import select
import threading
import time
import uuid
import weakref

import psycopg2
import psycopg2.extensions

from crmtasks.sharing.cache import LocalRecordCache
from crmtasks.sharing.entities import ENTITIES
from crmtasks.sharing.visibility import Epoch

logger = logging.getLogger(__name__)

CHANNEL = "crmtasks_sharing"
_EPOCH_SQL = "SELECT epoch, token::text FROM sharing_epoch"
# Seconds select() waits before polling an idle connection anyway (a dead peer is found by keepalives too).
_IDLE_POLL_S = 5.0
# TCP keepalives of the listening connection: a silently dead server is noticed within about 25 s.
_KEEPALIVES = {"keepalives": 1, "keepalives_idle": 10, "keepalives_interval": 5, "keepalives_count": 3}

# Connections inherited through fork(): kept referenced, never closed or collected (see the module's doc).
_INHERITED: list = []
_LISTENERS: weakref.WeakSet = weakref.WeakSet()


@dataclasses.dataclass(frozen=True)
class ListenState:
    """What the listener knows, replaced as a whole (reading it needs no lock).

    Parameters:
      listening(bool): True while memory may answer checks.
      session(int): Counts connections that reached LISTEN; changes on every reconnection.
      epoch(Epoch|None): The newest sharing epoch known while listening.
    """

    listening: bool
    session: int
    epoch: Epoch | None


class _SyncWaiter:
    def __init__(self) -> None:
        self.event = threading.Event()
        self.arrived = False


class SharingListener:
    """The thread that LISTENs for sharing changes and applies them to this process's memory.

    Parameters:
      url(str): libpq URL of the CRM database.
      records(LocalRecordCache): The record facts that notifications invalidate.
      reconnect_delay_s(float): Seconds before the first reconnection attempt; doubles up to 2 s.
    """

    def __init__(self, url: str, records: LocalRecordCache, *, reconnect_delay_s: float = 0.05) -> None:
        self.url = url
        self.records = records
        self.reconnect_delay_s = reconnect_delay_s
        self.state = ListenState(False, 0, None)
        self.counts: collections.Counter = collections.Counter()
        self.backend_pid: int | None = None
        self._closed = False
        self._process_state()
        _LISTENERS.add(self)

    def _process_state(self) -> None:
        """What belongs to one process: the thread, its connection, its wake-up pipe, the lock.

        Lock order: ``records.lock`` first, then ``_lock`` (the state and the fences).
        """
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._listening = threading.Event()
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_read, False)
        os.set_blocking(self._wake_write, False)
        self._waiters: dict[str, _SyncWaiter] = {}
        self._to_send: collections.deque[str] = collections.deque()
        self._reset_requested = False
        self._conn = None

    # -- the caller's side ---------------------------------------------------

    def start(self) -> None:
        """Start the thread if it is not running (lazily, on first use; cheap when it is)."""
        if self._thread is not None or self._closed:
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="crmtasks-sharing-listener", daemon=True)
                self._thread.start()

    def wait_listening(self, timeout_s: float) -> bool:
        """Start if needed and wait up to ``timeout_s`` seconds for the connection to listen; True when it does."""
        self.start()
        return not self._closed and self._listening.wait(timeout_s)

    def sync(self, timeout_s: float = 5.0) -> bool:
        """Return once every notification committed before the call is applied to this process's memory.

        True: applied (memory answers are current as of the call). False, at
        once: not listening, so checks answer in exact mode (and a later
        reconnection forgets everything before memory answers again). Also
        False when the fence does not come back within ``timeout_s`` seconds:
        the connection is then treated as lost.
        """
        deadline = time.monotonic() + timeout_s
        self.start()
        if not self.state.listening:
            return False
        waiter = _SyncWaiter()
        token = uuid.uuid4().hex
        with self._lock:
            if not self.state.listening:
                return False
            self._waiters[token] = waiter
            self._to_send.append(token)
        self._wake()
        waiter.event.wait(max(0.0, deadline - time.monotonic()))
        if waiter.arrived:
            return True
        if not waiter.event.is_set():
            logger.warning("sharing listener: sync() got no answer in %.1f s; reconnecting", timeout_s)
            self._lose()
            self._reset_requested = True
            self._wake()
        return False

    def stop(self, timeout_s: float = 5.0) -> None:
        """Stop the thread and close its connection; checks are exact from then on. Idempotent."""
        self._closed = True
        self._stopping.set()
        self._wake()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout_s)
        self._lose()
        if thread is None or not thread.is_alive():
            self._close_pipe()

    def _close_pipe(self) -> None:
        # Closed only once no thread can use them; -1 keeps a late _wake() from writing to a reused descriptor.
        fds, self._wake_read, self._wake_write = (self._wake_read, self._wake_write), -1, -1
        for fd in fds:
            if fd >= 0:
                try:
                    os.close(fd)
                except OSError:
                    pass

    def _wake(self) -> None:
        if self._wake_write < 0:
            return
        try:
            os.write(self._wake_write, b"x")
        except OSError:
            pass  # the pipe is full (the thread is already due to wake) or closed by stop()

    # -- the thread ----------------------------------------------------------

    def _run(self) -> None:
        delay = self.reconnect_delay_s
        outage_logged = False
        while not self._stopping.is_set():
            conn = None
            try:
                conn, session = self._connect()
                if outage_logged:
                    logger.warning("sharing listener: listening again (session %d)", session)
                delay, outage_logged = self.reconnect_delay_s, False
                self._serve(conn, session)
            except (psycopg2.Error, OSError) as error:
                self.counts["connection_errors"] += 1
                if not outage_logged:
                    logger.warning("sharing listener: connection lost, checks are exact until it is back: %s",
                                   str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__)
                    outage_logged = True
            finally:
                self._lose()
                if conn is not None:
                    conn.close()
            self._stopping.wait(delay)
            delay = min(delay * 2, 2.0)

    def _connect(self) -> tuple[psycopg2.extensions.connection, int]:
        conn = psycopg2.connect(self.url, application_name=f"crmtasks-sharing-listener[{os.getpid()}]",
                                connect_timeout=5, **_KEEPALIVES)
        self._conn = conn
        conn.autocommit = True
        conn.notifies = collections.deque()
        with conn.cursor() as cur:
            cur.execute(f"LISTEN {CHANNEL}")
            cur.execute(_EPOCH_SQL)
            number, token = cur.fetchone()
        with self.records.lock, self._lock:
            # Whatever was remembered may have missed notifications: only what is read from now on counts.
            self.records.clear()
            session = self.state.session + 1
            self.state = ListenState(True, session, Epoch(int(number), str(token)))
            self._reset_requested = False
            self._listening.set()
        self.backend_pid = conn.get_backend_pid()
        self.counts["sessions"] += 1
        self._drain(conn, session)
        return conn, session

    def _serve(self, conn, session: int) -> None:
        """Apply notifications until stopped, told to reconnect, or the connection fails (raises)."""
        while not self._stopping.is_set() and not self._reset_requested:
            self._send_sync_tokens(conn, session)
            readable, _, _ = select.select([conn, self._wake_read], [], [], _IDLE_POLL_S)
            if self._wake_read in readable:
                try:
                    while os.read(self._wake_read, 4096):
                        pass
                except BlockingIOError:
                    pass
            conn.poll()
            if conn.closed:
                raise psycopg2.OperationalError("the listening connection was closed")
            self._drain(conn, session)

    def _send_sync_tokens(self, conn, session: int) -> None:
        with conn.cursor() as cur:
            while self._to_send:
                cur.execute("SELECT pg_notify(%s, %s)", (CHANNEL, f"sync {self._to_send.popleft()}"))
                self._drain(conn, session)

    def _drain(self, conn, session: int) -> None:
        """Apply what has arrived as one batch: a transaction's notifications (an epoch bump and the records it
        changed) come together, and a reader holding the records' lock never sees half of them."""
        if not conn.notifies:
            return
        with self.records.lock:
            while conn.notifies:
                notify = conn.notifies.popleft()
                if notify.channel == CHANNEL:
                    self.counts["notifications"] += 1
                    self._apply(notify.payload, session)

    def _apply(self, payload: str, session: int) -> None:
        kind, _, rest = payload.partition(" ")
        if kind == "records":
            entity, _, ids = rest.partition(" ")
            try:
                record_ids = [int(text) for text in ids.split(",")]
            except ValueError:
                record_ids = None
            if entity in ENTITIES and record_ids is not None:
                self.records.invalidate(entity, record_ids)
            else:
                self.records.clear()  # a payload this version does not understand: forget everything
        elif kind == "flush" and rest in ENTITIES:
            self.records.flush(rest)
        elif kind == "epoch":
            number, _, token = rest.partition(" ")
            self._advance_epoch(Epoch(int(number), token), session)
        elif kind == "sync":
            with self._lock:
                waiter = self._waiters.pop(rest, None)
            if waiter is not None:
                waiter.arrived = True
                waiter.event.set()
        else:
            self.records.clear()

    def _advance_epoch(self, epoch: Epoch, session: int) -> None:
        with self._lock:
            state = self.state
            if state.listening and state.session == session and (state.epoch is None
                                                                 or epoch.number > state.epoch.number):
                self.state = ListenState(True, session, epoch)

    def _lose(self) -> None:
        """Stop trusting memory: not listening, records forgotten, fences released (they find the checks exact)."""
        with self.records.lock, self._lock:
            self._listening.clear()
            self.state = ListenState(False, self.state.session, None)
            self.records.clear()
            waiters, self._waiters = self._waiters, {}
            self._to_send.clear()
        for waiter in waiters.values():
            waiter.event.set()

    # -- fork ----------------------------------------------------------------

    def _forget_after_fork(self) -> None:
        """In a forked child: abandon the parent's thread and connection; the next use starts new ones."""
        if self._conn is not None:
            _INHERITED.append(self._conn)
        self._close_pipe()  # the child's copies: closing them leaves the parent's pipe alone
        self.state = ListenState(False, self.state.session, None)
        self.backend_pid = None
        self.records.reset_after_fork()
        self._process_state()


def _after_fork_in_child() -> None:
    for listener in list(_LISTENERS):
        listener._forget_after_fork()


os.register_at_fork(after_in_child=_after_fork_in_child)
