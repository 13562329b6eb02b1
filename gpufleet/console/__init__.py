"""The web console: server-rendered pages at /console for operators, developers and auditors.

The console is a client of the API living in the same process: every page reads, and every form
changes, through the API's own routes (called in-process with the signed-in user's token), so the
API's permission matrix, validation and audit log apply to the console exactly as to any other client.
``ConsoleMiddleware`` sends /console/* (and ``/``) to the console's own FastAPI app, ahead of the API's
bearer-token body guard and audit middleware (the console has cookie sessions and CSRF tokens instead;
the API calls it makes are audited by the API)."""

from __future__ import annotations

from gpufleet.console.app import ConsoleMiddleware, console_url

__all__ = ["ConsoleMiddleware", "console_url"]
