"""`stocksync`: the Stocksync API from a terminal or a script.

Exit codes: 0 success, 1 the API refused (the field at fault is printed), 2 usage error,
3 cannot reach the server.
"""

from __future__ import annotations

import secrets
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from typer.core import TyperGroup

from stocksync_cli.client import EXIT_REFUSED, EXIT_UNREACHABLE, EXIT_USAGE, ApiRefused, Client, Unreachable
from stocksync_cli.output import Column, Output
from stocksync_cli.output import field as f
from stocksync_cli.profiles import resolve, save_profile

UPLOAD_CHUNK_BYTES = 256 * 1024
# How often --follow and import progress ask the API again.
POLL_INTERVAL_S = 1.0


class UsageProblem(Exception):
    """The command line is wrong (exit 2), found after parsing: no key, an unreadable file."""


class _Commands(TyperGroup):
    """Turns the API's refusals and unreachable servers into messages and exit codes."""

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except ApiRefused as exc:
            _output(ctx).refused(exc.status, exc.problems)
            raise typer.Exit(EXIT_REFUSED) from None
        except Unreachable as exc:
            _output(ctx).fail(str(exc))
            raise typer.Exit(EXIT_UNREACHABLE) from None
        except UsageProblem as exc:
            _output(ctx).fail(str(exc))
            raise typer.Exit(EXIT_USAGE) from None
        except KeyboardInterrupt:
            raise typer.Exit(0) from None


def _output(ctx: typer.Context) -> Output:
    state = ctx.find_object(State)
    return state.output if state is not None else Output(as_json=False)


@dataclass
class State:
    url: str | None = None
    api_key: str | None = None
    admin_token: str | None = None
    profile: str | None = None
    output: Output = field(default_factory=lambda: Output(as_json=False))
    _client: Client | None = None

    def client(self, *, need_key: bool = True) -> Client:
        if self._client is None:
            try:
                target = resolve(self.url, self.api_key, self.admin_token, self.profile)
            except ValueError as exc:
                raise UsageProblem(str(exc)) from None
            if need_key and not target.api_key:
                raise UsageProblem("no API key: pass --api-key, set STOCKSYNC_API_KEY or run `stocksync login`")
            self._client = Client(target.url, target.api_key, target.admin_token)
        return self._client


app = typer.Typer(
    name="stocksync",
    cls=_Commands,
    help="Stocksync from a terminal or a script: stock, rules, connections, pushes, deliveries.",
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
)


@app.callback()
def _global(
    ctx: typer.Context,
    url: Annotated[str | None, typer.Option(envvar="STOCKSYNC_URL", help="Base URL of the API.")] = None,
    api_key: Annotated[
        str | None, typer.Option(envvar="STOCKSYNC_API_KEY", help="The merchant's API key.", show_default=False)
    ] = None,
    admin_token: Annotated[
        str | None, typer.Option(envvar="STOCKSYNC_ADMIN_TOKEN", help="Admin token (creating merchants).")
    ] = None,
    profile: Annotated[
        str | None, typer.Option(envvar="STOCKSYNC_PROFILE", help="Profile written by `stocksync login`.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Plain JSON on stdout (JSON lines with --follow).")] = False,
) -> None:
    ctx.obj = State(url, api_key, admin_token, profile, Output(as_json))


def _state(ctx: typer.Context) -> State:
    state = ctx.find_object(State)
    assert state is not None
    return state


