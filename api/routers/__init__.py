"""The API's parts, one module per resource; each has a ``router`` and may have
``install(app, settings)`` for what it needs beside routes (middleware,
background work registered in ``app.state.on_start`` / ``on_stop``)."""

from api.routers import tickets

ROUTERS = [tickets]
