"""``python -m crmtasks.run``: run the periodic jobs now (the seed's ``manage.py run_periodic_tasks``)."""

from crmtasks.cli.run import main

if __name__ == "__main__":
    main()
