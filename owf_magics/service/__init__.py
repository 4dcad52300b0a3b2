"""`owf serve`: the engine as an authenticated HTTP service (FastAPI, uvicorn, JWT, server-sent events).

`config` reads the settings and keys, `auth` checks bearer tokens, `runner` runs workflows through
the public API and keeps every run in its tenant, `app` holds the routes, `server` runs uvicorn
with a graceful shutdown, and `command` is what ``owf serve`` calls. See docs/service.md.
"""

from __future__ import annotations
