"""How answers are shown: Rich tables (colours on a terminal) or plain JSON for scripts."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

from rich.console import Console
from rich.table import Table

from stocksync_cli.client import Problem

Column = tuple[str, Callable[[dict[str, Any]], Any]]


def field(name: str) -> Callable[[dict[str, Any]], Any]:
    return lambda item: item.get(name)


class Output:
    def __init__(self, as_json: bool) -> None:
        self.as_json = as_json
        self.console = Console(soft_wrap=False)
        self.errors = Console(stderr=True)

    def document(self, value: Any) -> None:
        """One JSON value on stdout, nothing else."""
        sys.stdout.write(json.dumps(value, ensure_ascii=False, default=str) + "\n")
        sys.stdout.flush()

    def json_line(self, value: Any) -> None:
        sys.stdout.write(json.dumps(value, ensure_ascii=False, default=str, separators=(",", ":")) + "\n")
        sys.stdout.flush()

    def table(self, items: Sequence[dict[str, Any]], columns: Sequence[Column], *, title: str | None = None) -> None:
        if self.as_json:
            self.document(list(items))
            return
        if not items:
            self.console.print(f"[dim]no {title or 'items'}[/dim]")
            return
        table = Table(title=title, title_justify="left", header_style="bold")
        for name, _ in columns:
            table.add_column(name, overflow="fold")
        for item in items:
            table.add_row(*(_cell(get(item)) for _, get in columns))
        self.console.print(table)

    def record(self, item: dict[str, Any], *, title: str | None = None, fields: Sequence[str] | None = None) -> None:
        """One object: as JSON, or as a two-column table of its fields."""
        if self.as_json:
            self.document(item)
            return
        table = Table(title=title, title_justify="left", show_header=False, box=None)
        table.add_column(style="bold cyan")
        table.add_column(overflow="fold")
        for name in fields or list(item):
            table.add_row(name, _cell(item.get(name)))
        self.console.print(table)

    def done(self, message: str, value: Any = None) -> None:
        """A one-line confirmation (or the API's answer, with --json)."""
        if self.as_json:
            self.document(value if value is not None else {"ok": True})
        else:
            self.console.print(f"[green]✓[/green] {message}")

    def refused(self, status: int, problems: Sequence[Problem]) -> None:
        self.errors.print(f"[bold red]error[/bold red]: the API refused the request (HTTP {status})", highlight=False)
        for problem in problems:
            if problem.field:
                self.errors.print(f"  [bold]{problem.field}[/bold]: {problem.reason}", highlight=False)
            else:
                self.errors.print(f"  {problem.reason}", highlight=False)

    def fail(self, message: str) -> None:
        self.errors.print(f"[bold red]error[/bold red]: {message}", highlight=False)


def _cell(value: Any) -> str:
    if value is None:
        return "[dim]-[/dim]"
    if isinstance(value, bool):
        return "[green]yes[/green]" if value else "[yellow]no[/yellow]"
    if isinstance(value, list | dict):
        return json.dumps(value, ensure_ascii=False, default=str)
    return str(value).replace("[", r"\[")
