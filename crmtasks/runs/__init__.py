"""Runs: the history of every run in ``task_runs``, running jobs in this process, and what operators see of them."""
