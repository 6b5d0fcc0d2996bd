"""The connections a deployment may open, counted from its heartbeats (crmtasks.runs.connections)."""

from __future__ import annotations

from crmtasks.runs.connections import ServerLimit, deployment_demand


def test_each_process_counts_the_smaller_of_its_threads_and_its_pool():
    demand = deployment_demand(
        workers=[{"threads": 8, "db_pool_size": 20}, {"threads": 1, "db_pool_size": 20},
                 {"threads": 30, "db_pool_size": 10}],
        schedulers=[{"jobs": ["x"]}, {"jobs": ["x"]}],
        dashboards=[{}],
        api_processes=3, pool_size=20)
    assert dict(demand.parts) == {"3 worker process(es)": 8 + 1 + 10, "2 scheduler(s)": 2, "1 dashboard(s)": 4,
                                  "3 application process(es) x pool 20": 60, "audit maintenance's own": 1}
    assert demand.total == 19 + 2 + 4 + 60 + 1
    assert "3 worker process(es): 19" in demand.describe()


def test_nothing_running_still_counts_the_direct_connection():
    demand = deployment_demand([], [], [], api_processes=0, pool_size=20)
    assert demand.total == 1
    assert demand.describe() == "audit maintenance's own: 1"


def test_reserved_slots_are_not_available():
    assert ServerLimit(max_connections=100, reserved=3, open_now=10).available == 97
