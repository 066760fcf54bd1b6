"""One error shape: 422s list ``{loc, field, msg, type}`` items; inputs are never echoed."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

__all__ = ["error_items", "unprocessable", "install_error_handlers", "public_message",
           "MAX_MSG_CHARS"]

MAX_MSG_CHARS = 300
_SOURCES = ("body", "query", "path", "header", "cookie")
_URI = re.compile(r"\b[a-zA-Z][a-zA-Z0-9+.\-]*:/{1,3}[^\s'\"),;]+")
_ABS_PATH = re.compile(r"(?<![\w:/.<>-])/(?:[\w.\-]+/)*[\w.\-]+")


def _short(text: str) -> str:
    return text if len(text) <= MAX_MSG_CHARS else text[: MAX_MSG_CHARS - 1] + "…"


def error_items(errors: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Serialisable error items from pydantic / FastAPI errors, without ``input`` or ``ctx``."""
    out = []
    for e in errors:
        loc = [x if isinstance(x, int) else str(x) for x in e.get("loc", ())]
        path = loc[1:] if loc and loc[0] in _SOURCES else loc
        out.append({"loc": loc, "field": ".".join(str(x) for x in path),
                    "msg": _short(str(e.get("msg", ""))), "type": str(e.get("type", "error"))})
    return out


def unprocessable(msg: str, field: str | None = None, type_: str = "value_error"
                  ) -> RequestValidationError:
    """A 422 raised from a route, rendered in the same shape as request validation errors."""
    loc = ("body", *field.split(".")) if field else ("body",)
    return RequestValidationError([{"loc": loc, "msg": msg, "type": type_}])


def public_message(text: str, workdir: Path | None = None) -> str:
    """Text safe to publish: no URIs (they may carry credentials), no absolute paths."""
    if workdir is not None:
        text = text.replace(str(workdir), "<workdir>")
    text = _URI.sub("<uri>", text)
    return _short(_ABS_PATH.sub("<path>", text))


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return JSONResponse({"detail": error_items(exc.errors())}, status_code=422)


def install_error_handlers(app: FastAPI) -> None:
    """Register the 422 handler on an app."""
    app.add_exception_handler(RequestValidationError, _validation)