def _read_document(path: Path) -> Any:
    """A YAML or JSON file (JSON is YAML); `-` reads standard input."""
    try:
        text = sys.stdin.read() if str(path) == "-" else path.read_text()
        return yaml.safe_load(text)
    except OSError as exc:
        raise UsageProblem(f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise UsageProblem(f"{path} is neither YAML nor JSON: {exc}") from None


def _follow(
    state: State, fetch: Callable[[int], list[dict[str, Any]]], cursor: str, columns: list[Column], title: str
) -> None:
    """Print the items, then keep asking for newer ones (by `cursor`) until Ctrl-C."""
    output, after = state.output, 0
    header_shown = False
    while True:
        items = fetch(after)
        for item in items:
            after = max(after, int(item[cursor]))
            if output.as_json:
                output.json_line(item)
            else:
                if not header_shown:
                    output.console.print(" | ".join(name for name, _ in columns), style="bold")
                    header_shown = True
                output.console.print(" | ".join(str(get(item)) for _, get in columns), highlight=False)
        if len(items) < 100:
            time.sleep(POLL_INTERVAL_S)


# ---- login, merchants ----------------------------------------------------------------------


@app.command()
def login(
    ctx: typer.Context,
    url: Annotated[str, typer.Option(prompt=True, help="Base URL of the API.")],
    api_key: Annotated[str, typer.Option(prompt=True, hide_input=True, help="The merchant's API key.")],
    admin_token: Annotated[str | None, typer.Option(help="Admin token, for `merchants create`.")] = None,
    profile: Annotated[str, typer.Option(help="Name of the profile to write.")] = "default",
) -> None:
    """Check a base URL and API key, and save them as a profile."""
    client = Client(url, api_key)
    try:
        client.get("/v1/stock", limit=1)
    finally:
        client.close()
    values = {"url": url, "api_key": api_key} | ({"admin_token": admin_token} if admin_token else {})
    path = save_profile(profile, values)
    _state(ctx).output.done(f"profile {profile!r} saved in {path}", {"profile": profile, "path": str(path)})


merchants = typer.Typer(cls=_Commands, help="Merchants (admin token).", no_args_is_help=True)
app.add_typer(merchants, name="merchants")


@merchants.command("create")
def merchants_create(ctx: typer.Context, name: Annotated[str, typer.Argument(help="The merchant's name.")]) -> None:
    """Create a merchant and its first API key (shown once)."""
    state = _state(ctx)
    client = state.client(need_key=False)
    if not client.admin_token:
        raise UsageProblem("creating a merchant needs --admin-token (or STOCKSYNC_ADMIN_TOKEN)")
    state.output.record(client.post("/v1/merchants", {"name": name}, admin=True), title="merchant")


# ---- API keys ---------------------------------------------------------------------------

keys = typer.Typer(cls=_Commands, help="The merchant's API keys: create, list, revoke, rotate.", no_args_is_help=True)
app.add_typer(keys, name="keys")
KEY_COLUMNS: list[Column] = [
    ("key id", f("key_id")),
    ("name", f("name")),
    ("state", f("state")),
    ("legacy", f("legacy")),
    ("created", f("created_at")),
    ("last used", f("last_used_at")),
    ("expires", f("expires_at")),
    ("revoked", f("revoked_at")),
]
KeyId = Annotated[str, typer.Argument(help="The key's id (the part after `ssk2_`; see `keys list`).")]
KEY_SHOWN_ONCE = ["api_key", "key_id", "name", "state", "created_at", "expires_at"]


@keys.command("create")
def keys_create(ctx: typer.Context, name: Annotated[str, typer.Argument(help="What the key is for.")]) -> None:
    """Create an API key; it is printed once, store it now."""
    state = _state(ctx)
    state.output.record(state.client().post("/v1/api-keys", {"name": name}), title="api key", fields=KEY_SHOWN_ONCE)


@keys.command("list")
def keys_list(ctx: typer.Context) -> None:
    """List the API keys (never the keys themselves): state, last use, legacy ones flagged."""
    state = _state(ctx)
    client = state.client()
    items: list[dict[str, Any]] = []
    after: str | None = None
    while True:
        page = client.get("/v1/api-keys", limit=1000, after=after)
        items.extend(page["items"])
        after = page["next_after"]
        if not after:
            break
    state.output.table(items, KEY_COLUMNS, title="api keys")


@keys.command("revoke")
def keys_revoke(ctx: typer.Context, key_id: KeyId) -> None:
    """Revoke a key: refused everywhere within seconds. The last active key cannot be revoked."""
    state = _state(ctx)
    answer = state.client().post(f"/v1/api-keys/{key_id}/revoke")
    state.output.done(f"API key {key_id} revoked", answer)


@keys.command("rotate")
def keys_rotate(
    ctx: typer.Context,
    key_id: KeyId,
    grace: Annotated[
        int,
        typer.Option(min=0, max=7 * 86_400, help="Seconds the old key stays valid (0: revoked at once)."),
    ] = 3600,
) -> None:
    """Replace a key by a new one (printed once); the old one stays valid for --grace seconds."""
    state = _state(ctx)
    answer = state.client().post(f"/v1/api-keys/{key_id}/rotate", {"grace_period_s": grace})
    state.output.record(answer, title="api key", fields=KEY_SHOWN_ONCE)


# ---- connections ---------------------------------------------------------------------------

connections = typer.Typer(cls=_Commands, help="Channel connections and their health.", no_args_is_help=True)
app.add_typer(connections, name="connections")
CONNECTION_COLUMNS: list[Column] = [
    ("id", f("connection_id")),
    ("type", f("type")),
    ("name", f("name")),
    ("paused", f("paused")),
    ("listings", f("listings")),
    ("base url", f("base_url")),
]
ConnectionId = Annotated[str, typer.Argument(help="The connection's id.")]


@connections.command("create")
def connections_create(
    ctx: typer.Context, file: Annotated[Path, typer.Argument(help="YAML or JSON file of the connection; - for stdin.")]
) -> None:
    """Create a connection from a file (type, name, base_url, credentials, listings...)."""
    state = _state(ctx)
    state.output.record(state.client().post("/v1/connections", _read_document(file)), title="connection")


@connections.command("list")
def connections_list(ctx: typer.Context) -> None:
    """List the connections."""
    state = _state(ctx)
    state.output.table(state.client().get("/v1/connections"), CONNECTION_COLUMNS, title="connections")


@connections.command("show")
def connections_show(ctx: typer.Context, connection_id: ConnectionId) -> None:
    """Show one connection."""
    state = _state(ctx)
    state.output.record(state.client().get(f"/v1/connections/{connection_id}"), title="connection")


@connections.command("health")
def connections_health(ctx: typer.Context, connection_id: ConnectionId) -> None:
    """Health of a connection: pushes by status, sync window, last errors."""
    state = _state(ctx)
    state.output.record(state.client().get(f"/v1/connections/{connection_id}/health"), title="health")


@connections.command("pause")
def connections_pause(
    ctx: typer.Context,
    connection_id: ConnectionId,
    reason: Annotated[str, typer.Option(help="Why, shown on the connection.")] = "paused by the merchant",
) -> None:
    """Stop sending to a channel; quantities keep coalescing until resumed."""
    state = _state(ctx)
    answer = state.client().post(f"/v1/connections/{connection_id}/pause", {"reason": reason})
    state.output.done(f"connection {connection_id} paused", answer)


@connections.command("resume")
def connections_resume(ctx: typer.Context, connection_id: ConnectionId) -> None:
    """Resume a paused connection: the newest quantities are sent now."""
    state = _state(ctx)
    answer = state.client().post(f"/v1/connections/{connection_id}/resume")
    state.output.done(f"connection {connection_id} resumed", answer)


@connections.command("resync")
def connections_resync(ctx: typer.Context, connection_id: ConnectionId) -> None:
    """Operator: send every listed SKU's current quantity to the channel again (idempotent)."""
    state = _state(ctx)
    answer = state.client().post(f"/v1/connections/{connection_id}/resync")
    state.output.done(
        f"connection {connection_id}: {answer['queued']} SKUs queued to be sent again, "
        f"{answer['already_pending']} already waiting, {answer['without_quantity']} without a quantity yet",
        answer,
    )


@connections.command("rotate-secret")
def connections_rotate_secret(
    ctx: typer.Context,
    connection_id: ConnectionId,
    secret: Annotated[
        str | None, typer.Option(help="The new webhook secret; omitted: a random one, printed once.")
    ] = None,
) -> None:
    """Add a new webhook secret; the current one stays valid until `retire-secret`."""
    state = _state(ctx)
    new_secret = secret or secrets.token_urlsafe(32)
    answer = state.client().post(f"/v1/connections/{connection_id}/webhook-secrets", {"secret": new_secret})
    if secret is None:
        answer["secret"] = new_secret  # shown once: set it on the channel's side
    state.output.record(answer, title="webhook secrets")


@connections.command("retire-secret")
def connections_retire_secret(ctx: typer.Context, connection_id: ConnectionId) -> None:
    """End a rotation: only the newest webhook secret is accepted from now on."""
    state = _state(ctx)
    answer = state.client().json("DELETE", f"/v1/connections/{connection_id}/webhook-secrets/previous")
    state.output.record(answer, title="webhook secrets")


@connections.command("drift")
def connections_drift(
    ctx: typer.Context,
    connection_id: ConnectionId,
    check: Annotated[bool, typer.Option(help="Run a drift check against the channel now.")] = False,
) -> None:
    """Listings whose quantity on the channel differs from what Stocksync published."""
    state = _state(ctx)
    client = state.client()
    path = f"/v1/connections/{connection_id}/drift"
    findings = client.post(f"{path}-checks") if check else client.get(path)
    columns: list[Column] = [(name, f(name)) for name in sorted({k for item in findings for k in item})]
    state.output.table(findings, columns, title="drift findings")


# ---- stock ---------------------------------------------------------------------------------


@connections.command("locations")
def connections_locations(
    ctx: typer.Context,
    connection_id: ConnectionId,
    locations: Annotated[list[str], typer.Argument(help="The stock locations it sells from, first choice first.")],
) -> None:
    """Set the stock locations a channel sells from, first choice first (docs/stock.md)."""
    state = _state(ctx)
    answer = state.client().json("PUT", f"/v1/connections/{connection_id}/locations", json={"locations": locations})
    state.output.done(f"connection {connection_id} sells from {', '.join(answer['locations'])}", answer)


bundles = typer.Typer(cls=_Commands, help="Bundles (kits): SKUs made of components.", no_args_is_help=True)
app.add_typer(bundles, name="bundles")
BundleSku = Annotated[str, typer.Argument(help="The bundle's SKU.")]


def _components(specs: list[str]) -> list[dict[str, Any]]:
    """`SKU=QUANTITY` (or a SKU alone: 1) per component."""
    components = []
    for spec in specs:
        sku, _, quantity = spec.rpartition("=") if "=" in spec else (spec, "", "1")
        if not quantity.isdigit():
            raise typer.BadParameter(f"{spec!r}: a component is SKU=QUANTITY")
        components.append({"sku": sku, "quantity": int(quantity)})
    return components


@bundles.command("set")
def bundles_set(
    ctx: typer.Context,
    sku: BundleSku,
    components: Annotated[list[str], typer.Argument(help="Each component as SKU=QUANTITY, e.g. BOARD=2 SCREW=8.")],
) -> None:
    """Define or replace a bundle."""
    state = _state(ctx)
    body = {"components": _components(components)}
    state.output.record(state.client().json("PUT", f"/v1/bundles/{sku}", json=body), title="bundle")


@bundles.command("import")
def bundles_import(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help='YAML or JSON: {"bundles": [{"sku", "components"}]}; - for stdin.')],
) -> None:
    """Define or replace many bundles at once (exit 1 if any is refused)."""
    state = _state(ctx)
    answer = state.client().post("/v1/bundles/import", _read_document(file))
    state.output.done(f"{answer['saved']} bundles saved, {len(answer['refused'])} refused", answer)
    if not state.output.as_json:
        for refused in answer["refused"]:
            state.output.console.print(f"  #{refused['index']} {refused['sku']}: {refused['message']}")
    if answer["refused"]:
        raise typer.Exit(1)


