"""The public Stocksync API, called with the signed-in merchant's key.

The console reads and changes nothing except through these calls: it sees exactly what
the merchant's key may see.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping, Sequence
from typing import Any, TypeVar

import httpx

T = TypeVar("T")

Params = Mapping[str, str | int | float | None] | list[tuple[str, str | int | float | None]] | None


class ApiError(Exception):
    """An answer other than 2xx, with the API's own detail (a message or field errors)."""

    def __init__(self, status_code: int, detail: Any) -> None:
        super().__init__(f"{status_code}: {detail}")
        self.status_code = status_code
        self.detail = detail

    @property
    def field_errors(self) -> list[dict[str, Any]]:
        if isinstance(self.detail, list):
            return [e for e in self.detail if isinstance(e, dict)]
        return []

    @property
    def message(self) -> str:
        if isinstance(self.detail, str):
            return self.detail
        if self.field_errors:
            return "; ".join(f"{field_name(e.get('loc', []))}: {e.get('msg', '')}" for e in self.field_errors)
        return str(self.detail)


class ApiUnavailable(Exception):
    """The API did not answer (down, or timed out)."""


def field_name(loc: Sequence[Any]) -> str:
    """`["body", "rule", "condition", "value"]` -> `condition.value`: the field as the form names it."""
    parts = [str(p) for p in loc if p not in ("body", "query", "path", "rule", "patch")]
    return ".".join(parts) or "request"


class StocksyncApi:
    def __init__(self, client: httpx.AsyncClient, api_key: str) -> None:
        self._client = client
        self._headers = {"X-API-Key": api_key}

    async def call(self, method: str, path: str, *, params: Params = None, json: Any = None) -> Any:
        try:
            answer = await self._client.request(method, path, params=params, json=json, headers=self._headers)
        except httpx.HTTPError as exc:
            raise ApiUnavailable(f"{type(exc).__name__} calling {path}") from exc
        if answer.status_code >= 400:
            try:
                detail = answer.json().get("detail", answer.text)
            except ValueError:
                detail = answer.text[:500]
            raise ApiError(answer.status_code, detail)
        return answer.json() if answer.content else None

    async def get(self, path: str, params: Params = None) -> Any:
        return await self.call("GET", path, params=params)

    async def post(self, path: str, json: Any = None) -> Any:
        return await self.call("POST", path, json=json)


async def gather(*calls: Awaitable[T]) -> list[T]:
    """Run independent API calls at once; the first error is raised after all finished."""
    results = await asyncio.gather(*calls, return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result
    return list(results)  # type: ignore[arg-type]
