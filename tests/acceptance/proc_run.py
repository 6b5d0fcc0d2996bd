"""``python -m tests.acceptance.proc_run ARGS``: ``python -m crmtasks.run`` with the test jobs registered."""

from tests.acceptance import proc_jobs

if __name__ == "__main__":
    proc_jobs.install()
    from crmtasks.run import main

    main()