@bundles.command("list")
def bundles_list(
    ctx: typer.Context,
    after: Annotated[str | None, typer.Option(help="Start after this SKU.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
) -> None:
    """List the bundles and their components (one page; --after for the next)."""
    state = _state(ctx)
    found = state.client().get("/v1/bundles", after=after, limit=limit)
    if state.output.as_json:
        state.output.document(found)
        return
    rows = [
        {"sku": b["sku"], "components": " ".join(f"{c['sku']}={c['quantity']}" for c in b["components"])} for b in found
    ]
    state.output.table(rows, [("sku", f("sku")), ("components", f("components"))], title="bundles")


@bundles.command("show")
def bundles_show(ctx: typer.Context, sku: BundleSku) -> None:
    """A bundle, its components and its available per location."""
    state = _state(ctx)
    state.output.record(state.client().get(f"/v1/bundles/{sku}"), title=f"bundle {sku}")


@bundles.command("delete")
def bundles_delete(ctx: typer.Context, sku: BundleSku) -> None:
    """Delete a bundle: channels are sent 0 for it."""
    state = _state(ctx)
    state.client().request("DELETE", f"/v1/bundles/{sku}")
    state.output.done(f"bundle {sku} deleted")


stock = typer.Typer(cls=_Commands, help="Stock: imports, adjustments, a SKU and its ledger.", no_args_is_help=True)
app.add_typer(stock, name="stock")
_CONTENT_TYPES = {".csv": "text/csv", ".jsonl": "application/x-ndjson", ".ndjson": "application/x-ndjson"}
_CONTENT_TYPES[".json"] = "application/json"
JOB_FIELDS = [
    "job_id",
    "state",
    "format",
    "atomic",
    "lines_done",
    "lines_total",
    "applied",
    "ignored_stale",
    "refused",
    "error",
    "created_at",
    "finished_at",
    "refused_report",
]


def _file_chunks(path: Path, progress: Callable[[int], None]) -> Iterator[bytes]:
    with path.open("rb") as source:
        while chunk := source.read(UPLOAD_CHUNK_BYTES):
            progress(len(chunk))
            yield chunk


@stock.command("import")
def stock_import(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(help="CSV, JSON lines (.jsonl) or JSON file.", exists=True, dir_okay=False)],
    as_of: Annotated[
        datetime | None,
        typer.Option(formats=["%Y-%m-%dT%H:%M:%S%z"], help="as_of of rows that carry none (with an offset)."),
    ] = None,
    atomic: Annotated[bool, typer.Option(help="Apply all rows in one transaction, or none if any is refused.")] = False,
    wait: Annotated[bool, typer.Option(help="Follow the job until it ends, with a progress bar.")] = True,
    report: Annotated[Path | None, typer.Option(help="Write the refused rows (CSV, with reasons) here.")] = None,
    content_type: Annotated[str | None, typer.Option(help="Override the type guessed from the extension.")] = None,
) -> None:
    """Import stock from a file as a job; exit 1 when rows were refused or the job failed."""
    state = _state(ctx)
    output, client = state.output, state.client()
    kind = content_type or _CONTENT_TYPES.get(file.suffix.lower())
    if kind is None:
        raise UsageProblem(f"cannot tell the format of {file.name}: use .csv, .jsonl or .json, or --content-type")
    params = {"atomic": str(atomic).lower(), "as_of": as_of.isoformat() if as_of else None}
    size = file.stat().st_size
    with _progress(output) as bars:
        upload = bars.add_task("upload", total=size)
        job = client.upload("/v1/stock/imports", _file_chunks(file, lambda n: bars.advance(upload, n)), kind, **params)
        if wait:
            rows = bars.add_task("import", total=max(job["lines_total"], 1))
            while job["state"] in ("queued", "running"):
                time.sleep(POLL_INTERVAL_S / 2)
                job = client.get(f"/v1/stock/imports/{job['job_id']}")
                # JSON documents count items, not lines: the total grows if it must.
                bars.update(rows, completed=job["lines_done"], total=max(job["lines_total"], job["lines_done"], 1))
            bars.update(rows, completed=max(job["lines_total"], 1))
    if report is not None and job["state"] not in ("queued", "running"):
        with report.open("wb") as out:
            for chunk in client.download(job["refused_report"]):
                out.write(chunk)
    output.record(job, title="import job", fields=JOB_FIELDS)
    if job["state"] == "failed" or job["refused"]:
        if not output.as_json:
            output.fail(
                f"{job['refused']} rows refused"
                + (f"; job failed: {job['error']}" if job["state"] == "failed" else "")
                + (f"; report in {report}" if report else f"; get them with `stocksync stock refused {job['job_id']}`")
            )
        raise typer.Exit(EXIT_REFUSED)


def _progress(output: Output) -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=output.errors,
        disable=output.as_json or not output.errors.is_terminal,
    )


