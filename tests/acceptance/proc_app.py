"""The worker/scheduler module of the real-process tests: ``dramatiq tests.acceptance.proc_app``.

It registers the test jobs (tests.acceptance.proc_jobs) in place of the real
ones, then declares them exactly as ``crmtasks.tasks`` does for production:
same broker, middleware, schedules and scheduler boot.
"""

from tests.acceptance import proc_jobs

proc_jobs.install()

from crmtasks.tasks import *  # noqa: E402,F403
from crmtasks.tasks import actors, broker  # noqa: E402,F401
