"""Demo data for an empty CRM and its audit log, generated inside PostgreSQL: ``crmtasks seed``.

``seed_demo`` fills the CRM tables (deterministic for a seed, one
transaction, schema left as it was; see :mod:`crmtasks.demo.crm`);
``seed_audit`` adds audit rows over the last 24 months
(:mod:`crmtasks.demo.audit_rows`). The modules, by what they generate:

- ``size``: the CRM tables, rows per table (:class:`DemoSize`), the span of history.
- ``vocabulary``: names, companies and picklists, with their weights.
- ``value_functions``: the ``pg_temp`` SQL functions every value derives from.
- ``people``: the role tree, users, and who owns records.
- ``records``: what accounts, contacts, leads and deals draw from.
- ``schema``: foreign keys and indexes dropped for the load and rebuilt after it.
- ``crm``: the one transaction that does it all.
- ``parallel``: the same rows loaded by several sessions at once, into a scratch database (the benchmark's).
- ``audit_rows``: demo rows for ``audit_log``.

The statements themselves are in ``crmtasks/demo/sql/``.
"""

from crmtasks.demo.audit_rows import AUDIT_HISTORY_MONTHS, seed_audit
from crmtasks.demo.crm import STEPS, CrmNotEmpty, Progress, crm_is_empty, seed_demo
from crmtasks.demo.parallel import ParallelLoad, seed_demo_parallel
from crmtasks.demo.size import CRM_TABLES, HISTORY_DAYS, MAX_ROWS, DemoSize
from crmtasks.demo.vocabulary import (
    DEAL_STAGES,
    INDUSTRIES,
    LEAD_SOURCES,
    LEAD_STATUSES,
    RATINGS,
    REGIONS,
)

__all__ = [
    "AUDIT_HISTORY_MONTHS", "CRM_TABLES", "DEAL_STAGES", "HISTORY_DAYS", "INDUSTRIES", "LEAD_SOURCES",
    "LEAD_STATUSES", "MAX_ROWS", "RATINGS", "REGIONS", "STEPS", "CrmNotEmpty", "DemoSize",
    "ParallelLoad", "Progress", "crm_is_empty", "seed_audit", "seed_demo", "seed_demo_parallel",
]
