"""Failing closed: a job whose guard could not decide does not run.

Dramatiq logs an exception raised in a ``before_process_message`` hook at
CRITICAL and then runs the message anyway, unless the exception is a
MiddlewareError (a SkipMessage skips it; any other fails it). So every
check crmtasks' middleware make before a job runs (is it paused? may it
take the job's lock? is the run recorded?) catches its own errors and ends
in one of two ways, never in the job running unchecked:

* ``defer``: the message is put back on its queue after a delay and this
  delivery is skipped (skip reason ``deferred``, not recorded). When it
  comes back the checks are made again, and what they decide (run, paused,
  stale, overlap) is recorded then. Deferring is not a Dramatiq retry: it
  uses none of the job's retries, so a long database outage delays a
  message but never dead-letters it unrecorded. The delay doubles from
  DEFER_MIN_MS up to DEFER_MAX_MS.
* ``JobNotStarted``: when the message cannot even be put back (Redis is
  unreachable too), it fails with this error, and Dramatiq's retries take
  it from there (a transient cause is retried, see crmtasks.broker.retries).
"""

from __future__ import annotations

import logging
from typing import NoReturn

from dramatiq.middleware import MiddlewareError, SkipMessage

from crmtasks.errors import CrmtasksError
from crmtasks.runs.status import SkipReason

logger = logging.getLogger(__name__)

#: The message option a middleware sets to say why it skipped the message (a SkipReason).
SKIP_REASON_OPTION = "crmtasks_skip_reason"
#: The message option counting how many times the message was deferred (for the backoff).
DEFERRALS_OPTION = "crmtasks_deferrals"
# Milliseconds a deferred message waits before its checks are made again: the first time, and at most.
DEFER_MIN_MS = 1_000
DEFER_MAX_MS = 60_000


class JobNotStarted(CrmtasksError, MiddlewareError):
    """A job's message was not run because a check before it could not be made; the cause says why."""


def defer_delay_ms(deferrals: int) -> int:
    """Milliseconds before the checks of a message deferred ``deferrals`` times before are made again."""
    return min(DEFER_MIN_MS * 2 ** min(deferrals, 30), DEFER_MAX_MS)


def defer(broker, message, *, job: str, what: str, error: BaseException) -> NoReturn:
    """Put ``message`` back to be decided later and skip it now, because ``what`` failed with ``error``.

    Raises SkipMessage (reason ``deferred``) once the message is back on its
    queue with a delay, or JobNotStarted when it could not be put back.

    Parameters:
      broker(Broker): The broker the message came from.
      message(Message): The message being processed.
      job(str): The job's name, for the log.
      what(str): The check that failed, e.g. ``the pause check``.
      error(BaseException): Why it failed.
    """
    deferrals = int(message.options.get(DEFERRALS_OPTION, 0))
    delay_ms = defer_delay_ms(deferrals)
    reason = f"{type(error).__name__}: {error}".strip().splitlines()[0]
    try:
        broker.enqueue(message.copy(options={DEFERRALS_OPTION: deferrals + 1}), delay=delay_ms)
    except Exception as enqueue_error:  # noqa: BLE001
        # Whatever went wrong, the job must not run: fail the message.
        logger.error("%s not started: %s failed (%s), and the message could not be put back (%s)",
                     job, what, reason, enqueue_error)
        raise JobNotStarted(f"{job} not started: {what} failed ({reason})") from error
    logger.error("%s not started: %s failed (%s); deciding again in %.0f s", job, what, reason, delay_ms / 1000)
    message.options[SKIP_REASON_OPTION] = SkipReason.DEFERRED
    raise SkipMessage(f"{job} deferred: {what} failed")
