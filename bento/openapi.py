"""The OpenAPI document served at ``/docs.json``: BentoML's, made to match what the service returns.

BentoML 1.4 labels pydantic v2's JSON Schema 2020-12 (``"type": "null"``, numeric ``exclusiveMinimum``) as
OpenAPI 3.0.2, where those keywords mean something else, so schema-driven clients (Swagger's "Try it out",
schemathesis) cannot build valid bodies; it titles the document with BentoML's boilerplate and version
"None", and documents error bodies it does not send. Here the document is declared 3.1.0 (whose schema
dialect is exactly that JSON Schema), gets the project's title, version and description, documents every
error status with ``ErrorResponse`` (the one shape ``bento.http.Guard`` gives every error), and carries
request examples that work against the demo's data.
"""

from __future__ import annotations

import copy
import functools
from importlib import metadata
from typing import Any

from bento import http
from bento.schemas import ErrorResponse, ForecastRequest, IVRequest, SurfaceRequest

REQUESTS = {"/implied_vol": IVRequest, "/surface": SurfaceRequest, "/predict_iv": ForecastRequest}
REF = "#/components/schemas/{model}"

DESCRIPTION = """B3 options: implied vols and Greeks with the platform's solver (`/implied_vol`), fitted SVI
surfaces (`/surface`) and next-session IV forecasts from the promoted model (`/predict_iv`), over the
platform's DuckDB file (read-only). All endpoints take and return JSON; every error is an `ErrorResponse`
(`error` names the field and row; `detail` lists pydantic's errors for a 400). See docs/serving.md."""

_API_ERRORS = {
    400: "the request contradicts this document: JSON, a field's type or bounds, a missing or unknown field "
         "(`detail` lists them)",
    404: "the trade date, underlying or rate asked for is not stored",
    413: "request body over B3Q_BENTO_MAX_BODY_BYTES",
    422: "schema-valid but not processable: a trade date that is not a B3 session, an expired contract, an "
         "expiry past the calendar, no stored rate, a ticker of another series, a duplicate contract",
    415: "Content-Type is not application/json",
    500: "unexpected server error (logged with its traceback)",
    503: "the DuckDB file is missing, locked or incomplete, or the server is at max_concurrency",
}


def _version() -> str:
    try:
        return metadata.version("b3quant-ml")
    except metadata.PackageNotFoundError:  # a built bento does not install the project itself
        from bento.service import B3QuantService

        return str(B3QuantService.bento.tag.version) if B3QuantService.bento else "unknown"


def _error_ref(description: str) -> dict[str, Any]:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}}}


@functools.cache
def _spec() -> dict[str, Any]:
    from bento.service import B3QuantService

    doc = B3QuantService.openapi_spec.asdict()
    token = http.Guard(None).token
    doc["openapi"] = "3.1.0"
    doc["info"] = {"title": "b3quant: B3 options pricing and IV forecasts", "version": _version(),
                   "description": DESCRIPTION}
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    for name in ("InvalidArgument", "NotFound", "InternalServerError"):  # bodies BentoML documents, not sends
        schemas.pop(name, None)
    for model in (ErrorResponse, *REQUESTS.values()):  # request schemas as pydantic states them (BentoML
        js = model.model_json_schema(ref_template=REF)  # drops "null" from the top-level optional fields)
        schemas |= js.pop("$defs", {})
        schemas[model.__name__] = js
    for name in [n for n in schemas if n.endswith("RequestIODescriptor")]:
        del schemas[name]
    for path, item in doc["paths"].items():
        for op in item.values():
            responses = op.setdefault("responses", {})
            for code in list(responses):
                if int(code) >= 400:
                    del responses[code]
            if path in http.API_PATHS:
                body = op["requestBody"]["content"]["application/json"]
                model = REQUESTS[path]
                body["schema"] = {"$ref": REF.format(model=model.__name__)}
                body["example"] = model.model_config["json_schema_extra"]["example"]
                op["requestBody"]["required"] = True
                responses |= {str(c): _error_ref(d) for c, d in _API_ERRORS.items()}
                responses["405"] = _error_ref("only POST is allowed")
            elif path == "/readyz":
                responses["503"] = _error_ref("not ready: the DuckDB file is missing or unreadable")
            if token and path not in http.PROBES:
                responses["401"] = _error_ref("missing or wrong bearer token (B3Q_BENTO_TOKEN is set)")
                op["security"] = [{"bearer": []}]
    if token:
        doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    return doc


def spec() -> dict[str, Any]:
    """The document (built once per process; a copy, so callers may change it)."""
    return copy.deepcopy(_spec())
