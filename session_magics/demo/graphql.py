"""The demo API's GraphQL endpoint (``POST /graphql``), made with strawberry-graphql.

::

    query Penguins($first: Int, $after: String, $species: String) {
      penguins(first: $first, after: $after, species: $species) {
        totalCount
        pageInfo { hasNextPage endCursor }
        edges { node { id species island bodyMassG } }
      }
    }

``penguins`` is a Relay-style connection (``first``/``after``, ``pageInfo``,
``edges { node }``, also ``nodes``); ``penguin(id:)`` answers one, and an
unknown id is a GraphQL error with a path. The endpoint needs a token like the
other protected endpoints. strawberry is imported on the first request only.
"""

from __future__ import annotations

from typing import Any


class GraphQLEndpoint:
    """An ASGI app: the token check of the demo API, then strawberry's GraphQL app."""

    def __init__(self, state: Any) -> None:
        self.state = state
        self._app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        from starlette.requests import Request
        from starlette.responses import Response

        found = self.state.authenticate(Request(scope, receive))
        if isinstance(found, Response):
            await found(scope, receive, send)
            return
        if self._app is None:
            from strawberry.asgi import GraphQL

            from .graphql_schema import schema

            self._app = GraphQL(schema, graphql_ide=None)
        await self._app(scope, receive, send)
