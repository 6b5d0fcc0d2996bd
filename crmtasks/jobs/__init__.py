"""One module per periodic job, named for its task; each exposes ``run() -> dict`` (its stats)."""
