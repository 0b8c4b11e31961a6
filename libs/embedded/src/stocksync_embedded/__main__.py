"""`python -m stocksync_embedded run`: Stocksync on its embedded default, with a demo.

Starts (or reuses) an embedded PostgreSQL under the home folder and the embedded broker,
creates the topics, runs the migrations, starts the four services, the gateway and a
sandbox marketplace per demo channel (two Shopify stores, one of each other channel
type), seeds the demo merchant once, prints how to place an order on each, restarts
whatever crashes (with backoff), and stops everything it started on Ctrl-C.
DATABASE_URL and KAFKA_BOOTSTRAP_SERVERS point it at real servers instead.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import signal
import threading
from pathlib import Path

from stocksync_embedded.demo import (
    DEMO_MIRAKL_INTERVAL_S,
    channel_sandbox_process,
    load_or_seed,
    resume_paused_connections,
    sandbox_process,
    seed_channel_sandbox,
    seed_sandbox_inventory,
    seed_stock,
    seed_warehouse_and_bundle,
)
from stocksync_embedded.stack import Ports, Stack


def _secrets(home: Path) -> dict[str, str]:
    path = home / "secrets.json"
    # A home made by an earlier version lacks the newer secrets: they are added (rows stored
    # before encryption at rest are read as they are, whatever the key).
    values: dict[str, str] = json.loads(path.read_text()) if path.exists() else {}
    missing = {
        name: secrets.token_urlsafe(32)
        for name in ("api_key_secret", "admin_token", "secrets_key", "console_session_secret")
        if name not in values
    }
    if not missing:
        return values
    values.update(missing)
    home.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(values))
    path.chmod(0o600)
    return values


def run(home: Path, ports: Ports, sandbox_port: int, with_demo: bool) -> None:
    values = _secrets(home)
    # The demo's Mirakl sandbox allows an OR11 call every 10 s, so its orders show in
    # seconds; a real Mirakl allows one a minute (leave the demo out with --no-demo).
    extra_env = {"MIRAKL_POLL_INTERVAL_OVERRIDE_S": str(DEMO_MIRAKL_INTERVAL_S)} if with_demo else {}
    stack = Stack(
        home,
        ports,
        api_key_secret=values["api_key_secret"],
        admin_token=values["admin_token"],
        secrets_key=values["secrets_key"],
        console_session_secret=values["console_session_secret"],
        extra_env=extra_env,
    )
    stopping = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.set())
    try:
        print(f"Stocksync: starting in {home} ...", flush=True)
        stack.start_infrastructure()
        stack.migrate()
        stack.start_services()
        lines = [
            "",
            "Stocksync is running.",
            f"  Base URL:     {stack.base_url}",
            f"  Console:      {stack.base_url}/console  (sign in with the merchant's API key)",
            f"  API docs:     {stack.base_url}/docs",
            f"  Database:     {stack.database_url}",
            f"  Broker:       {stack.kafka_bootstrap_servers}",
            f"  Logs:         {home / 'logs'}",
            f"  Admin token:  {values['admin_token']}  (POST /v1/merchants)",
        ]
        if with_demo:
            demo = load_or_seed(stack, sandbox_port)
            for store in demo.stores:
                stack.add_process(sandbox_process(stack, store, home / "logs"))
                seed_sandbox_inventory(store)
            for channel in demo.channels:
                stack.add_process(channel_sandbox_process(channel, home / "logs"))
                seed_channel_sandbox(channel)
            resume_paused_connections(stack, demo)
            seed_stock(stack, demo)
            seed_warehouse_and_bundle(stack, demo)
            c1, c2 = demo.stores
            lines += [
                "",
                "Demo merchant: SKU-A on_hand 5, two sandbox Shopify stores and one sandbox of every other",
                "channel type, rule on C2 '0 when <= 3'; a second warehouse 'east' (SKU-A 3, SKU-B 4) that",
                "WooCommerce also sells from, and a bundle KIT-AB (1 SKU-A + 2 SKU-B).",
                f"  API key:      {demo.api_key}",
                f"  Shopify C1:   http://127.0.0.1:{c1.port}  (connection {c1.connection_id})",
                f"  Shopify C2:   http://127.0.0.1:{c2.port}  (connection {c2.connection_id})",
                *[f"  {c.type + ':':<13} {c.url}  (connection {c.connection_id})" for c in demo.channels],
                "",
                f"Open the console at {stack.base_url}/console and sign in with the API key above.",
                "",
                "Place a demo order of 1 x SKU-A on C1 (a signed webhook to Stocksync):",
                f"  curl -s -X POST http://127.0.0.1:{c1.port}/_sandbox/orders -H 'content-type: application/json' "
                '-d \'{"line_items": [{"sku": "SKU-A", "quantity": 1}]}\'',
                "Then see the stock, and what C2 received:",
                f"  curl -s -H 'X-API-Key: {demo.api_key}' {stack.base_url}/v1/stock/SKU-A",
                f"  curl -s http://127.0.0.1:{c2.port}/_sandbox/changes",
                f"  curl -s -H 'X-API-Key: {demo.api_key}' '{stack.base_url}/v1/pushes?sku=SKU-A'",
                "",
                "Or place it on any other channel: its sandbox signs the order as that channel does",
                f"(Mirakl: order-ingest polls OR11 every {DEMO_MIRAKL_INTERVAL_S} s). What a sandbox received:",
                "<url>/_sandbox/listings.",
                *[f"  {c.type}:\n    {c.order_curl(stack.base_url)}" for c in demo.channels],
            ]
        print("\n".join([*lines, "", "Ctrl-C stops everything."]), flush=True)
        # A crashed process (the broker included) is restarted with backoff; only
        # Ctrl-C stops the stack.
        stack.supervise()
        stopping.wait()
    finally:
        print("Stocksync: stopping ...", flush=True)
        stack.stop()
        print("Stocksync: stopped.", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m stocksync_embedded")
    sub = parser.add_subparsers(dest="command", required=True)
    run_parser = sub.add_parser("run", help="run Stocksync on the embedded default")
    run_parser.add_argument("--home", type=Path, default=Path(os.environ.get("STOCKSYNC_HOME", ".stocksync")))
    run_parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("STOCKSYNC_PORT", "8000")),
        help="gateway port; the services take the next four",
    )
    run_parser.add_argument("--sandbox-port", type=int, default=int(os.environ.get("STOCKSYNC_SANDBOX_PORT", "9101")))
    run_parser.add_argument("--no-demo", action="store_true", help="do not seed or start the demo merchant")
    args = parser.parse_args()
    base = args.port
    ports = Ports(
        base,
        base + 1,
        base + 2,
        base + 3,
        base + 4,
        int(os.environ.get("STOCKSYNC_POSTGRES_PORT", "55432")),
        int(os.environ.get("STOCKSYNC_BROKER_PORT", "59092")),
        base + 5,
    )
    run(args.home.resolve(), ports, args.sandbox_port, not args.no_demo)


if __name__ == "__main__":
    main()
