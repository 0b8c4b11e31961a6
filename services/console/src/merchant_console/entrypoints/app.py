"""The console's pages: server-rendered HTML over the public API, a little JavaScript for live parts.

Every page reads through `StocksyncApi` with the signed-in merchant's key, so the console
sees and changes exactly what that key may. Forms that change something carry the
session's CSRF token; the session cookie is sealed, HttpOnly and SameSite=Strict.
"""

from __future__ import annotations

import hmac
import secrets
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlencode

import httpx
from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from pydantic import BeforeValidator
from starlette.datastructures import FormData

from stocksync_common.bounds import SKU_MAX_LENGTH, Label, is_valid_sku
from stocksync_common.contracts import DEFAULT_LOCATION
from stocksync_common.cookies import no_cookies

from merchant_console.adapters.api import ApiError, ApiUnavailable, StocksyncApi, field_name, gather
from merchant_console.adapters.live_feed import SIGNED_OUT, LiveFeeds
from merchant_console.adapters.session import COOKIE_NAME, Session, SessionSealer
from merchant_console.config import ConsoleSettings
from merchant_console.domain.channel_activity import error_rate, group_errors, sync_window_chart
from merchant_console.domain.rule_form import ACTIONS, CONDITIONS, WEEKDAYS, RuleForm, describe_rule

HERE = Path(__file__).resolve().parent.parent
PREFIX = "/console"
PAGE_SIZE = 50
API_KEY_MAX_LENGTH = 512
SIGN_IN_COOKIE = "stocksync_console_sign_in"
# A comment line on a quiet stream, so that no proxy on the way closes it as idle.
KEEPALIVE_S = 15.0
KEY_REFUSED = "This API key is not accepted: it is unknown, or it has been revoked or rotated."


class NotSignedIn(Exception):
    pass


class BadCsrfToken(Exception):
    pass


def session_of(request: Request) -> Session:
    sealer: SessionSealer = request.app.state.sealer
    session = sealer.open(request.cookies.get(COOKIE_NAME))
    if session is None:
        raise NotSignedIn()
    return session


SignedIn = Annotated[Session, Depends(session_of)]


def api_of(request: Request, session: SignedIn) -> StocksyncApi:
    return StocksyncApi(request.app.state.client, session.api_key)


Api = Annotated[StocksyncApi, Depends(api_of)]
SkuFilter = Annotated[str | None, Query(max_length=SKU_MAX_LENGTH, pattern=r"^[^\x00-\x1f\x7f]*$")]


def _moment(value: str | None) -> datetime | None:
    """A time from a filter form: empty means no bound; without an offset it is UTC."""
    if not value:
        return None
    if not isinstance(value, str) or len(value) > 40:
        raise ValueError("a time such as 2026-12-01T09:00")
    moment = datetime.fromisoformat(value)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


Moment = Annotated[datetime | None, Query(), BeforeValidator(_moment)]


STOCK_SORTS = {"sku": "SKU", "on_hand": "On hand", "reserved": "Reserved", "available": "Available"}


@dataclass(frozen=True)
class StockView:
    """What the stock table shows: a SKU prefix, low stock, a location, a sort and a page (the API's cursor)."""

    q: str | None = None
    low: int | None = None
    sort: str = "sku"
    order: str = "asc"
    cursor: str | None = None
    location: str = DEFAULT_LOCATION

    def link(self, **changes: Any) -> str:
        """This view's query string with `changes` (None drops one); page 1 unless a cursor is given."""
        values = {
            "q": self.q,
            "low": self.low,
            "sort": self.sort,
            "order": self.order,
            "cursor": None,
            "location": self.location if self.location != DEFAULT_LOCATION else None,
            **changes,
        }
        return urlencode({k: v for k, v in values.items() if v not in (None, "")})

    def sort_link(self, column: str) -> str:
        """The header link: by this column ascending, or the other way when it is already sorted by it."""
        order = "desc" if self.sort == column and self.order == "asc" else "asc"
        return self.link(sort=column, order=order)

    def aria_sort(self, column: str) -> str:
        if self.sort != column:
            return "none"
        return "ascending" if self.order == "asc" else "descending"