@stock.command("imports")
def stock_imports(ctx: typer.Context, limit: Annotated[int, typer.Option(min=1, max=1000)] = 20) -> None:
    """List import jobs, newest first."""
    state = _state(ctx)
    columns: list[Column] = [(name, f(name)) for name in JOB_FIELDS[:-1]]
    state.output.table(state.client().get("/v1/stock/imports", limit=limit), columns, title="import jobs")


@stock.command("job")
def stock_job(ctx: typer.Context, job_id: Annotated[str, typer.Argument(help="The import job's id.")]) -> None:
    """Show an import job's state and progress."""
    state = _state(ctx)
    state.output.record(state.client().get(f"/v1/stock/imports/{job_id}"), title="import job", fields=JOB_FIELDS)


@stock.command("refused")
def stock_refused(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(help="The import job's id.")],
    output_file: Annotated[Path | None, typer.Option("--output", "-o", help="Write to this file, not stdout.")] = None,
) -> None:
    """The refused rows of an import job as CSV (fix them and import the file again)."""
    client = _state(ctx).client()
    chunks = client.download(f"/v1/stock/imports/{job_id}/refused")
    if output_file is None:
        for chunk in chunks:
            sys.stdout.buffer.write(chunk)
        sys.stdout.flush()
        return
    with output_file.open("wb") as out:
        for chunk in chunks:
            out.write(chunk)


