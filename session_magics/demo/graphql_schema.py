"""The schema of the demo API's GraphQL endpoint (strawberry-graphql; see graphql.py).

No ``from __future__ import annotations`` here: strawberry reads the annotations.
"""

from typing import Any

import strawberry

from . import data

MAX_FIRST = 500


@strawberry.type
class Penguin:
    id: int
    species: str
    island: str
    bill_length_mm: float | None
    bill_depth_mm: float | None
    flipper_length_mm: int | None
    body_mass_g: int | None
    sex: str | None
    year: int


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


@strawberry.type
class PenguinEdge:
    cursor: str
    node: Penguin


@strawberry.type
class PenguinConnection:
    total_count: int
    page_info: PageInfo
    edges: list[PenguinEdge]

    @strawberry.field
    def nodes(self) -> list[Penguin]:
        return [edge.node for edge in self.edges]


def _penguin(row: dict[str, Any]) -> Penguin:
    return Penguin(**row)


@strawberry.type
class Query:
    @strawberry.field(description="Penguins, a page at a time (a Relay-style connection).")
    def penguins(
        self,
        first: int = 20,
        after: str | None = None,
        species: str | None = None,
        island: str | None = None,
    ) -> PenguinConnection:
        if not 0 < first <= MAX_FIRST:
            raise ValueError(f"'first' must be between 1 and {MAX_FIRST}")
        rows = data.penguins()
        if species:
            rows = tuple(r for r in rows if r["species"].lower() == species.lower())
        if island:
            rows = tuple(r for r in rows if r["island"].lower() == island.lower())
        start = data.decode_cursor("penguin", after) + 1 if after else 0
        chunk = rows[start : start + first]
        edges = [
            PenguinEdge(cursor=data.encode_cursor("penguin", start + k), node=_penguin(r))
            for k, r in enumerate(chunk)
        ]
        info = PageInfo(
            has_next_page=start + len(chunk) < len(rows),
            has_previous_page=start > 0,
            start_cursor=edges[0].cursor if edges else None,
            end_cursor=edges[-1].cursor if edges else None,
        )
        return PenguinConnection(total_count=len(rows), page_info=info, edges=edges)

    @strawberry.field(description="One penguin by its id (1 to 344).")
    def penguin(self, id: int) -> Penguin:
        rows = data.penguins()
        if not 1 <= id <= len(rows):
            raise ValueError(f"No penguin with id {id}")
        return _penguin(rows[id - 1])


class _Schema(strawberry.Schema):
    def process_errors(self, errors: list[Any], execution_context: Any = None) -> None:
        """Errors go to the client in the answer; the server log stays quiet (as for 4xx)."""


schema = _Schema(query=Query)
