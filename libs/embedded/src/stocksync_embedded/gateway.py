"""One base URL for every public path (the embedded default's stand-in for the Ingress).

Routes by path prefix to the service that owns it, and serves one merged OpenAPI
document at `/openapi.json` with Swagger UI at `/docs`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, ORJSONResponse, StreamingResponse
from starlette.background import BackgroundTask

from stocksync_common.cookies import no_cookies
from stocksync_common.errors import error_response, install_error_handlers

# Path prefix -> service. The Kubernetes Ingress (deploy/k8s) routes the same way.
ROUTES: tuple[tuple[str, str], ...] = (
    ("/webhooks/", "order-ingest"),
    ("/v1/deliveries", "order-ingest"),
    ("/v1/merchants", "stock-ledger"),
    ("/v1/api-keys", "stock-ledger"),
    ("/v1/stock", "stock-ledger"),
    ("/v1/bundles", "stock-ledger"),
    ("/v1/locations", "stock-ledger"),
    ("/v1/oversells", "stock-ledger"),
    ("/v1/dead-letters", "stock-ledger"),
    ("/v1/admin/dead-letters", "stock-ledger"),
    ("/v1/rules", "rule-engine"),
    ("/v1/connections", "channel-publisher"),
    ("/v1/pushes", "channel-publisher"),
    # Each service's consumer lag and outbox backlog (admin token; `stocksync backlog`).
    ("/v1/admin/backlog/order-ingest", "order-ingest"),
    ("/v1/admin/backlog/stock-ledger", "stock-ledger"),
    ("/v1/admin/backlog/rule-engine", "rule-engine"),
    ("/v1/admin/backlog/channel-publisher", "channel-publisher"),
    # The AsyncAPI document of the topics; every service serves the same one.
    ("/asyncapi", "stock-ledger"),
    ("/console", "console"),
)

log = logging.getLogger(__name__)

UPSTREAM_KEEPALIVE_S = 2.0

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "upgrade", "host", "content-length"}
_HOP_BY_HOP_BYTES = {name.encode() for name in _HOP_BY_HOP}


def create_gateway(upstreams: dict[str, str]) -> FastAPI:
    # Idle pooled connections are dropped before uvicorn closes them (its keep-alive is 5 s):
    # a request never races the upstream's close on a connection about to die.
    client = httpx.AsyncClient(
        # Never a cookie of one caller's response sent with another's request.
        cookies=no_cookies(),
        timeout=60.0,
        limits=httpx.Limits(max_keepalive_connections=100, keepalive_expiry=UPSTREAM_KEEPALIVE_S),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await client.aclose()

    app = FastAPI(title="Stocksync", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    install_error_handlers(app)

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "alive", "service": "gateway"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> ORJSONResponse:
        async def check(name: str, base: str) -> tuple[str, Any]:
            try:
                answer = await client.get(f"{base}/readyz", timeout=3)
                return name, answer.json()
            except httpx.HTTPError as exc:
                return name, {"ready": False, "error": type(exc).__name__}

        results = dict(await asyncio.gather(*(check(n, b) for n, b in upstreams.items())))
        ready = all(r.get("ready") for r in results.values())
        return ORJSONResponse({"ready": ready, "services": results}, status_code=200 if ready else 503)

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi() -> dict[str, Any]:
        merged: dict[str, Any] = {
            "openapi": "3.1.0",
            "info": {
                "title": "Stocksync",
                "version": "0.1.0",
                "description": "Every public path of Stocksync behind one base URL.",
            },
            "paths": {},
            "components": {"schemas": {}, "securitySchemes": {}},
        }
        for name, base in upstreams.items():
            spec = (await client.get(f"{base}/openapi.json")).json()
            for path, item in spec.get("paths", {}).items():
                if any(path.startswith(prefix) for prefix, owner in ROUTES if owner == name):
                    merged["paths"][path] = _with_gateway_answers(item)
            for section in ("schemas", "securitySchemes"):
                merged["components"][section].update(spec.get("components", {}).get(section, {}))
        return merged

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="Stocksync API")

    @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False)
    async def proxy(path: str, request: Request) -> Response:
        owner = next((svc for prefix, svc in ROUTES if request.url.path.startswith(prefix)), None)
        if owner is None:
            return error_response(404, "Not Found")
        # The path as the client sent it, still percent-encoded: decoding it here would turn
        # a SKU's %2F into a separator and make %12 unsendable.
        target = request.scope["raw_path"] + (
            b"?" + request.scope["query_string"] if request.scope["query_string"] else b""
        )
        try:
            url = httpx.URL(upstreams[owner]).copy_with(raw_path=target)
            upstream = client.build_request(
                request.method,
                url,
                # As received (bytes): re-encoding would refuse what the client could send.
                headers=[(k, v) for k, v in request.scope["headers"] if k.lower() not in _HOP_BY_HOP_BYTES],
                content=await request.body(),
            )
        except httpx.InvalidURL as exc:
            return error_response(400, f"the request line cannot be forwarded: {exc}")
        try:
            answer = await _send(client, upstream)
        except httpx.LocalProtocolError as exc:
            return error_response(400, f"the request cannot be forwarded: {exc}")
        except httpx.TimeoutException:
            return error_response(504, f"{owner} did not answer in time")
        except httpx.TransportError as exc:
            log.warning("%s unreachable: %r", owner, exc)
            return error_response(502, f"{owner} is unreachable")
        return StreamingResponse(
            answer.aiter_raw(),
            status_code=answer.status_code,
            headers={k: v for k, v in answer.headers.items() if k.lower() not in _HOP_BY_HOP},
            background=BackgroundTask(answer.aclose),
        )

    return app


_GATEWAY_ANSWERS = {
    "400": "The request cannot be forwarded or its body cannot be read",
    "502": "The service behind this path is unreachable",
    "504": "The service behind this path did not answer in time",
}


def _with_gateway_answers(item: dict[str, Any]) -> dict[str, Any]:
    """A service's path item with what the gateway itself may answer, in the error model."""
    for operation in item.values():
        if isinstance(operation, dict) and "responses" in operation:
            for code, description in _GATEWAY_ANSWERS.items():
                operation["responses"].setdefault(
                    code,
                    {
                        "description": description,
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorOut"}}},
                    },
                )
    return item


IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
# A pooled keep-alive connection the upstream has closed fails on first use with one of
# these, before any answer: an idempotent request is sent once more on a new connection.
_DEAD_CONNECTION = (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError, httpx.ConnectError)


async def _send(client: httpx.AsyncClient, request: httpx.Request) -> httpx.Response:
    try:
        return await client.send(request, stream=True)
    except _DEAD_CONNECTION:
        if request.method not in IDEMPOTENT:
            raise
        return await client.send(request, stream=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="stocksync-gateway")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--upstream", action="append", default=[], metavar="SERVICE=URL")
    args = parser.parse_args()
    upstreams = dict(item.split("=", 1) for item in args.upstream)
    uvicorn.run(create_gateway(upstreams), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
