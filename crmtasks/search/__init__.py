"""Faceted search: the facet registry, request checking, the query, and the search index behind it.

``faceted_search(entity, filters, q, ...)`` answers a page of records, the
total and the counts per facet value; ``analytics.precompute_facets``
(``crmtasks.search.precompute``) publishes the index it counts from
(``crmtasks.search.index``). The searches one process runs at once on pooled
connections are limited (``crmtasks.search.admission``).
"""

from crmtasks.search.admission import faceted_search
from crmtasks.search.query import LIVE, PRECOMPUTED, SearchResult

__all__ = ["LIVE", "PRECOMPUTED", "SearchResult", "faceted_search"]
