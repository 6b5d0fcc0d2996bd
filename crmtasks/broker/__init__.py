"""The Dramatiq layer: the broker, one actor per job, and the middleware every run goes through.

``build_runtime(settings)`` builds both; ``crmtasks.tasks`` is the module
``dramatiq`` and ``periodiq`` load, and the only one whose import runs it.
"""

from crmtasks.broker.factory import Runtime, build_runtime

__all__ = ["Runtime", "build_runtime"]
