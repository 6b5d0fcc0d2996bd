"""The periodic jobs: one module per job, each a plain ``run() -> dict`` returning its stats."""
