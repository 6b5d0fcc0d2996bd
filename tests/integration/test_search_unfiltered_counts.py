"""A search with no filter counts once per overlay: the next ones reuse those counts, never stale, never shared.

Checked against the real PostgreSQL and the live search: after a change the counts
are counted again, and a caller changing the dicts of its answer does not change
the next caller's.
"""

from __future__ import annotations

from crmtasks.jobs import precompute_facets
from crmtasks.search import segments
from crmtasks.search.overlay import OVERLAYS
from crmtasks.search.query import faceted_search
from tests.integration.test_search_overlay import _leads


def _live(**kwargs):
    return faceted_search("leads", allow_precomputed=False, **kwargs)


def test_a_search_with_no_filter_reuses_its_counts_until_something_changes(crm_db):
    _leads(crm_db, 300)
    precompute_facets.run()
    OVERLAYS.clear()
    faceted_search("leads")
    first = faceted_search("leads")
    assert "leads" in segments._unfiltered  # kept for the overlay's segments
    first.facets["status"]["won"] = -1  # the caller's own copy
    first.facets.pop("owner")
    again = faceted_search("leads")
    live = _live()
    assert (again.source, again.total, again.facets) == ("precomputed", live.total, live.facets)

    crm_db.execute_sql("UPDATE leads SET status = 'lost' WHERE id <= 30")
    crm_db.execute_sql("DELETE FROM leads WHERE id BETWEEN 31 AND 40")
    changed = faceted_search("leads")
    live = _live()
    assert (changed.total, changed.facets) == (live.total, live.facets) == (290, live.facets)
    assert changed.facets != again.facets
    assert faceted_search("leads").facets == live.facets  # and kept again for the advanced overlay
