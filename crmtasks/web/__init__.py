"""The web dashboard: our jobs and run-history pages plus dramatiq-dashboard, behind a login, on Flask.

app (the Flask app, its checks in order, serving with waitress), guard (Host
and Origin), auth (the login wall), throttle (failed logins in Redis),
session (the signed session cookie and its per-install key), pages (jobs,
one job, runs, run now), charts (a job's duration chart), queues
(dramatiq-dashboard mounted inside), rendering (templates and filters).
"""
