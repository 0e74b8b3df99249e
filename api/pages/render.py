"""What every HTML page shares: the Jinja2 templates, the words of the visitor's
language, the language switch and cookie, and the security headers.

Pages load nothing from outside (no CDN, no web fonts: they work on a phone on
the campus network alone) and say so in their Content-Security-Policy; no page
sends a ``Referer`` onwards, so a technician's signed link does not leak to
wherever a page links.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from api.i18n import HTML_LANG, Words, choose, keep, local_name, switch_url

HERE = Path(__file__).resolve().parent.parent
TEMPLATES = Jinja2Templates(directory=HERE / "templates")
STATIC = HERE / "static"

HEADERS = {
    "Content-Security-Policy": "default-src 'none'; img-src 'self' data:; style-src 'self'; "
    "form-action 'self'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def language(request: Request) -> str:
    """The visitor's language (``?lang=``, the cookie, else the campus default)."""
    default: str = request.app.state.settings.language
    return choose(request, default)


def page(
    request: Request,
    template: str,
    lang: str,
    context: dict[str, Any] | None = None,
    *,
    status_code: int = 200,
    private: bool = False,
    here: str | None = None,
) -> HTMLResponse:
    """``template`` rendered in ``lang``; ``private``: never cached anywhere;
    ``here``: the page's own address when it answers a form (for the language switch)."""
    words = Words(lang)
    ctx: dict[str, Any] = {
        "w": words,
        "lang": lang,
        "html_lang": HTML_LANG[lang],
        "switch_url": switch_url(request, lang, here),
        "campus_name": local_name(request.app.state.campus, lang),
        **(context or {}),
    }
    response = TEMPLATES.TemplateResponse(request, template, ctx, status_code=status_code)
    response.headers.update(HEADERS)
    response.headers["Cache-Control"] = "no-store" if private else "no-cache"
    keep(request, response, lang)
    return response


def message(
    request: Request,
    lang: str,
    status_code: int,
    title_key: str,
    text_key: str,
    here: str | None = None,
) -> HTMLResponse:
    """A page that only says what went wrong (a refused link, a missing case)."""
    words = Words(lang)
    return page(
        request,
        "message.html",
        lang,
        {"title": words[title_key], "text": words[text_key]},
        status_code=status_code,
        private=True,
        here=here,
    )
