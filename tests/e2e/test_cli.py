"""The `stocksync` command, run as a merchant's script runs it, against the running stack.

Every test runs the installed command in a subprocess with the base URL and key in the
environment, and checks its output and its exit code (0 success, 1 the API refused,
2 usage error, 3 cannot reach the server).
"""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from stocksync_embedded.stack import Stack, free_port

from tests.e2e.channel_sandboxes import SandboxShopify
from tests.e2e.conftest import Merchant, new_merchant, wait_for, webhook_url
from tests.e2e.test_order_flow import ITEM_C1, ITEM_C2, connect

pytestmark = pytest.mark.e2e

STOCKSYNC = [sys.executable, "-m", "stocksync_cli"]


def run(
    stack: Stack, merchant: Merchant | None, *args: str, stdin: str | None = None, timeout: float = 300, **env: str
) -> subprocess.CompletedProcess[str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith("STOCKSYNC_")}
    environment |= {
        "STOCKSYNC_URL": stack.base_url,
        "STOCKSYNC_CONFIG": str(stack.home / "cli-profiles-none.json"),
        "COLUMNS": "200",
    }
    if merchant is not None:
        environment["STOCKSYNC_API_KEY"] = merchant.api_key
    environment |= env
    return subprocess.run(
        [*STOCKSYNC, *args], env=environment, input=stdin, capture_output=True, text=True, timeout=timeout
    )


def as_json(result: subprocess.CompletedProcess[str]) -> Any:
    assert result.stdout, result.stderr
    return json.loads(result.stdout)


# ---- stock imports as jobs -----------------------------------------------------------------

BROKEN = {
    7: ("SKU-7", "-3", "on_hand"),  # negative
    5_000: ("SKU-5000", "many", "on_hand"),  # not a number
    50_000: ("SKU-10", "4", "sku"),  # SKU-10 is already on an earlier line
    99_999: ("X" * 201, "1", "sku"),  # longer than a SKU may be
}


def hundred_thousand_rows(path: Path) -> None:
    with path.open("w") as out:
        out.write("sku,on_hand\n")
        for n in range(1, 100_001):
            sku, on_hand, _ = BROKEN.get(n, (f"SKU-{n}", str(n % 50), ""))
            out.write(f"{sku},{on_hand}\n")


def test_import_of_100000_rows_applies_the_good_ones_and_reports_the_refused_rows_for_fixing(
    stack: Stack, merchant: Merchant, api: httpx.Client, tmp_path: Path
) -> None:
    source, report = tmp_path / "stock.csv", tmp_path / "refused.csv"
    hundred_thousand_rows(source)

    # The bound only matters when something is wrong: on a loaded shared 2-core machine a
    # correct import of 100,000 rows has taken minutes (alone, about 30 s).
    result = run(stack, merchant, "--json", "stock", "import", str(source), "--report", str(report), timeout=1800)

    assert result.returncode == 1, result.stderr  # some rows refused
    job = as_json(result)
    assert job["state"] == "succeeded"
    assert (job["applied"], job["refused"], job["rows_read"]) == (100_000 - len(BROKEN), len(BROKEN), 100_000)
    assert job["lines_done"] == job["lines_total"] == 100_001
    refused = list(csv.DictReader(io.StringIO(report.read_text())))
    assert [(int(r["#line"]), r["#field"]) for r in refused] == [
        (line + 1, field) for line, (_, _, field) in sorted(BROKEN.items())
    ]
    assert refused[2]["#reason"] == "SKU 'SKU-10' at 'default' is already on line 11"
    assert [r["sku"] for r in refused[:2]] == ["SKU-7", "SKU-5000"]
    assert api.get("/v1/stock/SKU-12345", headers=merchant.auth).json()["on_hand"] == 12345 % 50
    assert api.get("/v1/stock/SKU-7", headers=merchant.auth).status_code == 404

    # The merchant fixes two rows in the report, deletes the duplicate and the bad SKU, and
    # sends the report back as it is (its "#" columns are ignored).
    fixed = report.read_text().replace("SKU-7,-3", "SKU-7,3").replace("SKU-5000,many", "SKU-5000,8")
    (tmp_path / "fixed.csv").write_text("\n".join(fixed.splitlines()[:3]) + "\n")
    again = run(stack, merchant, "--json", "stock", "import", str(tmp_path / "fixed.csv"))
    assert again.returncode == 0, again.stderr
    assert (as_json(again)["applied"], as_json(again)["refused"]) == (2, 0)
    assert api.get("/v1/stock/SKU-7", headers=merchant.auth).json()["on_hand"] == 3
    assert api.get("/v1/stock/SKU-5000", headers=merchant.auth).json()["on_hand"] == 8
    # An attribute was not made of the report's own columns.
    answer = run(stack, merchant, "--json", "stock", "job", job["job_id"])
    assert as_json(answer)["job_id"] == job["job_id"]


