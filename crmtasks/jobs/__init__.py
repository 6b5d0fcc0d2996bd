"""The periodic jobs: one module per job, named for it, each with a ``run() -> dict`` returning its stats."""
