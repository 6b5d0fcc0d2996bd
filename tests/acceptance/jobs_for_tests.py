"""Test jobs, and a launcher that runs ``python -m crmtasks.run`` with them registered.

Usage: python -m tests.acceptance.jobs_for_tests [run arguments...]
The real jobs come from their own issues; these exercise the run command's
recording, summary and exit codes with outcomes chosen by the test.
"""

from __future__ import annotations

from crmtasks.jobs import registry


def tally_users() -> dict:
    from crmtasks.models import User

    return {"users": User.select().count()}


def fail_on_bad_data() -> dict:
    raise ValueError("deal 12 has a negative amount")


TEST_SPECS = (
    registry.JobSpec(name="tally_users", actor_name="tests.tally_users", cron="*/5 * * * *", queue="default",
                      job="tests.acceptance.jobs_for_tests:tally_users", description="count users", time_limit_s=60),
    registry.JobSpec(name="fail_on_bad_data", actor_name="tests.fail_on_bad_data", cron="0 2 * * *",
                      queue="default", job="tests.acceptance.jobs_for_tests:fail_on_bad_data",
                      description="always fails", time_limit_s=60),
)

if __name__ == "__main__":
    registry.JOBS = TEST_SPECS
    from crmtasks.run import main

    main()