def test_atomic_import_applies_nothing_when_one_row_is_refused(
    stack: Stack, merchant: Merchant, api: httpx.Client, tmp_path: Path
) -> None:
    source = tmp_path / "stock.jsonl"
    source.write_text('{"sku": "AT-1", "on_hand": 4}\n{"sku": "AT-2", "on_hand": -1}\n')

    result = run(stack, merchant, "--json", "stock", "import", str(source), "--atomic")

    assert result.returncode == 1
    job = as_json(result)
    assert (job["state"], job["applied"], job["refused"]) == ("failed", 0, 1)
    assert api.get("/v1/stock/AT-1", headers=merchant.auth).status_code == 404
    report = run(stack, merchant, "stock", "refused", job["job_id"])
    rows = list(csv.DictReader(io.StringIO(report.stdout)))
    assert rows == [
        {
            "#line": "2",
            "#field": "on_hand",
            "#reason": "Input should be greater than or equal to 0",
            "record": '{"sku": "AT-2", "on_hand": -1}',
        }
    ]

    source.write_text('{"sku": "AT-1", "on_hand": 4}\n{"sku": "AT-2", "on_hand": 1}\n')
    assert run(stack, merchant, "stock", "import", str(source), "--atomic").returncode == 0
    assert api.get("/v1/stock/AT-2", headers=merchant.auth).json()["on_hand"] == 1


def test_import_job_api_refuses_bad_requests_and_hides_other_merchants_jobs(
    api: httpx.Client, merchant: Merchant, stack: Stack
) -> None:
    assert api.post("/v1/stock/imports", headers=merchant.auth, content=b"x").status_code == 415
    assert api.get(f"/v1/stock/imports/{'0' * 8}-0000-0000-0000-{'0' * 12}", headers=merchant.auth).status_code == 404
    body = b"sku,on_hand,location\nJ-1,2,\nJ\x00X,3,\nJ-2,3,shop\x01\n"
    job = api.post("/v1/stock/imports", headers={**merchant.auth, "Content-Type": "text/csv"}, content=body)
    assert job.status_code == 202, job.text
    assert job.headers["Location"] == f"/v1/stock/imports/{job.json()['job_id']}"
    done = wait_for(
        lambda: (
            (j := api.get(f"/v1/stock/imports/{job.json()['job_id']}", headers=merchant.auth).json())["state"]
            not in ("queued", "running")
            and j
        )
    )
    # Control characters (a NUL cannot even be stored) are refused row by row, never a failed job.
    assert (done["state"], done["applied"], done["refused"]) == ("succeeded", 1, 2)
    report = api.get(done["refused_report"], headers=merchant.auth)
    assert [(row["#line"], row["#field"]) for row in csv.DictReader(io.StringIO(report.text))] == [
        ("3", "sku"),
        ("4", "location"),
    ]
    other_key = new_merchant(api, stack, "other").auth
    assert api.get(f"/v1/stock/imports/{job.json()['job_id']}", headers=other_key).status_code == 404
    assert api.get(f"/v1/stock/imports/{job.json()['job_id']}/refused", headers=other_key).status_code == 404
    assert api.get("/v1/stock/imports", headers=other_key).json() == []


# ---- rules from a file ---------------------------------------------------------------------

