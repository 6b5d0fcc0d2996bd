"""The ``crmtasks`` command (also ``python -m crmtasks``): one module per command group.

click gives us nested commands, typed options and help text for free; rich
draws progress bars and tables. Each command is small and calls library
functions that are tested on their own.
"""

from __future__ import annotations

import click

from crmtasks.cli.audit import audit_group
from crmtasks.cli.audit_queries import activity_command, counts_command, history_command
from crmtasks.cli.common import OneLineGroup
from crmtasks.cli.dashboard import dashboard
from crmtasks.cli.demo import seed_command
from crmtasks.cli.jobs import check, list_tasks, pause, resume
from crmtasks.cli.report import report_command
from crmtasks.cli.run import run_command
from crmtasks.cli.schedule import schedule_group
from crmtasks.cli.schema import migrate
from crmtasks.cli.search import search_command
from crmtasks.cli.services import services_group
from crmtasks.cli.sharing import sharing_group
from crmtasks.cli.trail import trail_command


@click.group(cls=OneLineGroup)
@click.version_option(package_name="crmtasks")
def main() -> None:
    """crmtasks: a CRM's periodic PostgreSQL maintenance jobs on Dramatiq."""


for command in (run_command, migrate, seed_command, list_tasks, schedule_group, pause, resume, check, search_command,
                report_command, sharing_group, audit_group, services_group, dashboard, trail_command):
    main.add_command(command)
for command in (history_command, activity_command, counts_command):
    audit_group.add_command(command)
