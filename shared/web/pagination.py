"""Cursor pagination of list endpoints: ``?limit=&starting_after=`` →
``{"object": "list", "data": [...], "has_more": bool}``.

Repositories fetch ``query.fetch_limit`` rows (one more than asked) so that ``has_more``
needs no count query.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ConfigDict, Field


class ListQuery(BaseModel):
    model_config = ConfigDict(extra="forbid")

    limit: int = Field(default=20, ge=1, le=100)
    starting_after: str | None = Field(default=None, max_length=100)

    @property
    def fetch_limit(self) -> int:
        return self.limit + 1


def list_page(rows: Sequence[Any], query: ListQuery, render: Callable[[Any], dict]) -> web.Response:
    return web.json_response(
        {
            "object": "list",
            "data": [render(row) for row in rows[: query.limit]],
            "has_more": len(rows) > query.limit,
        }
    )
