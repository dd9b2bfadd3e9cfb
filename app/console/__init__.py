"""The browser console at ``/console``: static HTML, CSS and JavaScript shipped in the package
(no CDN, no build step), served by the service itself. The page calls this origin's ``/v1``
API with the key typed into it; its Content-Security-Policy lets it load and call nothing else."""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

CONSOLE_PATH = "/console"
# the page may load scripts, styles and data from this origin only (images also from data: and
# blob: URLs: the photos a user drops are shown before they are sent)
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; "
                           "img-src 'self' data: blob:; connect-src 'self'; base-uri 'none'; "
                           "form-action 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {"Content-Security-Policy": CONTENT_SECURITY_POLICY,
                    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}


class ConsoleFiles(StaticFiles):
    """The console's files, each response with the console's security headers."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(SECURITY_HEADERS)
        return response


def mount_console(app: FastAPI) -> None:
    """``/console`` (redirected to ``/console/``) and its files."""
    static = files("app.console") / "static"
    app.mount(CONSOLE_PATH, ConsoleFiles(directory=str(static), html=True), name="console")