# Unknown options are arguments here, so that a negative delta needs no `--`.
@stock.command("adjust", context_settings={"ignore_unknown_options": True})
def stock_adjust(
    ctx: typer.Context,
    sku: Annotated[str, typer.Argument(help="The SKU.")],
    delta: Annotated[int, typer.Argument(help="Signed change of on_hand, e.g. -2.")],
    reason: Annotated[str, typer.Option(help="Why, e.g. 'damaged in warehouse'.")],
    actor: Annotated[str, typer.Option(help="Who makes the adjustment.")],
    location: Annotated[str, typer.Option(help="Stock location.")] = "default",
    adjustment_id: Annotated[
        str | None, typer.Option(help="Idempotency key: sending it again changes nothing.")
    ] = None,
) -> None:
    """Change a SKU's on_hand by a signed delta, with a reason and who."""
    state = _state(ctx)
    body: dict[str, Any] = {"sku": sku, "delta": delta, "reason": reason, "actor": actor, "location": location}
    if adjustment_id:
        body["adjustment_id"] = adjustment_id
    answer = state.client().post("/v1/stock/adjustments", body)
    if state.output.as_json:
        state.output.document(answer)
    else:
        state.output.record(answer["stock"], title="duplicate: nothing changed" if answer["duplicate"] else "stock")


@stock.command("show")
def stock_show(
    ctx: typer.Context,
    sku: Annotated[str, typer.Argument(help="The SKU.")],
    location: Annotated[str, typer.Option(help="Stock location.")] = "default",
    entries: Annotated[int, typer.Option(min=1, max=1000, help="Newest ledger entries shown.")] = 20,
) -> None:
    """A SKU's stock and its newest ledger entries."""
    state = _state(ctx)
    client = state.client()
    item = client.get(f"/v1/stock/{sku}", location=location)
    ledger = client.get(f"/v1/stock/{sku}/ledger", location=location, limit=entries, order="desc")["entries"]
    if state.output.as_json:
        state.output.document({"stock": item, "ledger": ledger})
        return
    state.output.record(item, title=f"stock of {sku}")
    state.output.table(
        ledger,
        [
            ("id", f("id")),
            ("kind", f("kind")),
            ("qty", f("quantity")),
            ("Δ on_hand", f("delta_on_hand")),
            ("Δ reserved", f("delta_reserved")),
            ("version", f("version")),
            ("occurred", f("occurred_at")),
            ("causation", f("causation_id")),
        ],
        title="ledger (newest first)",
    )


@stock.command("locations")
def stock_locations(ctx: typer.Context) -> None:
    """The stock locations and the connections selling from each (rank 1: first choice)."""
    state = _state(ctx)
    found = state.client().get("/v1/locations")
    if state.output.as_json:
        state.output.document(found)
        return
    rows = [
        {
            "location": use["location"],
            "connections": " ".join(f"{c['connection_id']}#{c['rank']}" for c in use["connections"]) or "-",
        }
        for use in found
    ]
    state.output.table(
        rows, [("location", f("location")), ("connections (#rank)", f("connections"))], title="locations"
    )


