"""The web view: dramatiq-dashboard for queues and dead letters, behind a login."""
