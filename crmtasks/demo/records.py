"""The demo CRM's records: accounts, contacts, leads and deals, and the picklists they draw from.

The rows themselves are made by one ``INSERT ... SELECT ... FROM
generate_series`` per table (``crmtasks/demo/sql/<table>.sql``) inside
PostgreSQL, so none travels from Python; every value is a pure function of
(seed, column salt, row number) through the value functions. Salts: users
1xx, accounts 2xx, contacts 3xx, leads 4xx, deals 5xx. This module gives
those statements their vocabularies, as weighted bags.

Data shape: ids grow with ``created_at`` like a serial column's;
``created_at <= updated_at <= anchor``, all within the ``HISTORY_DAYS``
before it, with volume growing over time.
"""

from __future__ import annotations

import datetime

from crmtasks.demo.vocabulary import (
    DEAL_STAGES,
    DEAL_TYPES,
    INDUSTRIES,
    LEAD_SOURCES,
    LEAD_STATUSES,
    PERSONAL_DOMAINS,
    RATINGS,
    REGIONS,
    weighted_bag,
)


def record_parameters(anchor: datetime.datetime) -> dict[str, object]:
    """The picklists the record INSERTs draw from, as weighted bags, and the anchor's date.

    Stages and probabilities are parallel bags: picked with the same salt,
    a deal's probability always matches its stage.

    Parameters:
      anchor(datetime): The moment generated times count back from (UTC midnight).
    """
    stages = [stage for stage, (_, weight) in DEAL_STAGES.items() for _ in range(weight)]
    return {
        "anchor_date": anchor.date(),
        "regions": weighted_bag(REGIONS),
        "industries": list(INDUSTRIES),
        "statuses": weighted_bag(LEAD_STATUSES),
        "sources": weighted_bag(LEAD_SOURCES),
        "ratings": weighted_bag(RATINGS),
        "stages": stages,
        "probabilities": [DEAL_STAGES[stage][0] for stage in stages],
        "deal_types": weighted_bag(DEAL_TYPES),
        "personal_domains": weighted_bag(PERSONAL_DOMAINS),
    }

