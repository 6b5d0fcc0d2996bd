"""Who is acting in a dashboard request, for the operator trail (``crmtasks.runs.trail``).

The logged-in user, or ``loopback`` when login is off (only this machine
can reach the dashboard then), through the ``dashboard``, from the
request's client address (``REMOTE_ADDR``: behind a reverse proxy, the
proxy's).
"""

from __future__ import annotations

import flask

from crmtasks.runs.trail import LOOPBACK_OPERATOR, Operator, Via


def current_operator(who: str | None = None) -> Operator:
    """The operator of this request; ``who`` overrides the session's user (a login names who tried).

    Parameters:
      who(str|None): The name to record, e.g. the user name typed into the login form.
    """
    if who is None:
        visitor = flask.g.get("visitor")
        who = visitor.user if visitor is not None and visitor.user else LOOPBACK_OPERATOR
    return Operator(who=who, via=Via.DASHBOARD, address=flask.request.remote_addr)
