"""The service's HTTP edge: what every request passes before BentoML parses it, and what every error looks like.

BentoML 1.4 parses a request body in full, on the event loop, before any check of ours runs, answers a
malformed ``multipart/form-data`` body with a 500, returns its own 4xx bodies in three shapes (one a
one-element list), and logs every 4xx at ERROR with a traceback. ``Guard`` (an ASGI middleware added with
``add_asgi_middleware``) fixes that at the edge, for every endpoint alike:

* an optional bearer token (``B3Q_BENTO_TOKEN``) on every route but the probes;
* API calls must be ``POST`` with ``application/json`` (else 415), and bodies are bounded: a
  ``Content-Length`` over ``B3Q_BENTO_MAX_BODY_BYTES`` is a 413 before anything is read, a chunked body is
  read up to the limit and no further;
* a 400 whose every error is a rule no schema can state (``schemas.unprocessable``) becomes a 422;
* every response of status >= 400 is rewritten into ``ErrorResponse`` (``{"error", "detail"}``), strings in
  it truncated, so no error echoes a large input back;
* ``/docs.json`` is BentoML's OpenAPI document with a real title/version/description, the error bodies
  actually returned, and request examples that work against the demo (``openapi``).

``install`` also replaces BentoML's exception logger: 4xx are one WARNING line, 5xx keep the traceback.
"""

from __future__ import annotations

import hmac
import json
import logging
import os
import sys
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger("bentoml.service.http")

MAX_BODY_BYTES = int(os.environ.get("B3Q_BENTO_MAX_BODY_BYTES", str(4 * 1024 * 1024)))
MAX_ECHO = 200  # characters of any string in an error body (messages quote inputs)
PROBES = frozenset({"/livez", "/healthz", "/readyz"})
API_PATHS = frozenset({"/implied_vol", "/surface", "/predict_iv"})
JSON_TYPES = frozenset({"application/json"})


def truncate(s: str, n: int = MAX_ECHO) -> str:
    return s if len(s) <= n else f"{s[:n]}...({len(s)} characters)"


def _clean(v: Any) -> Any:
    if isinstance(v, str):
        return truncate(v)
    if isinstance(v, list | tuple):
        return [_clean(x) for x in v[:100]]
    if isinstance(v, dict):
        return {str(k)[:MAX_ECHO]: _clean(x) for k, x in v.items()}
    return v


def error_body(status: int, raw: bytes) -> dict[str, Any]:
    """Any error body BentoML or Starlette produces -> ``{"error": str, "detail": [..] | None}``."""
    try:
        data: Any = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        data = raw.decode("utf-8", "replace").strip() or None
    if isinstance(data, list) and len(data) == 1 and isinstance(data[0], dict):
        data = data[0]  # BentoML 1.4's InvalidArgument/NotFound body is a one-element list
    detail = None
    if isinstance(data, dict):
        msg = data.get("error") or data.get("detail")
        if isinstance(data.get("detail"), list):
            detail = [{"type": str(d.get("type", "")), "loc": [x if isinstance(x, int) else str(x)
                                                             for x in d.get("loc", ())],
                       "msg": str(d.get("msg", ""))} for d in data["detail"] if isinstance(d, dict)]
            if detail:  # "N validation errors for Input" says less than the first error itself
                first = detail[0]
                more = f" (and {len(detail) - 1} more)" if len(detail) > 1 else ""
                msg = f"{'.'.join(map(str, first['loc'])) or 'body'}: {first['msg']}{more}"
    else:
        msg = data
    if status == 503 and isinstance(msg, str) and msg.startswith("An unexpected error"):
        msg = "service unavailable: the market database cannot be read right now (see the server log)"
    return _clean({"error": str(msg or _REASONS.get(status, f"HTTP {status}")), "detail": detail})


_REASONS = {400: "bad request", 401: "missing or wrong bearer token", 404: "not found", 405: "method not allowed",
            413: "request body too large", 415: "unsupported media type", 422: "unprocessable request",
            500: "internal server error", 503: "service unavailable"}


async def _send_json(send: Send, status: int, body: dict[str, Any],
                     headers: list[tuple[bytes, bytes]] = ()) -> None:
    raw = json.dumps(body).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(raw)).encode()),
                            *headers]})
    await send({"type": "http.response.body", "body": raw})