@stock.command("list")
def stock_list(
    ctx: typer.Context,
    available_at_most: Annotated[int | None, typer.Option(help="Only SKUs with available <= this.")] = None,
    after: Annotated[str | None, typer.Option(help="Start after this SKU.")] = None,
    limit: Annotated[int, typer.Option(min=1, max=1000)] = 100,
) -> None:
    """Current stock by SKU (one page; --after for the next)."""
    state = _state(ctx)
    page = state.client().get("/v1/stock", limit=limit, after=after, available_at_most=available_at_most)
    columns: list[Column] = [(n, f(n)) for n in ("sku", "location", "on_hand", "reserved", "available", "version")]
    if state.output.as_json:
        state.output.document(page)
    else:
        state.output.table(page["items"], columns, title="stock")


# ---- rules ---------------------------------------------------------------------------------

rules = typer.Typer(cls=_Commands, help="Channel rules: apply, preview, list, enable, disable.", no_args_is_help=True)
app.add_typer(rules, name="rules")
RuleFile = Annotated[Path, typer.Argument(help="YAML or JSON file of one rule; - for stdin.")]
RuleId = Annotated[str, typer.Argument(help="The rule's id.")]
RULE_COLUMNS: list[Column] = [
    ("position", f("position")),
    ("id", f("rule_id")),
    ("name", f("name")),
    ("channels", f("channels")),
    ("condition", lambda r: _condition(r["condition"])),
    ("action", lambda r: f"{r['action']['type']} {r['action']['value']}"),
    ("enabled", f("enabled")),
    ("in force", f("in_force")),
]


def _condition(condition: dict[str, Any]) -> str:
    if condition["op"] == "always":
        return "always"
    if condition["op"] == "between":
        return f"between {condition['value']} and {condition['upper']}"
    return f"quantity {condition['op']} {condition['value']}"


def _rule_document(file: Path) -> tuple[str | None, dict[str, Any]]:
    document = _read_document(file)
    if not isinstance(document, dict):
        raise UsageProblem(f"{file} must hold one rule (a mapping)")
    rule_id = document.pop("rule_id", None)
    for computed in ("in_force", "next_change_at", "channel_quantities_changed"):
        document.pop(computed, None)
    return (str(rule_id) if rule_id else None), document


@rules.command("apply")
def rules_apply(ctx: typer.Context, file: RuleFile) -> None:
    """Create a rule from a file, or replace it when the file names its rule_id."""
    state = _state(ctx)
    rule_id, document = _rule_document(file)
    client = state.client()
    saved = client.json("PUT", f"/v1/rules/{rule_id}", json=document) if rule_id else client.post("/v1/rules", document)
    state.output.record(saved, title="rule saved")


@rules.command("preview")
def rules_preview(
    ctx: typer.Context,
    file: RuleFile,
    limit: Annotated[int, typer.Option(min=0, max=100_000, help="Most changes listed.")] = 1000,
) -> None:
    """What a rule file would change (SKU, channel, current and proposed quantity), before saving."""
    state = _state(ctx)
    rule_id, document = _rule_document(file)
    body: dict[str, Any] = {"rule": document, "limit": limit} | ({"rule_id": rule_id} if rule_id else {})
    preview = state.client().post("/v1/rules/preview", body)
    if state.output.as_json:
        state.output.document(preview)
        return
    state.output.table(
        preview["changes"],
        [
            ("sku", f("sku")),
            ("channel", f("connection_id")),
            ("available", f("available")),
            ("current", f("current")),
            ("proposed", f("proposed")),
        ],
        title="what would change",
    )
    more = " (more not listed)" if preview["truncated"] else ""
    state.output.console.print(
        f"{preview['channel_quantities_changed']} channel quantities on {preview['skus_changed']} SKUs{more}"
    )


@rules.command("list")
def rules_list(ctx: typer.Context) -> None:
    """List the rules in funnel order (the order they are applied in)."""
    state = _state(ctx)
    items = sorted(state.client().get("/v1/rules"), key=lambda r: (r["position"], r["name"]))
    state.output.table(items, RULE_COLUMNS, title="rules (funnel order)")


@rules.command("show")
def rules_show(ctx: typer.Context, rule_id: RuleId) -> None:
    """Show one rule."""
    state = _state(ctx)
    state.output.record(state.client().get(f"/v1/rules/{rule_id}"), title="rule")


def _set_enabled(ctx: typer.Context, rule_id: str, enabled: bool) -> None:
    state = _state(ctx)
    saved = state.client().json("PATCH", f"/v1/rules/{rule_id}", json={"enabled": enabled})
    verb = "enabled" if enabled else "disabled"
    state.output.done(f"rule {rule_id} {verb}; {saved['channel_quantities_changed']} channel quantities changed", saved)


@rules.command("enable")
def rules_enable(ctx: typer.Context, rule_id: RuleId) -> None:
    """Enable a rule."""
    _set_enabled(ctx, rule_id, True)


