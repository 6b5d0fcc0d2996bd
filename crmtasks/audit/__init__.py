"""The CRM's audit log: monthly partitions of ``audit_log``, retention by archive or delete, restore.

The application writes with ``record`` / ``record_many`` and reads with
``history``, ``activity`` and ``month_counts``; the daily job ``system_config.audit_maintenance``
(``crmtasks.jobs.audit_maintenance``) keeps the partitions ahead and applies
retention; ``crmtasks audit status|verify|restore`` are the operator's tools.
"""

from crmtasks.audit.activity import activity
from crmtasks.audit.log import AuditEntry, AuditRowTooOld, history, record, record_many
from crmtasks.audit.month_counts import MonthCount, month_counts
from crmtasks.audit.months import Month

__all__ = ["AuditEntry", "AuditRowTooOld", "Month", "MonthCount", "activity", "history", "month_counts", "record",
           "record_many"]
