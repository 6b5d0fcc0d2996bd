"""The operator trail page (``/trail``): who ran, paused, resumed, rescheduled, requeued, logged in, from where.

Read-only. Filterable by action, operator, job and a "since" (``7d`` or an
ISO date), ``PER_PAGE`` entries a page, newest first. Every parameter is
checked before it reaches PostgreSQL: text PostgreSQL cannot hold (a NUL)
or an unreadable "since" is a 400 that says so.
"""

from __future__ import annotations

from urllib.parse import urlencode

import flask

from crmtasks.runs.trail import ACTIONS, parse_since, read_trail
from crmtasks.user_text import check_text
from crmtasks.web.rendering import render_page

PER_PAGE = 50
# Pages reached by "older" at most: deeper than this, narrow the filters.
MOST_PAGES = 1000
# Longest filter text accepted.
MOST_FILTER_CHARS = 100
DEFAULT_SINCE = "30d"


def register(app: flask.Flask) -> None:
    app.add_url_rule("/trail", "trail", trail)


def trail() -> flask.Response:
    """The trail, newest first, with ``?action=&who=&job=&since=&page=``."""
    query = flask.request.args
    filters = {"action": query.get("action", ""), "who": query.get("who", "").strip(),
               "job": query.get("job", "").strip(), "since": query.get("since", DEFAULT_SINCE).strip() or DEFAULT_SINCE}
    try:
        for name in ("who", "job", "since"):
            check_text(filters[name], name)
            if len(filters[name]) > MOST_FILTER_CHARS:
                raise ValueError(f"{name} is longer than {MOST_FILTER_CHARS} characters")
        since = parse_since(filters["since"])
    except ValueError as error:
        return render_page("message.html", 400, title="Not a filter", message=str(error))
    if filters["action"] not in ACTIONS:
        filters["action"] = ""
    try:
        page = max(1, min(int(query.get("page") or 1), MOST_PAGES))
    except ValueError:
        page = 1
    entries = read_trail(since=since, action=filters["action"] or None, who=filters["who"] or None,
                         target=filters["job"] or None, limit=PER_PAGE + 1, offset=(page - 1) * PER_PAGE)
    link = {name: value for name, value in filters.items() if value}

    def page_url(number: int) -> str:
        return "/trail?" + urlencode({**link, "page": number})

    return render_page("trail.html", 200, page="trail", entries=entries[:PER_PAGE], filters=filters, actions=ACTIONS,
                       since=since, number=page, newer=page_url(page - 1) if page > 1 else None,
                       older=page_url(page + 1) if len(entries) > PER_PAGE and page < MOST_PAGES else None)
