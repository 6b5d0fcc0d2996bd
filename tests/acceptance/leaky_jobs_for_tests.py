"""A job that fails with the database URL in its error and its log, and a launcher of ``crmtasks`` with it registered.

Usage: python -m tests.acceptance.leaky_jobs_for_tests [crmtasks arguments...]
Libraries echo URLs in their messages (libpq, redis-py, a wrapped
exception); this job does so on purpose, so a test can check that no
output, log record or recorded error of crmtasks carries the password.
"""

from __future__ import annotations

import logging

from crmtasks.jobs import registry
from crmtasks.settings import get_settings

logger = logging.getLogger("crmtasks.tests.leaky")


def leak_url() -> dict:
    url = get_settings().database_url
    logger.warning("about to fail talking to %s", url)
    raise ConnectionError(f"could not reach {url}")


TEST_SPECS = (
    registry.JobSpec(name="leak_url", actor_name="tests.leak_url", cron="*/5 * * * *", queue="default",
                      job="tests.acceptance.leaky_jobs_for_tests:leak_url", description="fails, echoing the URL",
                      time_limit_s=60),
)

if __name__ == "__main__":
    registry.JOBS = TEST_SPECS
    from crmtasks.cli import main

    main(prog_name="crmtasks")
