"""``crmtasks sharing check|show``: record access now, and the sharing model."""

from __future__ import annotations

import click

from crmtasks import sharing
from crmtasks.cli.common import (
    CommandError,
    WholeNumber,
    load_settings_or_exit,
    print_json,
    print_table,
    require_migrated,
)
from crmtasks.sharing import rules


@click.group(name="sharing")
def sharing_group() -> None:
    """Check record access and show the sharing model (defaults, rules, a user's compiled visibility)."""


@sharing_group.command(name="check")
@click.argument("user_id", type=WholeNumber(least=1))
@click.argument("entity", type=click.Choice(["leads", "deals", "accounts", "contacts"]))
@click.argument("record_ids", type=WholeNumber(least=1), nargs=-1, required=True, metavar="RECORD_ID...")
@click.option("--level", type=click.Choice(["read", "edit"]), default="read", show_default=True)
def sharing_check(user_id: int, entity: str, record_ids: tuple[int, ...], level: str) -> None:
    """Say whether USER_ID may LEVEL each RECORD_ID of ENTITY now (several ids: one round trip, at most
    10,000); exit 0 when every one is allowed, 1 when any is denied."""
    if len(record_ids) > sharing.MAX_BATCH:
        raise CommandError(f"at most {sharing.MAX_BATCH:,} record ids per check, got {len(record_ids):,}")
    settings = load_settings_or_exit()
    require_migrated(settings)
    if len(record_ids) == 1:
        allowed = {record_ids[0]} if sharing.can_access(user_id, entity, record_ids[0], level) else set()
    else:
        allowed = sharing.can_access_many(user_id, entity, record_ids, level)
    for record_id in dict.fromkeys(record_ids):
        click.echo(f"user {user_id} {'may' if record_id in allowed else 'may NOT'} {level} {entity} {record_id}")
    if not set(record_ids) <= allowed:
        raise SystemExit(1)


@sharing_group.command(name="show")
@click.argument("user_id", type=WholeNumber(least=1), required=False)
@click.option("--json", "as_json", is_flag=True)
def sharing_show(user_id: int | None, as_json: bool) -> None:
    """Show the defaults and rules, or with USER_ID what that user's compiled visibility opens."""
    settings = load_settings_or_exit()
    require_migrated(settings)
    if user_id is not None:
        summary = sharing.visibility(user_id).summary()
        if as_json:
            print_json(summary)
            return
        print_table(f"user {user_id} (epoch {summary['epoch']}, {'active' if summary['active'] else 'INACTIVE'})",
                    ["entity", "default grants", "owners read", "owners edited", "criteria read", "criteria edited"],
                    [[name, e["public"] or "-", e["read_owners"], e["edit_owners"], e["read_criteria"],
                      e["edit_criteria"]] for name, e in summary["entities"].items()])
        return
    report = {"defaults": rules.defaults(), "rules": rules.list_rules()}
    if as_json:
        print_json(report)
        return
    print_table("organization-wide defaults", ["entity", "access"], [list(item) for item in report["defaults"].items()])
    print_table("sharing rules", ["id", "name", "entity", "shares", "with role", "access"], [
        [r["id"], r["name"], r["entity"],
         (f"owned by role {r['owner_role']}" + (" and below" if r["owner_include_subordinates"] else ""))
         if r["kind"] == "owner" else f"{r['field']} = {r['value']!r}",
         f"{r['grantee_role']}" + (" and below" if r["grantee_include_subordinates"] else ""), r["access"]]
        for r in report["rules"]])