SEED_RULE = """\
# The seed's buffer stock: on channel C, 0 when the quantity is 3 or less, all products.
name: buffer on C
channels: [{channel}]
condition:
  op: "<="
  value: 3
action:
  type: set
  value: 0
"""


def test_the_seeds_rule_from_a_yaml_file_is_previewed_then_created(
    stack: Stack, merchant: Merchant, api: httpx.Client, sandbox_shopify: Callable[[], SandboxShopify], tmp_path: Path
) -> None:
    channel = connect(api, merchant, sandbox_shopify(), "C", ITEM_C2, "gid://shopify/Location/2")
    snapshot = {"items": [{"sku": "A", "on_hand": 3}, {"sku": "B", "on_hand": 9}]}
    assert api.post("/v1/stock/snapshots", headers=merchant.auth, json=snapshot).status_code == 200
    rule_file = tmp_path / "rule.yaml"
    rule_file.write_text(SEED_RULE.format(channel=channel))

    # The rule engine learns of stock and connections through events: wait until it has them.
    def previewed() -> Any:
        result = run(stack, merchant, "--json", "rules", "preview", str(rule_file))
        return result.returncode == 0 and as_json(result)["channel_quantities_changed"] == 1 and as_json(result)

    preview = wait_for(previewed)
    assert [(c["sku"], c["connection_id"], c["available"], c["proposed"]) for c in preview["changes"]] == [
        ("A", channel, 3, 0)
    ]
    table = run(stack, merchant, "rules", "preview", str(rule_file))
    assert table.returncode == 0
    assert "what would change" in table.stdout and "1 channel quantities on 1 SKUs" in table.stdout

    created = run(stack, merchant, "--json", "rules", "apply", str(rule_file))
    assert created.returncode == 0, created.stderr
    rule = as_json(created)
    assert (rule["condition"], rule["action"], rule["channels"]) == (
        {"op": "<=", "value": 3, "upper": None},
        {"type": "set", "value": 0},
        [channel],
    )
    listed = run(stack, merchant, "rules", "list")
    assert "buffer on C" in listed.stdout and "quantity <= 3" in listed.stdout
    disabled = run(stack, merchant, "--json", "rules", "disable", rule["rule_id"])
    assert as_json(disabled)["enabled"] is False


# ---- following pushes ----------------------------------------------------------------------