class Guard:
    """ASGI middleware: token, media type, body size, uniform JSON errors, the OpenAPI document."""

    def __init__(self, app: ASGIApp, max_body: int | None = None, token: str | None = None) -> None:
        self.app = app
        self.max_body = MAX_BODY_BYTES if max_body is None else max_body
        self.token = token if token is not None else os.environ.get("B3Q_BENTO_TOKEN") or None
        if app is not None:  # wrapping a real app: BentoML's server is being built
            _route_exception_logging()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path, method = scope["path"], scope["method"]
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if self.token and path not in PROBES:
            given = headers.get("authorization", "")
            if not hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
                return await _send_json(send, 401, {"error": _REASONS[401], "detail": None},
                                        [(b"www-authenticate", b"Bearer")])
        if path == "/docs.json" and method == "GET":
            from bento.openapi import spec

            return await _send_json(send, 200, spec())
        if path in API_PATHS and method == "POST":
            ctype = headers.get("content-type", "application/json").split(";")[0].strip().lower()
            if ctype not in JSON_TYPES:
                return await _send_json(send, 415, {"error": f"Content-Type must be application/json, got "
                                                             f"{truncate(ctype, 60)!r}", "detail": None})
            length = headers.get("content-length")
            if length is not None and (not length.isdigit() or int(length) > self.max_body):
                return await _send_json(send, 413, self._too_large())
            body = await self._read(receive)
            if body is None:
                return await _send_json(send, 413, self._too_large())
            receive = _replay(body)
        await self.app(scope, receive, _ErrorRewriter(send))

    def _too_large(self) -> dict[str, Any]:
        return {"error": f"request body larger than {self.max_body} bytes (B3Q_BENTO_MAX_BODY_BYTES); "
                         "split the rows over several requests", "detail": None}

    async def _read(self, receive: Receive) -> bytes | None:
        """The whole body, or None as soon as it passes the limit (the rest is never read)."""
        chunks, size = [], 0
        while True:
            msg = await receive()
            if msg["type"] == "http.disconnect":
                break
            chunk = msg.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return None
            chunks.append(chunk)
            if not msg.get("more_body", False):
                break
        return b"".join(chunks)


def _replay(body: bytes) -> Receive:
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return {"type": "http.disconnect"}

    return receive


class _ErrorRewriter:
    """Wraps ``send``: responses >= 400 are buffered and rewritten as ``ErrorResponse`` JSON."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self.start: Message | None = None
        self.chunks: list[bytes] = []

    async def __call__(self, msg: Message) -> None:
        if msg["type"] == "http.response.start":
            if msg["status"] < 400:
                return await self.send(msg)
            self.start = msg
            return None
        if self.start is None or msg["type"] != "http.response.body":
            return await self.send(msg)
        self.chunks.append(msg.get("body", b""))
        if msg.get("more_body", False):
            return None
        status = self.start["status"]
        body = error_body(status, b"".join(self.chunks))
        if status == 400 and body["detail"] and all(d["type"] == "unprocessable" for d in body["detail"]):
            status = 422  # schema-valid, against the calendar or stored data (schemas.unprocessable)
        drop = (b"content-type", b"content-length")
        keep = [(k, v) for k, v in self.start.get("headers", []) if k.lower() not in drop]
        await _send_json(self.send, status, body, keep)


# ------------------------------------------------------------------------------------------ logging
def log_exception(request: Any, exc_info: Any = True) -> None:
    """BentoML's handler logs every failed request at ERROR with a traceback; a client's mistake is one line."""
    from bentoml.exceptions import BentoMLException, ServiceUnavailable
    from pydantic import ValidationError

    from bento.store import StoreUnavailable

    exc = sys.exc_info()[1]
    where = f"{request.method} {request.url.path}"
    if isinstance(exc, ValidationError):
        errs = exc.errors(include_url=False, include_context=False, include_input=False)
        status = 422 if all(e["type"] == "unprocessable" for e in errs) else 400
        loc = ".".join(map(str, errs[0]["loc"]))
        logger.warning("%s %d: %d validation error(s), first %s: %s", where, status, exc.error_count(), loc,
                       truncate(errs[0]["msg"]))
    elif isinstance(exc, BentoMLException) and exc.error_code.value < 500:
        logger.warning("%s %d: %s", where, exc.error_code.value, truncate(str(exc)))
    elif isinstance(exc, ServiceUnavailable) and isinstance(exc.__cause__, StoreUnavailable):
        logger.error("%s 503: %s", where, exc)  # a known state of the database file, not a bug: no traceback
    else:
        logger.error("%s failed", where, exc_info=exc_info)


def install(service: Any) -> None:
    """Add ``Guard`` to ``service``; BentoML's exception logging is routed through ``log_exception`` when the
    first ``Guard`` is built (in the server worker, where BentoML's app module is loaded anyway: importing it
    here would cost ``import bento.service`` aiohttp, circus and zmq, about a third of its start-up)."""
    service.add_asgi_middleware(Guard)


_patched = False


def _route_exception_logging() -> None:
    global _patched
    if _patched:
        return
    _patched = True
    import _bentoml_impl.server.app as bentoml_app

    if hasattr(bentoml_app, "log_exception"):
        bentoml_app.log_exception = log_exception
    else:  # a BentoML upgrade moved it: requests still work, only the log noise returns
        logger.warning("BentoML has no _bentoml_impl.server.app.log_exception; 4xx stay logged with tracebacks")
