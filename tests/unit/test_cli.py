"""The command line's own pieces: its generated reference and how it reads API errors."""

from __future__ import annotations

from pathlib import Path

import httpx

from stocksync_cli.client import Problem, problems_of
from stocksync_cli.docs import markdown
from stocksync_cli.main import app

DOCS = Path(__file__).parents[2] / "docs" / "cli.md"


def test_docs_cli_md_is_what_the_command_line_generates() -> None:
    assert DOCS.read_text() == markdown(), "docs/cli.md is stale: run `python -m stocksync_cli.docs > docs/cli.md`"


def test_help_lists_every_command_with_its_one_line_description() -> None:
    epilog = app.info.epilog or ""
    for group in app.registered_groups:
        assert group.typer_instance is not None
        for command in group.typer_instance.registered_commands:
            assert f"{group.name} {command.name} " in epilog
            assert command.callback is not None and command.callback.__doc__
    assert "  login " in epilog


def response(status: int, body: object) -> httpx.Response:
    return httpx.Response(status, json=body)


def test_field_errors_are_read_with_their_location_without_the_body_prefix() -> None:
    answer = response(422, {"detail": [{"loc": ["body", "items", 0, "on_hand"], "msg": "too small", "type": "x"}]})
    assert problems_of(answer) == [Problem("items.0.on_hand", "too small")]


def test_a_message_detail_an_errors_list_and_a_non_json_body_are_shown_as_given() -> None:
    assert problems_of(response(404, {"detail": "no such connection"})) == [Problem(None, "no such connection")]
    assert problems_of(response(422, {"errors": [{"field": "sku", "message": "too long"}]})) == [
        Problem("sku", "too long")
    ]
    assert problems_of(httpx.Response(400, text="plain words")) == [Problem(None, "plain words")]
