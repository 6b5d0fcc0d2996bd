"""``python -m tests.acceptance.proc_cli ARGS``: the ``crmtasks`` command with the test jobs registered."""

from tests.acceptance import proc_jobs

if __name__ == "__main__":
    proc_jobs.install()
    from crmtasks.cli import main

    main(prog_name="crmtasks")
