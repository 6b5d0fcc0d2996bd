"""``crmtasks search ENTITY``: faceted search from the shell."""

from __future__ import annotations

import click

from crmtasks.cli.common import (
    CommandError,
    WholeNumber,
    load_settings_or_exit,
    print_json,
    print_search_result,
)
from crmtasks.search import faceted_search
from crmtasks.search.request import filters_from_text
from crmtasks.services.readiness import NotReady, prepare_database


@click.command(name="search")
@click.argument("entity")
@click.option("--filter", "filter_texts", multiple=True, metavar="FIELD=VALUE",
              help="Facet field=value (repeat a field for any of several values; field= for no value), "
                   "or a range: field>=value, field<value, ...")
@click.option("--q", help="Text to find in names (leads: name, company, email), at least 3 characters.")
@click.option("--page", type=WholeNumber(least=1), default=1, show_default=True)
@click.option("--per-page", type=WholeNumber(least=1), default=25, show_default=True)
@click.option("--order-by", help="Sort column, '-' prefix for descending (default -id: newest first).")
@click.option("--live", is_flag=True, help="Count live even when precomputed counts could answer.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def search_command(entity, filter_texts, q, page, per_page, order_by, live, as_json) -> None:
    """Faceted search of ENTITY (leads, deals, accounts, contacts): a page of records and counts per facet value."""
    settings = load_settings_or_exit()
    try:
        filters = filters_from_text(entity, list(filter_texts))
    except ValueError as error:
        raise CommandError(str(error)) from None
    try:
        prepare_database(settings, seed_demo_if_empty=False)
    except NotReady as error:
        raise CommandError(str(error)) from None
    try:
        result = faceted_search(entity, filters, q=q, page=page, per_page=per_page, order_by=order_by,
                                allow_precomputed=not live)
    except ValueError as error:
        raise CommandError(str(error)) from None
    if as_json:
        print_json(result.as_dict())
        return
    print_search_result(result)
