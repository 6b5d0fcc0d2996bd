"""The web dashboard: our jobs and run-history pages plus dramatiq-dashboard, behind a login.

http (request/response), session (signed cookies, CSRF tokens), auth (the
login wall), pages (jobs, runs, run now), rendering (jinja2), app (router,
serving).
"""
