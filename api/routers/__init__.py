"""The API's parts, one module per resource; each has a ``router`` and may have
``install(app, settings)`` for what it needs beside routes (middleware,
background work registered in ``app.state.on_start`` / ``on_stop``).

JSON routes come first; the HTML pages (``/``, ``/feedback``, ``/t/...``) last."""

from api.pages import feedback as feedback_page
from api.pages import public, technician
from api.routers import (
    alerts,
    campus,
    feedback,
    metrics,
    notices,
    readings,
    reports,
    rules,
    stream,
    tickets,
)

ROUTERS = [
    metrics,  # first: its middleware times every request
    campus,
    readings,
    alerts,
    tickets,
    notices,
    feedback,
    rules,
    reports,
    stream,
    public,
    feedback_page,
    technician,
]
