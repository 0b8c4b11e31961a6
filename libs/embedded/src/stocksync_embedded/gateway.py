"""One base URL for every public path (the embedded default's stand-in for the Ingress).

Routes by path prefix to the service that owns it, and serves one merged OpenAPI
document at `/openapi.json` with Swagger UI at `/docs`.
"""

from __future__ import annotations

import argparse
import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI, Request, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, ORJSONResponse, StreamingResponse

# Path prefix -> service. The Kubernetes Ingress (deploy/k8s) routes the same way.
ROUTES: tuple[tuple[str, str], ...] = (
    ("/webhooks/", "order-ingest"),
    ("/v1/deliveries", "order-ingest"),
    ("/v1/merchants", "stock-ledger"),
    ("/v1/stock", "stock-ledger"),
    ("/v1/oversells", "stock-ledger"),
    ("/v1/rules", "rule-engine"),
    ("/v1/connections", "channel-publisher"),
    ("/v1/pushes", "channel-publisher"),
    ("/console", "console"),
)

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "upgrade", "host", "content-length"}


def create_gateway(upstreams: dict[str, str]) -> FastAPI:
    client = httpx.AsyncClient(timeout=60.0, limits=httpx.Limits(max_keepalive_connections=100))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await client.aclose()

    app = FastAPI(title="Stocksync", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)

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
                    merged["paths"][path] = item
            for section in ("schemas", "securitySchemes"):
                merged["components"][section].update(spec.get("components", {}).get(section, {}))
        return merged

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="Stocksync API")

    @app.api_route("/{path:path}", methods=["GET", "POST", "PUT", "PATCH", "DELETE"], include_in_schema=False)
    async def proxy(path: str, request: Request) -> Response:
        full = "/" + path
        owner = next((svc for prefix, svc in ROUTES if full.startswith(prefix)), None)
        if owner is None:
            return ORJSONResponse({"detail": "Not Found"}, status_code=404)
        upstream = client.build_request(
            request.method,
            f"{upstreams[owner]}{full}",
            params=request.url.query,  # as sent: a repeated parameter (?sku=A&sku=B) keeps every value
            headers=[(k, v) for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP],
            content=await request.body(),
        )
        answer = await client.send(upstream, stream=True)
        return StreamingResponse(
            answer.aiter_raw(),
            status_code=answer.status_code,
            headers={k: v for k, v in answer.headers.items() if k.lower() not in _HOP_BY_HOP},
            background=_closer(answer),
        )

    return app


def _closer(answer: httpx.Response) -> Any:
    from starlette.background import BackgroundTask

    return BackgroundTask(answer.aclose)


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
