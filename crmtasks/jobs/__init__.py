"""The seed's four periodic jobs: one thin module per job, named for it, each a ``run() -> dict`` returning its stats.

``registry`` declares every job once (actor name, schedule, queue, limits,
retry and overlap policy); each job module calls its domain package
(``crmtasks.search``, ``crmtasks.reports``, ``crmtasks.audit``,
``crmtasks.sharing``). This package imports nothing itself: settings
validation reads the registry.
"""