@rules.command("disable")
def rules_disable(ctx: typer.Context, rule_id: RuleId) -> None:
    """Disable a rule (kept, not applied)."""
    _set_enabled(ctx, rule_id, False)


# ---- pushes, channel errors ----------------------------------------------------------------

PUSH_COLUMNS: list[Column] = [
    ("push", f("push_id")),
    ("finished", f("finished_at")),
    ("channel", f("connection_id")),
    ("sku", f("sku")),
    ("quantity", f("quantity")),
    ("status", f("status")),
    ("window ms", f("sync_window_ms")),
    ("channel said", f("channel_response")),
]
Channel = Annotated[str | None, typer.Option("--channel", help="Only this connection id.")]
Sku = Annotated[str | None, typer.Option(help="Only this SKU.")]
Since = Annotated[
    datetime | None, typer.Option(formats=["%Y-%m-%dT%H:%M:%S%z"], help="Finished at or after (with an offset).")
]
Follow = Annotated[bool, typer.Option("--follow", "-f", help="Keep printing new ones until Ctrl-C.")]
Limit = Annotated[int, typer.Option(min=1, max=1000)]


def _pushes(
    ctx: typer.Context,
    status: str | None,
    channel: str | None,
    sku: str | None,
    since: datetime | None,
    follow: bool,
    limit: int,
    title: str,
) -> None:
    state = _state(ctx)
    client = state.client()

    def fetch(after: int) -> list[dict[str, Any]]:
        params = {"connection_id": channel, "sku": sku, "status": status, "after": after, "limit": limit}
        pushes: list[dict[str, Any]] = client.get("/v1/pushes", since=since.isoformat() if since else None, **params)
        return pushes

    if follow:
        _follow(state, fetch, "push_id", PUSH_COLUMNS, title)
    else:
        state.output.table(fetch(0), PUSH_COLUMNS, title=title)


pushes = typer.Typer(cls=_Commands, help="What was sent to which channel, and what it answered.", no_args_is_help=True)
app.add_typer(pushes, name="pushes")


@pushes.command("list")
def pushes_list(
    ctx: typer.Context,
    channel: Channel = None,
    sku: Sku = None,
    since: Since = None,
    status: Annotated[str | None, typer.Option(help="accepted, rejected, retrying or unmapped.")] = None,
    follow: Follow = False,
    limit: Limit = 100,
) -> None:
    """Push history, oldest first; --follow streams new pushes."""
    _pushes(ctx, status, channel, sku, since, follow, limit, "pushes")


@pushes.command("errors")
def pushes_errors(
    ctx: typer.Context,
    channel: Channel = None,
    sku: Sku = None,
    since: Since = None,
    follow: Follow = False,
    limit: Limit = 100,
) -> None:
    """Channel errors: pushes the channel rejected, with its own message; --follow streams new ones."""
    _pushes(ctx, "rejected", channel, sku, since, follow, limit, "channel errors")


# ---- deliveries, oversells, dead letters ---------------------------------------------------

deliveries = typer.Typer(cls=_Commands, help="Order webhooks received: list, replay.", no_args_is_help=True)
app.add_typer(deliveries, name="deliveries")


@deliveries.command("list")
def deliveries_list(
    ctx: typer.Context, channel: Channel = None, limit: Annotated[int, typer.Option(min=1, max=500)] = 50
) -> None:
    """Deliveries received, newest first."""
    state = _state(ctx)
    items = state.client().get("/v1/deliveries", connection_id=channel, limit=limit)
    columns: list[Column] = [
        ("id", f("delivery_id")),
        ("received", f("received_at")),
        ("channel", f("connection_id")),
        ("type", f("channel_type")),
        ("event", f("channel_event_id")),
        ("events", f("events_produced")),
        ("replayed", f("replayed_at")),
    ]
    state.output.table(items, columns, title="deliveries")


@deliveries.command("replay")
def deliveries_replay(
    ctx: typer.Context, delivery_id: Annotated[str, typer.Argument(help="The delivery's id.")]
) -> None:
    """Parse a stored delivery again and publish its movements (the ledger ignores repeats)."""
    state = _state(ctx)
    answer = state.client().post(f"/v1/deliveries/{delivery_id}/replay")
    state.output.done(f"delivery {delivery_id} replayed: {answer['events']} events", answer)


oversells = typer.Typer(cls=_Commands, help="Units sold beyond what was available.", no_args_is_help=True)
app.add_typer(oversells, name="oversells")


@oversells.command("list")
def oversells_list(
    ctx: typer.Context,
    status: Annotated[str, typer.Option(help="open, resolved or all.")] = "open",
    sku: Sku = None,
    limit: Limit = 100,
) -> None:
    """Oversells, newest first."""
    state = _state(ctx)
    items = state.client().get("/v1/oversells", status=status, sku=sku, limit=limit)
    columns: list[Column] = [
        (n, f(n)) for n in ("detected_at", "sku", "location", "oversold", "available", "resolved_at", "causation_id")
    ]
    state.output.table(items, columns, title="oversells")


