"""crmtasks: a CRM's periodic PostgreSQL maintenance jobs, run on Dramatiq."""

__version__ = "0.1.0"
