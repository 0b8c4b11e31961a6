"""One error model for every HTTP answer that is not a success, and its OpenAPI description.

Every refusal answers `{"code", "message", "field", "detail"}`: `code` is machine-readable
and stable, `field` names the input at fault (`query.after`, `body.items.0.on_hand`, or
null), `message` is for people; `detail` keeps the shape earlier clients read (the
message, or FastAPI's list of `{loc, msg, type}` for a 422). Validation errors never echo
the input back: a refused body may hold a secret.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger(__name__)

CODES: dict[int, str] = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
    500: "internal_error",
    502: "bad_gateway",
    503: "unavailable",
    504: "upstream_timeout",
}


class FieldError(BaseModel):
    loc: list[str | int] = Field(description='Where: "body", "query", "path" or "header", then the field path')
    msg: str
    type: str = Field(description="pydantic's error type, e.g. missing, string_too_long, value_error")


class ErrorOut(BaseModel):
    """The body of every error answer."""

    code: str = Field(description="Machine-readable: " + ", ".join(sorted(set(CODES.values()))))
    message: str
    field: str | None = Field(description="The input at fault, dotted: query.after, body.items.0.on_hand")
    detail: str | list[FieldError] = Field(description="The message, or every field error of a 422")

    model_config = {
        "json_schema_extra": {
            "examples": [
                {
                    "code": "invalid_request",
                    "message": "Input should be greater than or equal to 0",
                    "field": "body.items.0.on_hand",
                    "detail": [
                        {
                            "loc": ["body", "items", 0, "on_hand"],
                            "msg": "Input should be greater than or equal to 0",
                            "type": "greater_than_equal",
                        }
                    ],
                },
                {"code": "not_found", "message": "no such connection", "field": None, "detail": "no such connection"},
            ]
        }
    }


def error_body(status_code: int, detail: Any, code: str | None = None) -> dict[str, Any]:
    """The error model for `detail` (a message, or a list of `{loc, msg, type}`)."""
    if isinstance(detail, list) and detail and all(isinstance(e, dict) for e in detail):
        errors = [_field_error(e) for e in detail]
        first = errors[0]
        field = ".".join(str(part) for part in first["loc"]) or None
        return {
            "code": code or CODES.get(status_code, "error"),
            "message": first["msg"],
            "field": field,
            "detail": errors,
        }
    message = detail if isinstance(detail, str) else HTTPStatus(status_code).phrase
    return {"code": code or CODES.get(status_code, "error"), "message": message, "field": None, "detail": message}


def error_response(status_code: int, detail: Any, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(status_code, detail), status_code=status_code, headers=headers)


def _field_error(error: dict[str, Any]) -> dict[str, Any]:
    # Only where, what and why: `input` and `ctx` may hold what the client sent (a secret).
    return {
        "loc": [part if isinstance(part, int) else str(part) for part in error.get("loc", ())],
        "msg": str(error.get("msg", "invalid")),
        "type": str(error.get("type", "value_error")),
    }


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, StarletteHTTPException)
    return error_response(exc.status_code, exc.detail, getattr(exc, "headers", None))


async def _validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(422, list(exc.errors()))


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    # The last resort: a defect, logged with its traceback. Inputs are refused at the edge.
    log.exception("unhandled error on %s %s", request.method, request.scope.get("route", request.url.path))
    return error_response(500, "internal error")


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(Exception, _unexpected)


# ---- OpenAPI --------------------------------------------------------------------------

_DESCRIPTIONS = {
    400: "The body cannot be read (not JSON, or not UTF-8)",
    401: "Missing or invalid API key (or admin token)",
    404: "No such resource for this merchant (another merchant's resource answers the same)",
    413: "Body too large",
    415: "Unsupported Content-Type",
    422: "Invalid input: `field` names the first field at fault, `detail` lists them all",
    429: "Too many requests (see Retry-After)",
    503: "The API key could not be verified right now (the stock-ledger is unreachable); retry",
}


def error_responses(*codes: int, **descriptions: str) -> dict[int | str, dict[str, Any]]:
    """`responses=` for a route: each code answered with the error model."""
    return {
        code: {"model": ErrorOut, "description": descriptions.get(f"e{code}", _DESCRIPTIONS.get(code, ""))}
        for code in codes
    }


def document_errors(app: FastAPI, extra_codes: Sequence[int] = ()) -> None:
    """Declare in the app's OpenAPI what every operation answers besides success.

    401 where the operation needs a key, 404 where its path names a resource, 422 where it
    takes any input, all with the error model (FastAPI's own 422 schema is replaced).
    """
    build: Callable[[], dict[str, Any]] = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = build()
        schemas = schema.setdefault("components", {}).setdefault("schemas", {})
        schemas.update(_component_schemas())
        ref = {"$ref": "#/components/schemas/ErrorOut"}
        for path, item in schema.get("paths", {}).items():
            for method, operation in item.items():
                if method not in {"get", "post", "put", "patch", "delete"}:
                    continue
                responses = operation.setdefault("responses", {})
                codes = set(extra_codes)
                if operation.get("security"):
                    codes.update((401, 503))  # 503: the key could not be verified now
                if "{" in path:
                    codes.add(404)
                if operation.get("parameters") or operation.get("requestBody"):
                    codes.add(422)
                if operation.get("requestBody"):
                    codes.add(400)
                for code in sorted(codes):
                    key = str(code)
                    existing = responses.get(key, {})
                    responses[key] = {
                        "description": existing.get("description") or _DESCRIPTIONS.get(code, HTTPStatus(code).phrase),
                        "content": {"application/json": {"schema": ref}},
                    }
                for key, answer in responses.items():
                    if key.isdigit() and int(key) >= 400:
                        answer["content"] = {"application/json": {"schema": ref}}
        for unused in ("HTTPValidationError", "ValidationError"):
            schemas.pop(unused, None)
        app.openapi_schema = schema
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


def _component_schemas() -> dict[str, Any]:
    from pydantic.json_schema import models_json_schema

    _, top = models_json_schema([(ErrorOut, "serialization")], ref_template="#/components/schemas/{model}")
    defs: dict[str, Any] = top.get("$defs", {})
    return defs