dead_letters = typer.Typer(cls=_Commands, help="Operator: events that failed, and their replay.", no_args_is_help=True)
app.add_typer(dead_letters, name="dead-letters")


DEAD_LETTER_COLUMNS: list[Column] = [
    ("id", f("dead_letter_id")),
    ("when", f("dead_lettered_at")),
    ("service", f("service")),
    ("topic", f("topic")),
    ("key", f("key")),
    ("error", f("error")),
    ("replays", f("replay_count")),
]
AllMerchants = Annotated[
    bool, typer.Option("--all-merchants", help="Every merchant's, with the admin token (operators).")
]


def _admin_client(state: State) -> Client:
    client = state.client(need_key=False)
    if not client.admin_token:
        raise UsageProblem("this needs --admin-token (or STOCKSYNC_ADMIN_TOKEN)")
    return client


@dead_letters.command("list")
def dead_letters_list(
    ctx: typer.Context,
    all_merchants: AllMerchants = False,
    topic: Annotated[str | None, typer.Option(help="Only this topic's, e.g. orders.v1.")] = None,
    replayed: Annotated[
        bool | None, typer.Option("--replayed/--not-replayed", help="Only replayed ones, or not.")
    ] = None,
    limit: Limit = 100,
) -> None:
    """Dead-lettered events with their error, newest first."""
    state = _state(ctx)
    params: dict[str, Any] = {"limit": limit, "topic": topic}
    if replayed is not None:
        params["replayed"] = str(replayed).lower()
    if all_merchants:
        page = _admin_client(state).json("GET", "/v1/admin/dead-letters", params=params, admin=True)
    else:
        page = state.client().get("/v1/dead-letters", **params)
    if state.output.as_json:
        state.output.document(page)
        return
    state.output.table(page["dead_letters"], DEAD_LETTER_COLUMNS, title="dead letters")


@dead_letters.command("replay")
def dead_letters_replay(
    ctx: typer.Context,
    dead_letter_id: Annotated[str, typer.Argument(help="Its id (from `dead-letters list`).")],
    all_merchants: AllMerchants = False,
) -> None:
    """Replay a dead-lettered event: put it back on its topic (applied once, however often replayed)."""
    state = _state(ctx)
    if all_merchants:
        path = f"/v1/admin/dead-letters/{dead_letter_id}/replay"
        answer = _admin_client(state).json("POST", path, admin=True)
    else:
        answer = state.client().post(f"/v1/dead-letters/{dead_letter_id}/replay")
    state.output.done(f"dead letter {dead_letter_id} replayed", answer)


# ---- operators -----------------------------------------------------------------------------

SERVICES = ("order-ingest", "stock-ledger", "rule-engine", "channel-publisher")


@app.command("backlog")
def backlog(ctx: typer.Context) -> None:
    """Operator: consumer lag and outbox backlog per service (admin token); exit 3 if a service does not answer."""
    state = _state(ctx)
    client = _admin_client(state)
    rows: list[dict[str, Any]] = []
    unreachable = []
    for service in SERVICES:
        try:
            rows.append(client.json("GET", f"/v1/admin/backlog/{service}", admin=True))
        except Unreachable as exc:
            unreachable.append(service)
            rows.append({"service": service, "error": str(exc)})
    if state.output.as_json:
        state.output.document(rows)
    else:
        columns: list[Column] = [
            ("service", f("service")),
            ("consumer lag", lambda r: r.get("consumer_lag", "unreachable")),
            ("partitions", lambda r: len(r["partitions"]) if "partitions" in r else None),
            ("outbox backlog", lambda r: r.get("outbox_backlog")),
        ]
        state.output.table(rows, columns, title="backlog")
    if unreachable:
        raise typer.Exit(EXIT_UNREACHABLE)


def _command_index() -> str:
    """Every command with its one-line description, for `stocksync --help`."""
    entries: list[tuple[str, str]] = []
    for command in app.registered_commands:
        name = command.name or (command.callback.__name__.replace("_", "-") if command.callback else "")
        entries.append((name, _first_line(command.callback)))
    for group in app.registered_groups:
        assert group.typer_instance is not None
        for command in group.typer_instance.registered_commands:
            entries.append((f"{group.name} {command.name}", _first_line(command.callback)))
    width = max(len(name) for name, _ in entries)
    # "\b" keeps the lines as they are in click's help formatter.
    return "\n".join(["\b", "Every command:", *(f"  {name.ljust(width)}  {text}" for name, text in entries)])


def _first_line(callback: Callable[..., Any] | None) -> str:
    return ((callback.__doc__ if callback else None) or "").strip().split("\n")[0]


app.info.epilog = _command_index()


def main() -> None:
    try:
        app(prog_name="stocksync")
    except ValueError as exc:  # a profile file that cannot be read
        Output(as_json=False).fail(str(exc))
        sys.exit(EXIT_USAGE)


# For `typer stocksync_cli.main utils docs` and tests.
__all__ = ["app", "main"]