def test_follow_prints_each_new_push_as_a_json_line_while_an_order_is_placed(
    stack: Stack, merchant: Merchant, api: httpx.Client, sandbox_shopify: Callable[[], SandboxShopify]
) -> None:
    c1, c2 = sandbox_shopify(), sandbox_shopify()
    c1_id = connect(api, merchant, c1, "C1", ITEM_C1, "gid://shopify/Location/1")
    c2_id = connect(api, merchant, c2, "C2", ITEM_C2, "gid://shopify/Location/2")
    environment = {**os.environ, "STOCKSYNC_URL": stack.base_url, "STOCKSYNC_API_KEY": merchant.api_key}
    follower = subprocess.Popen(
        [*STOCKSYNC, "--json", "pushes", "list", "--follow", "--channel", c2_id],
        env=environment,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[dict[str, Any]] = []

    def read() -> None:
        for line in follower.stdout or []:
            lines.append(json.loads(line))

    reader = threading.Thread(target=read)
    reader.start()
    try:
        assert api.post(
            "/v1/stock/snapshots", headers=merchant.auth, json={"items": [{"sku": "A", "on_hand": 5}]}
        ).is_success
        wait_for(lambda: [p["quantity"] for p in lines] == [5])
        order = c1.order(webhook_url(api, c1_id), [{"sku": "A", "quantity": 2}])
        assert order["status_code"] == 200, order
        wait_for(lambda: [p["quantity"] for p in lines] == [5, 3])
    finally:
        follower.terminate()
        follower.wait(10)
        reader.join(10)
    assert {(p["connection_id"], p["sku"], p["status"]) for p in lines} == {(c2_id, "A", "accepted")}
    assert lines[0]["push_id"] < lines[1]["push_id"]

    # An operator resyncs C2: its one listed SKU is sent again with the quantity it has.
    resync = run(stack, merchant, "--json", "connections", "resync", c2_id)
    assert resync.returncode == 0, resync.stderr
    answer = as_json(resync)
    assert (answer["queued"] + answer["already_pending"], answer["without_quantity"]) == (1, 0)

    def history() -> list[tuple[int, str, bool]]:
        pushes = api.get("/v1/pushes", headers=merchant.auth, params={"connection_id": c2_id}).json()
        return [(p["quantity"], p["status"], p["causation_id"].startswith("resync:")) for p in pushes]

    # Sent and accepted once more although C2 already had version and quantity 3 (the
    # sandbox records no change for a quantity it already shows).
    wait_for(lambda: history() == [(5, "accepted", False), (3, "accepted", False), (3, "accepted", True)])
    assert c2.quantities(ITEM_C2) == [5, 3]
    unknown = run(stack, merchant, "connections", "resync", "00000000-0000-0000-0000-000000000000")
    assert unknown.returncode == 1 and "HTTP 404" in unknown.stderr


def test_operators_see_lag_and_backlog_per_service_and_dead_letters(stack: Stack, merchant: Merchant) -> None:
    backlog = run(stack, None, "--json", "backlog", STOCKSYNC_ADMIN_TOKEN=stack.admin_token)
    assert backlog.returncode == 0, backlog.stderr
    rows = as_json(backlog)
    assert [r["service"] for r in rows] == ["order-ingest", "stock-ledger", "rule-engine", "channel-publisher"]
    for row in rows:
        assert row["consumer_lag"] == sum(p["lag"] for p in row["partitions"]) >= 0
        assert isinstance(row["outbox_backlog"], int) and row["outbox_backlog"] >= 0
    table = run(stack, None, "backlog", STOCKSYNC_ADMIN_TOKEN=stack.admin_token)
    assert table.returncode == 0 and "channel-publisher" in table.stdout and "outbox backlog" in table.stdout
    assert run(stack, merchant, "backlog").returncode == 2  # no admin token
    assert run(stack, None, "backlog", STOCKSYNC_ADMIN_TOKEN="wrong").returncode == 1

    mine = run(stack, merchant, "--json", "dead-letters", "list", "--not-replayed")
    assert mine.returncode == 0, mine.stderr
    assert as_json(mine)["dead_letters"] == []  # a new merchant has none
    every = run(
        stack,
        None,
        "--json",
        "dead-letters",
        "list",
        "--all-merchants",
        "--limit",
        "5",
        STOCKSYNC_ADMIN_TOKEN=stack.admin_token,
    )
    assert every.returncode == 0, every.stderr
    assert isinstance(as_json(every)["dead_letters"], list)


# ---- API keys ------------------------------------------------------------------------------

# Every service that answers /v1 routes, through the gateway: a key refused by one is
# refused by all (each verifies it through the stock-ledger, cached for a few seconds).
ROUTE_PER_SERVICE = {
    "stock-ledger": "/v1/stock",
    "rule-engine": "/v1/rules",
    "channel-publisher": "/v1/connections",
    "order-ingest": "/v1/deliveries",
}


def statuses(api: httpx.Client, key: str) -> dict[str, int]:
    return {
        service: api.get(path, headers={"X-API-Key": key}).status_code for service, path in ROUTE_PER_SERVICE.items()
    }


def test_keys_are_created_listed_rotated_and_revoked_from_the_command_line_on_every_service(
    stack: Stack, merchant: Merchant, api: httpx.Client
) -> None:
    created = run(stack, merchant, "--json", "keys", "create", "ERP nightly")
    assert created.returncode == 0, created.stderr
    key = as_json(created)
    assert key["api_key"].startswith(f"ssk2_{key['key_id']}_") and key["state"] == "active"
    assert set(statuses(api, key["api_key"]).values()) == {200}

    listed = run(stack, merchant, "--json", "keys", "list")
    assert listed.returncode == 0, listed.stderr
    by_id = {item["key_id"]: item for item in as_json(listed)}
    assert by_id[key["key_id"]]["name"] == "ERP nightly" and by_id[key["key_id"]]["last_used_at"] is not None
    assert {item["name"] for item in by_id.values()} >= {"creation key", "ERP nightly"}
    assert key["api_key"] not in listed.stdout and merchant.api_key not in listed.stdout
    table = run(stack, merchant, "keys", "list")
    assert table.returncode == 0 and "ERP nightly" in table.stdout and "creation key" in table.stdout

    # Rotation with no grace: the old key stops at once (within the services' cache life).
    rotated = run(stack, merchant, "--json", "keys", "rotate", key["key_id"], "--grace", "0")
    assert rotated.returncode == 0, rotated.stderr
    new = as_json(rotated)
    assert new["name"] == "ERP nightly" and new["key_id"] != key["key_id"]
    wait_for(lambda: set(statuses(api, key["api_key"]).values()) == {401}, timeout=30, interval=0.5)
    assert set(statuses(api, new["api_key"]).values()) == {200}

    # Rotation with a grace period keeps the old key valid; revoking ends it everywhere.
    graced = as_json(run(stack, merchant, "--json", "keys", "rotate", new["key_id"], "--grace", "600"))
    assert set(statuses(api, new["api_key"]).values()) == {200}
    revoked = run(stack, merchant, "--json", "keys", "revoke", new["key_id"])
    assert revoked.returncode == 0, revoked.stderr
    assert as_json(revoked)["state"] == "revoked"
    wait_for(lambda: set(statuses(api, new["api_key"]).values()) == {401}, timeout=30, interval=0.5)
    assert set(statuses(api, graced["api_key"]).values()) == {200}
    refused = run(stack, None, "stock", "list", STOCKSYNC_API_KEY=new["api_key"])
    assert refused.returncode == 1 and "invalid or revoked API key" in refused.stderr


def test_the_last_active_key_cannot_be_revoked_and_unknown_keys_are_404(
    stack: Stack, api: httpx.Client, merchant: Merchant
) -> None:
    owner = new_merchant(api, stack, "one key")
    (only,) = as_json(run(stack, owner, "--json", "keys", "list"))
    last = run(stack, owner, "keys", "revoke", only["key_id"])
    assert last.returncode == 1 and "HTTP 409" in last.stderr and "last active API key" in last.stderr
    # Another merchant's key id answers what an unknown one does.
    other = run(stack, merchant, "keys", "revoke", only["key_id"])
    unknown = run(stack, merchant, "keys", "revoke", "0" * 16)
    assert other.returncode == unknown.returncode == 1
    assert "HTTP 404" in other.stderr and other.stderr == unknown.stderr
    assert run(stack, owner, "keys", "rotate", only["key_id"], "--grace", "-1").returncode == 2


# ---- exit codes and errors -----------------------------------------------------------------


def test_exit_code_0_on_success_with_a_table_or_json(stack: Stack, merchant: Merchant) -> None:
    adjusted = run(stack, merchant, "stock", "adjust", "EX-1", "4", "--reason", "found", "--actor", "cli test")
    assert adjusted.returncode == 0, adjusted.stderr
    shown = run(stack, merchant, "stock", "show", "EX-1")
    assert shown.returncode == 0
    assert "on_hand" in shown.stdout and "adjustment" in shown.stdout
    document = as_json(run(stack, merchant, "--json", "stock", "show", "EX-1"))
    assert document["stock"]["on_hand"] == 4 and document["ledger"][0]["reason"] == "found"


def test_exit_code_1_prints_the_field_and_reason_the_api_gave(stack: Stack, merchant: Merchant) -> None:
    result = run(stack, merchant, "stock", "adjust", "EX-2", "-5", "--reason", "lost", "--actor", "cli test")
    assert result.returncode == 1
    assert "HTTP 422" in result.stderr and "delta:" in result.stderr and "below zero" in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    unknown = run(stack, merchant, "stock", "show", "NO-SUCH-SKU")
    assert unknown.returncode == 1 and "HTTP 404" in unknown.stderr and "no stock for this SKU" in unknown.stderr
    bad_key = run(stack, None, "stock", "list", STOCKSYNC_API_KEY="not-a-key")
    assert bad_key.returncode == 1 and "HTTP 401" in bad_key.stderr


def test_exit_code_2_on_usage_errors(stack: Stack, merchant: Merchant, tmp_path: Path) -> None:
    assert run(stack, merchant, "stock", "show").returncode == 2  # missing argument
    assert run(stack, merchant, "stock", "list", "--no-such-option").returncode == 2
    no_key = run(stack, None, "stock", "list")
    assert no_key.returncode == 2 and "no API key" in no_key.stderr
    (tmp_path / "rule.yaml").write_text("name: [unclosed")
    broken = run(stack, merchant, "rules", "preview", str(tmp_path / "rule.yaml"))
    assert broken.returncode == 2 and "neither YAML nor JSON" in broken.stderr


def test_exit_code_3_when_the_server_cannot_be_reached(stack: Stack, merchant: Merchant) -> None:
    result = run(stack, merchant, "stock", "list", STOCKSYNC_URL=f"http://127.0.0.1:{free_port()}")
    assert result.returncode == 3
    assert "cannot reach" in result.stderr and "Traceback" not in result.stderr


def test_login_writes_a_profile_that_later_commands_use(stack: Stack, merchant: Merchant, tmp_path: Path) -> None:
    profiles = str(tmp_path / "profiles.json")
    login = run(stack, None, "login", "--url", stack.base_url, "--api-key", merchant.api_key, STOCKSYNC_CONFIG=profiles)
    assert login.returncode == 0, login.stderr
    assert os.stat(profiles).st_mode & 0o777 == 0o600
    listed = run(stack, None, "--json", "stock", "list", STOCKSYNC_CONFIG=profiles, STOCKSYNC_URL="")
    assert listed.returncode == 0 and as_json(listed)["items"] == []
    refused = run(
        stack, None, "login", "--url", stack.base_url, "--api-key", "wrong", STOCKSYNC_CONFIG=str(tmp_path / "x.json")
    )
    assert refused.returncode == 1 and not (tmp_path / "x.json").exists()


def test_bundles_and_locations_from_the_command_line(
    stack: Stack, merchant: Merchant, sandbox_shopify: Callable[[], SandboxShopify], api: httpx.Client
) -> None:
    counted = api.post(
        "/v1/stock/snapshots",
        headers=merchant.auth,
        json={"items": [{"sku": "BOARD", "on_hand": 7}, {"sku": "SCREW", "on_hand": 30, "location": "east"}]},
    )
    assert counted.status_code == 200, counted.text
    made = run(stack, merchant, "--json", "bundles", "set", "KIT", "BOARD=2", "SCREW=8")
    assert made.returncode == 0, made.stderr
    assert as_json(made)["components"] == [{"sku": "BOARD", "quantity": 2}, {"sku": "SCREW", "quantity": 8}]
    shown = as_json(run(stack, merchant, "--json", "bundles", "show", "KIT"))
    assert shown["available"] == {"default": 0, "east": 0}  # the boards and the screws are apart
    assert run(stack, merchant, "bundles", "set", "BAD", "BOARD=x").returncode == 2
    nested = run(stack, merchant, "bundles", "set", "BIG", "KIT=1")
    assert nested.returncode == 1 and "bundle" in nested.stderr
    refused = run(
        stack,
        merchant,
        "bundles",
        "import",
        "-",
        stdin='{"bundles": [{"sku": "NEST", "components": [{"sku": "KIT", "quantity": 1}]}]}',
    )
    assert refused.returncode == 1 and "NEST" in refused.stdout

    connection_id = connect(api, merchant, sandbox_shopify(), "C1", ITEM_C1, "gid://shopify/Location/1")
    moved = run(stack, merchant, "connections", "locations", connection_id, "east", "default")
    assert moved.returncode == 0, moved.stderr
    assert api.get(f"/v1/connections/{connection_id}", headers=merchant.auth).json()["locations"] == ["east", "default"]
    wait_for(lambda: connection_id in run(stack, merchant, "stock", "locations").stdout)
    assert run(stack, merchant, "bundles", "delete", "KIT").returncode == 0
    assert run(stack, merchant, "bundles", "show", "KIT").returncode == 1