def stock_view(
    q: SkuFilter = None,
    low: Annotated[int | None, Query(ge=0, le=1_000_000_000)] = None,
    sort: Annotated[Literal["sku", "on_hand", "reserved", "available", "updated_at"], Query()] = "sku",
    order: Annotated[Literal["asc", "desc"], Query()] = "asc",
    cursor: Annotated[str | None, Query(max_length=2048, pattern=r"^[A-Za-z0-9_=-]*$")] = None,
    location: Annotated[Label, Query()] = DEFAULT_LOCATION,
) -> StockView:
    return StockView(q, low, sort, order, cursor, location)


View = Annotated[StockView, Depends(stock_view)]


def create_app(settings: ConsoleSettings | None = None) -> FastAPI:
    settings = settings or ConsoleSettings()
    sealer = SessionSealer(settings.console_session_secret.get_secret_value(), settings.console_session_max_age_s)
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.globals.update(
        prefix=PREFIX, conditions=CONDITIONS, actions=ACTIONS, weekdays=WEEKDAYS, sorts=STOCK_SORTS
    )
    templates.env.filters["when"] = _when
    client = httpx.AsyncClient(
        base_url=settings.console_api_base_url,
        cookies=no_cookies(),
        timeout=settings.console_api_timeout_s,
        # Shorter than the API server's own keep-alive (uvicorn: 5 s), so that the console
        # never sends a request on a connection the server is closing.
        limits=httpx.Limits(max_keepalive_connections=50, keepalive_expiry=2.0),
    )

    feeds = LiveFeeds(lambda key: StocksyncApi(client, key), settings.console_live_interval_s)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await feeds.close()
        await client.aclose()

    app = FastAPI(title="Stocksync console", docs_url=None, redoc_url=None, lifespan=lifespan)
    app.mount(f"{PREFIX}/static", StaticFiles(directory=str(HERE / "static")), name="static")

    app.state.sealer = sealer
    app.state.client = client
    app.state.feeds = feeds

    # ---- session, CSRF and errors ---------------------------------------------------

    async def checked_form(request: Request, session: Session) -> FormData:
        form = await request.form()
        token = form.get("csrf")
        if not isinstance(token, str) or not hmac.compare_digest(token, session.csrf_token):
            raise BadCsrfToken()
        return form

    def render(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
        session = sealer.open(request.cookies.get(COOKIE_NAME))
        context.setdefault("csrf", session.csrf_token if session else "")
        context.setdefault("signed_in", session is not None)
        return templates.TemplateResponse(request, name, context, status_code=status_code)

    def set_session(response: Response, session: Session) -> None:
        response.set_cookie(
            COOKIE_NAME,
            sealer.seal(session),
            max_age=settings.console_session_max_age_s,
            path=PREFIX,
            httponly=True,
            samesite="strict",
            secure=settings.console_cookie_secure,
        )

    def is_fragment(request: Request) -> bool:
        return request.headers.get("x-console-fragment") == "1"

    @app.exception_handler(NotSignedIn)
    async def not_signed_in(request: Request, exc: NotSignedIn) -> Response:
        if is_fragment(request):
            return JSONResponse({"detail": "signed out"}, status_code=401)
        return RedirectResponse(f"{PREFIX}/sign-in", status_code=303)

    @app.exception_handler(BadCsrfToken)
    async def bad_csrf(request: Request, exc: BadCsrfToken) -> Response:
        return render(
            request,
            "error.html",
            403,
            title="Form expired",
            message="This form has expired: reload the page and try again.",
        )

    @app.exception_handler(ApiError)
    async def api_error(request: Request, exc: ApiError) -> Response:
        if exc.status_code == 401:
            # The key itself was refused: revoked, or rotated past its grace period.
            response = RedirectResponse(f"{PREFIX}/sign-in?refused=1", status_code=303)
            response.delete_cookie(COOKIE_NAME, path=PREFIX)
            return response
        status_code = exc.status_code if exc.status_code < 500 else 502
        return render(request, "error.html", status_code, title="Not possible", message=exc.message)

    @app.exception_handler(ApiUnavailable)
    async def api_unavailable(request: Request, exc: ApiUnavailable) -> Response:
        return render(request, "error.html", 503, title="Stocksync is not answering", message="Try again in a moment.")

    # ---- probes ---------------------------------------------------------------------

    @app.get("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "alive", "service": "console"}

    @app.get("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        try:
            ready = (await client.get("/healthz", timeout=3)).status_code == 200
        except httpx.HTTPError:
            ready = False
        return JSONResponse({"ready": ready, "api": settings.console_api_base_url}, status_code=200 if ready else 503)

    # ---- signing in and out ---------------------------------------------------------

    @app.get(PREFIX, include_in_schema=False)
    @app.get(f"{PREFIX}/", include_in_schema=False)
    async def home(request: Request) -> Response:
        target = "channels" if sealer.open(request.cookies.get(COOKIE_NAME)) else "sign-in"
        return RedirectResponse(f"{PREFIX}/{target}", status_code=303)

    def sign_in_form(request: Request, status_code: int = 200, **context: Any) -> HTMLResponse:
        """The sign-in form with a fresh token, also set in a cookie: a form posted from elsewhere lacks it."""
        token = secrets.token_urlsafe(24)
        response = render(request, "sign_in.html", status_code, csrf=token, **context)
        response.set_cookie(
            SIGN_IN_COOKIE,
            token,
            max_age=3600,
            path=f"{PREFIX}/sign-in",
            httponly=True,
            samesite="strict",
            secure=settings.console_cookie_secure,
        )
        return response

    @app.get(f"{PREFIX}/sign-in", include_in_schema=False)
    async def sign_in_page(request: Request, expired: bool = False, refused: bool = False) -> HTMLResponse:
        if refused:
            return sign_in_form(request, message=KEY_REFUSED + " Sign in with a current key.")
        return sign_in_form(request, message="Your session ended: sign in again." if expired else None)

    @app.post(f"{PREFIX}/sign-in", include_in_schema=False)
    async def sign_in(request: Request) -> Response:
        form = await request.form()
        token, expected = form.get("csrf"), request.cookies.get(SIGN_IN_COOKIE)
        if not isinstance(token, str) or not expected or not hmac.compare_digest(token, expected):
            return sign_in_form(request, 403, error="This form has expired: please sign in again.")
        key = form.get("api_key")
        key = key.strip() if isinstance(key, str) else ""
        if not key or len(key) > API_KEY_MAX_LENGTH or not key.isprintable():
            return sign_in_form(request, 400, error="Enter your Stocksync API key.")
        try:
            await StocksyncApi(client, key).get("/v1/connections")
        except ApiError as exc:
            if exc.status_code in (401, 403):
                return sign_in_form(
                    request,
                    401,
                    error=KEY_REFUSED + " Check that you copied the whole key, or create a new one.",
                )
            raise
        response = RedirectResponse(f"{PREFIX}/channels", status_code=303)
        # One Set-Cookie only (the sign-in token expires by itself): the embedded gateway
        # passes one value per header name.
        set_session(response, Session.new(key))
        return response

    @app.post(f"{PREFIX}/sign-out", include_in_schema=False)
    async def sign_out(request: Request, session: SignedIn) -> Response:
        await checked_form(request, session)
        response = RedirectResponse(f"{PREFIX}/sign-in", status_code=303)
        response.delete_cookie(COOKIE_NAME, path=PREFIX)
        return response

    # ---- channels ---------------------------------------------------------------------

    async def channel_rows(api: StocksyncApi) -> list[dict[str, Any]]:
        connections: list[dict[str, Any]] = await api.get("/v1/connections")

        async def row(connection: dict[str, Any]) -> dict[str, Any]:
            cid = connection["connection_id"]
            health, last_ok = await gather(
                api.get(f"/v1/connections/{cid}/health"),
                api.get("/v1/pushes", {"connection_id": cid, "status": "accepted", "order": "desc", "limit": 1}),
            )
            return {
                **connection,
                "health": health,
                "error_rate": error_rate(health["pushes"]),
                "last_success": last_ok[0] if last_ok else None,
            }

        return await gather(*(row(c) for c in connections))

    @app.get(f"{PREFIX}/channels", include_in_schema=False)
    async def channels_page(request: Request, api: Api) -> HTMLResponse:
        return render(request, "channels.html", channels=await channel_rows(api), page="channels")

    @app.get(f"{PREFIX}/channels/table", include_in_schema=False)
    async def channels_table(request: Request, api: Api) -> HTMLResponse:
        return render(request, "_channels_table.html", channels=await channel_rows(api))

    async def history_context(
        api: StocksyncApi,
        cid: uuid.UUID,
        sku: str | None,
        since: datetime | None,
        until: datetime | None,
        before: int | None,
    ) -> dict[str, Any]:
        params: dict[str, Any] = {"connection_id": str(cid), "order": "desc", "limit": PAGE_SIZE}
        error_params: dict[str, Any] = {"connection_id": str(cid), "order": "desc", "limit": 1000}
        for name, value in (
            ("sku", sku),
            ("since", since and since.isoformat()),
            ("until", until and until.isoformat()),
        ):
            if value:
                params[name] = value
                error_params[name] = value
        if before:
            params["before"] = before
        history, rejected, retrying, unmapped = await gather(
            api.get("/v1/pushes", params),
            api.get("/v1/pushes", {**error_params, "status": "rejected"}),
            api.get("/v1/pushes", {**error_params, "status": "retrying"}),
            api.get("/v1/pushes", {**error_params, "status": "unmapped"}),
        )
        return {
            "history": history,
            "errors": group_errors([*rejected, *retrying, *unmapped]),
            "older": history[-1]["push_id"] if len(history) == PAGE_SIZE else None,
        }

    @app.get(f"{PREFIX}/channels/{{cid}}", include_in_schema=False)
    async def channel_page(
        request: Request,
        cid: uuid.UUID,
        api: Api,
        sku: SkuFilter = None,
        since: Moment = None,
        until: Moment = None,
        before: Annotated[int | None, Query(ge=1)] = None,
    ) -> HTMLResponse:
        connection, health, context = await gather(
            api.get(f"/v1/connections/{cid}"),
            api.get(f"/v1/connections/{cid}/health"),
            history_context(api, cid, sku, since, until, before),
        )
        filters = {"sku": sku or "", "since": _local(since), "until": _local(until)}
        return render(
            request,
            "channel.html",
            page="channels",
            connection=connection,
            health=health,
            rate=error_rate(health["pushes"]),
            filters=filters,
            before=before,
            query=request.url.query,
            **context,
        )

    @app.get(f"{PREFIX}/channels/{{cid}}/activity", include_in_schema=False)
    async def channel_activity(
        request: Request,
        cid: uuid.UUID,
        api: Api,
        sku: SkuFilter = None,
        since: Moment = None,
        until: Moment = None,
    ) -> HTMLResponse:
        context = await history_context(api, cid, sku, since, until, None)
        return render(request, "_channel_activity.html", connection={"connection_id": str(cid)}, **context)

    @app.post(f"{PREFIX}/channels/{{cid}}/{{action}}", include_in_schema=False)
    async def pause_or_resume(request: Request, cid: uuid.UUID, action: str, session: SignedIn) -> Response:
        await checked_form(request, session)
        if action not in ("pause", "resume"):
            return render(request, "error.html", 404, title="Not found", message="No such action.")
        await StocksyncApi(client, session.api_key).post(f"/v1/connections/{cid}/{action}")
        return RedirectResponse(request.headers.get("referer") or f"{PREFIX}/channels/{cid}", status_code=303)

    # ---- rules ------------------------------------------------------------------------

    async def channel_names(api: StocksyncApi) -> tuple[list[dict[str, Any]], dict[str, str]]:
        connections: list[dict[str, Any]] = await api.get("/v1/connections")
        return connections, {c["connection_id"]: f"{c['name']} ({c['type']})" for c in connections}

    @app.get(f"{PREFIX}/rules", include_in_schema=False)
    async def rules_page(request: Request, api: Api, channel: uuid.UUID | None = None) -> HTMLResponse:
        rules, (connections, names) = await gather(api.get("/v1/rules"), channel_names(api))
        if channel is not None:
            rules = [r for r in rules if r["channels"] == "all" or str(channel) in r["channels"]]
        rules.sort(key=lambda r: (r["position"], r["created_at"]))
        for rule in rules:
            rule["summary"] = describe_rule(rule, names)
        return render(
            request, "rules.html", page="rules", rules=rules, connections=connections, channel=str(channel or "")
        )

    @app.get(f"{PREFIX}/rules/new", include_in_schema=False)
    async def new_rule_page(request: Request, api: Api, channel: uuid.UUID | None = None) -> HTMLResponse:
        connections, _ = await channel_names(api)
        form = RuleForm(channels=[str(channel)] if channel else [])
        return render(request, "rule_form.html", page="rules", form=form, connections=connections, rule=None)

    async def form_fields(request: Request, session: Session) -> RuleForm:
        form = await checked_form(request, session)
        return RuleForm.from_fields({k: [v for v in form.getlist(k) if isinstance(v, str)] for k in form})

    @app.post(f"{PREFIX}/rules/check", include_in_schema=False)
    async def check_rule(request: Request, session: SignedIn, rule_id: uuid.UUID | None = None) -> HTMLResponse:
        """As the merchant types: the API's field errors, or the preview of what saving would change."""
        api = StocksyncApi(client, session.api_key)
        form = await form_fields(request, session)
        body: dict[str, Any] = {"rule": form.rule_document(), "limit": 20}
        if rule_id is not None:
            body["rule_id"] = str(rule_id)
        try:
            preview, (_, names) = await gather(api.post("/v1/rules/preview", body), channel_names(api))
        except ApiError as exc:
            if exc.status_code != 422:
                raise
            return render(request, "_rule_check.html", errors=_form_errors(exc), preview=None)
        return render(request, "_rule_check.html", errors=[], preview=preview, names=names)

    @app.post(f"{PREFIX}/rules", include_in_schema=False)
    async def create_rule(request: Request, session: SignedIn) -> Response:
        api = StocksyncApi(client, session.api_key)
        form = await form_fields(request, session)
        try:
            saved = await api.post("/v1/rules", form.rule_document())
        except ApiError as exc:
            if exc.status_code != 422:
                raise
            connections, _ = await channel_names(api)
            return render(
                request,
                "rule_form.html",
                422,
                page="rules",
                form=form,
                connections=connections,
                rule=None,
                errors=_form_errors(exc),
            )
        return RedirectResponse(f"{PREFIX}/rules/{saved['rule_id']}?saved=1", status_code=303)

    @app.get(f"{PREFIX}/rules/{{rule_id}}", include_in_schema=False)
    async def rule_page(request: Request, rule_id: uuid.UUID, api: Api, saved: bool = False) -> HTMLResponse:
        rule, history, (connections, names) = await gather(
            api.get(f"/v1/rules/{rule_id}"), api.get(f"/v1/rules/{rule_id}/history"), channel_names(api)
        )
        rule["summary"] = describe_rule(rule, names)
        return render(
            request,
            "rule_form.html",
            page="rules",
            form=RuleForm.from_rule(rule),
            connections=connections,
            rule=rule,
            history=list(reversed(history)),
            saved=saved,
        )

    @app.post(f"{PREFIX}/rules/{{rule_id}}", include_in_schema=False)
    async def update_rule(request: Request, rule_id: uuid.UUID, session: SignedIn) -> Response:
        api = StocksyncApi(client, session.api_key)
        form = await form_fields(request, session)
        try:
            await api.call("PUT", f"/v1/rules/{rule_id}", json=form.rule_document())
        except ApiError as exc:
            if exc.status_code != 422:
                raise
            rule, (connections, _) = await gather(api.get(f"/v1/rules/{rule_id}"), channel_names(api))
            return render(
                request,
                "rule_form.html",
                422,
                page="rules",
                form=form,
                connections=connections,
                rule=rule,
                history=[],
                errors=_form_errors(exc),
            )
        return RedirectResponse(f"{PREFIX}/rules/{rule_id}?saved=1", status_code=303)

    @app.post(f"{PREFIX}/rules/{{rule_id}}/{{action}}", include_in_schema=False)
    async def change_rule(request: Request, rule_id: uuid.UUID, action: str, session: SignedIn) -> Response:
        await checked_form(request, session)
        api = StocksyncApi(client, session.api_key)
        if action in ("enable", "disable"):
            await api.call("PATCH", f"/v1/rules/{rule_id}", json={"enabled": action == "enable"})
        elif action == "delete":
            await api.call("DELETE", f"/v1/rules/{rule_id}")
        elif action in ("up", "down"):
            await _move_rule(api, rule_id, -1 if action == "up" else 1)
        else:
            return render(request, "error.html", 404, title="Not found", message="No such action.")
        return RedirectResponse(f"{PREFIX}/rules", status_code=303)

    # ---- stock ------------------------------------------------------------------------

    async def stock_context(api: StocksyncApi, view: StockView) -> dict[str, Any]:
        params: dict[str, Any] = {
            "limit": PAGE_SIZE,
            "sort": view.sort,
            "order": view.order,
            "location": view.location,
        }
        if view.q:
            params["sku_prefix"] = view.q
        if view.cursor:
            params["cursor"] = view.cursor
        if view.low is not None:
            params["available_at_most"] = view.low
        page, (connections, names) = await gather(api.get("/v1/stock", params), channel_names(api))
        items = page["items"]
        published: list[dict[str, Any]] = (
            await api.get("/v1/pushes/published", [("sku", i["sku"]) for i in items]) if items else []
        )
        by_sku: dict[str, dict[str, dict[str, Any]]] = {}
        for row in published:
            by_sku.setdefault(row["sku"], {})[row["connection_id"]] = row
        return {
            "items": items,
            "next_cursor": page["next_cursor"],
            "connections": connections,
            "published": by_sku,
            "names": names,
            "view": view,
        }

    @app.get(f"{PREFIX}/stock", include_in_schema=False)
    async def stock_page(request: Request, api: Api, view: View) -> HTMLResponse:
        context = await stock_context(api, view)
        return render(request, "stock.html", page="stock", query=request.url.query, **context)

    @app.get(f"{PREFIX}/stock/rows", include_in_schema=False)
    async def stock_rows(request: Request, api: Api, view: View) -> HTMLResponse:
        return render(request, "_stock_table.html", **await stock_context(api, view))

    @app.get(f"{PREFIX}/stock/{{sku:path}}", include_in_schema=False)
    async def sku_page(request: Request, sku: str, api: Api) -> HTMLResponse:
        if not is_valid_sku(sku):
            return render(
                request, "error.html", 422, title="Not a SKU", message=f"A SKU is 1 to {SKU_MAX_LENGTH} characters."
            )
        stock, ledger, pushes, oversells, rules, (_, names) = await gather(
            api.get(f"/v1/stock/{_quote(sku)}"),
            api.get(f"/v1/stock/{_quote(sku)}/ledger", {"order": "desc", "limit": 100}),
            api.get("/v1/pushes", {"sku": sku, "order": "desc", "limit": 200}),
            api.get("/v1/oversells", {"sku": sku, "status": "all"}),
            api.get("/v1/rules"),
            channel_names(api),
        )
        applying = [r for r in rules if not r["skus"] or sku in r["skus"]]
        applying.sort(key=lambda r: (r["position"], r["created_at"]))
        for rule in applying:
            rule["summary"] = describe_rule(rule, names)
        return render(
            request,
            "sku.html",
            page="stock",
            stock=stock,
            ledger=ledger["entries"],
            pushes=pushes,
            oversells=oversells,
            rules=applying,
            names=names,
        )

    # ---- locations and bundles ----------------------------------------------------------

    @app.get(f"{PREFIX}/locations", include_in_schema=False)
    async def locations_page(request: Request, api: Api) -> HTMLResponse:
        """Where the stock is, which channels sell from where, and the bundles (read-only)."""
        locations, bundles, (_, names) = await gather(
            api.get("/v1/locations"), api.get("/v1/bundles", {"limit": PAGE_SIZE}), channel_names(api)
        )
        details = await gather(*(api.get(f"/v1/bundles/{_quote(b['sku'])}") for b in bundles))
        return render(request, "locations.html", page="locations", locations=locations, bundles=details, names=names)

    # ---- orders -----------------------------------------------------------------------

    @app.get(f"{PREFIX}/orders", include_in_schema=False)
    async def orders_page(request: Request, api: Api, before: datetime | None = None) -> HTMLResponse:
        params: dict[str, Any] = {"limit": PAGE_SIZE}
        if before is not None:
            params["before"] = before.isoformat()
        deliveries, (_, names) = await gather(api.get("/v1/deliveries", params), channel_names(api))
        older = deliveries[-1]["received_at"] if len(deliveries) == PAGE_SIZE else None
        return render(
            request,
            "orders.html",
            page="orders",
            deliveries=deliveries,
            names=names,
            older=older,
            replayed=request.query_params.get("replayed"),
        )

    @app.post(f"{PREFIX}/orders/{{delivery_id}}/replay", include_in_schema=False)
    async def replay_delivery(request: Request, delivery_id: uuid.UUID, session: SignedIn) -> Response:
        await checked_form(request, session)
        answer = await StocksyncApi(client, session.api_key).post(f"/v1/deliveries/{delivery_id}/replay")
        return RedirectResponse(f"{PREFIX}/orders?replayed={answer['events']}", status_code=303)

    # ---- live -------------------------------------------------------------------------

    @app.get(f"{PREFIX}/events", include_in_schema=False)
    async def events(request: Request, session: SignedIn) -> StreamingResponse:
        """Server-sent events: one `event: <topic>` when the merchant's pushes, deliveries,
        stock, oversells or channels changed; the page then fetches what it shows."""

        async def stream() -> AsyncIterator[bytes]:
            ends_at = time.monotonic() + settings.console_live_stream_max_s
            async with feeds.subscribe(session.api_key) as subscriber:
                yield b"retry: 2000\nevent: ready\ndata: {}\n\n"
                while (left := ends_at - time.monotonic()) > 0:
                    topics = await subscriber.next(min(KEEPALIVE_S, left))
                    if not topics:
                        yield b": keep-alive\n\n"
                        continue
                    yield b"".join(f"event: {topic}\ndata: {{}}\n\n".encode() for topic in sorted(topics))
                    if SIGNED_OUT in topics:
                        return

        return StreamingResponse(
            stream(),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )

    async def live_context(api: StocksyncApi) -> dict[str, Any]:
        now = datetime.now(UTC)
        channels, pushes, deliveries, oversells = await gather(
            channel_rows(api),
            api.get("/v1/pushes", {"since": (now - timedelta(hours=1)).isoformat(), "order": "desc", "limit": 1000}),
            api.get("/v1/deliveries", {"limit": 8}),
            api.get("/v1/oversells", {"status": "open", "limit": 20}),
        )
        for channel in channels:
            mine = [p for p in pushes if p["connection_id"] == channel["connection_id"]]
            channel["chart"] = sync_window_chart(mine, now)
        recent = [d for d in deliveries if datetime.fromisoformat(d["received_at"]) >= now - timedelta(minutes=15)]
        flows = []
        for delivery in recent:
            orders = {p["external_order_id"] for p in delivery["produced"]}
            reached = [p for p in pushes if any(o and o in p["causation_id"] for o in orders)]
            flows.append(
                {
                    "delivery": delivery,
                    "accepted": sorted({p["connection_id"] for p in reached if p["status"] == "accepted"}),
                    "failed": sorted({p["connection_id"] for p in reached if p["status"] != "accepted"}),
                }
            )
        alerts = [c for c in channels if c["health"]["status"] != "ok"]
        names = {c["connection_id"]: f"{c['name']} ({c['type']})" for c in channels}
        return {
            "channels": channels,
            "flows": flows,
            "oversells": oversells,
            "alerts": alerts,
            "names": names,
            "now": now,
        }

    @app.get(f"{PREFIX}/live", include_in_schema=False)
    async def live_page(request: Request, api: Api) -> HTMLResponse:
        return render(request, "live.html", page="live", **await live_context(api))

    @app.get(f"{PREFIX}/live/panel", include_in_schema=False)
    async def live_panel(request: Request, api: Api) -> HTMLResponse:
        return render(request, "_live_panel.html", **await live_context(api))

    return app


def _form_errors(exc: ApiError) -> list[dict[str, str]]:
    if not exc.field_errors:
        return [{"field": "request", "message": exc.message}]
    return [{"field": field_name(e.get("loc", [])), "message": str(e.get("msg", ""))} for e in exc.field_errors]


async def _move_rule(api: StocksyncApi, rule_id: uuid.UUID, step: int) -> None:
    """Swap the rule's place in the funnel with its neighbour (positions renumbered by tens)."""
    rules: list[dict[str, Any]] = await api.get("/v1/rules")
    rules.sort(key=lambda r: (r["position"], r["created_at"]))
    ids = [r["rule_id"] for r in rules]
    index = ids.index(str(rule_id)) if str(rule_id) in ids else -1
    target = index + step
    if index < 0 or not 0 <= target < len(ids):
        return
    ids[index], ids[target] = ids[target], ids[index]
    positions = {r["rule_id"]: r["position"] for r in rules}
    for place, rid in enumerate(ids):
        wanted = (place + 1) * 10
        if positions[rid] != wanted:
            await api.call("PATCH", f"/v1/rules/{rid}", json={"position": wanted})


def _quote(sku: str) -> str:
    return quote(sku, safe="")


def _when(value: Any) -> str:
    if not value:
        return "never"
    moment = datetime.fromisoformat(str(value)) if not isinstance(value, datetime) else value
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _local(value: datetime | None) -> str:
    return value.strftime("%Y-%m-%dT%H:%M") if value else ""
