"""Which methods a path serves (for 405 answers and their `Allow`), and each operation's id.

Starlette answers a wrong method from the first route whose path matches, so its `Allow` names only
that route's methods (`OPTIONS /v1/scans` said `POST`, though `GET /v1/scans` exists), and a
templated route takes a concrete path of another route as a parameter (`GET /v1/events/batch` was
read as the event id "batch"). Here, as in OpenAPI, a concrete path is served by its own routes only,
and `Allow` lists every method of every route of the path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI
from fastapi.routing import APIRoute, iter_route_contexts


def operation_id(route: APIRoute) -> str:
    """The OpenAPI operationId: the endpoint's name (`post_event`, `list_alerts`), short and stable, so
    a generated client's methods read like the API's verbs."""
    return route.name


@dataclass(frozen=True)
class PathTable:
    concrete: dict[str, frozenset[str]]
    templated: tuple[tuple[re.Pattern[str], frozenset[str]], ...]

    def methods(self, path: str) -> frozenset[str]:
        """Every method served at `path` (empty: no route has this path)."""
        if path in self.concrete:
            return self.concrete[path]
        found: set[str] = set()
        for regex, methods in self.templated:
            if regex.match(path):
                found |= methods
        return frozenset(found)


def path_table(app: Any) -> PathTable:
    """The table of `app`'s routes, built on first use (the routes are all included by then)."""
    table: PathTable | None = getattr(app.state, "path_table", None)
    if table is None:
        table = _build(app)
        app.state.path_table = table
    return table


def _build(app: FastAPI) -> PathTable:
    concrete: dict[str, set[str]] = {}
    templated: dict[str, tuple[re.Pattern[str], set[str]]] = {}
    for route in iter_route_contexts(app.routes):
        path, regex, methods = route.path, getattr(route, "path_regex", None), route.methods
        if path is None or regex is None or not methods:
            continue
        if route.param_convertors:
            templated.setdefault(path, (regex, set()))[1].update(methods)
        else:
            concrete.setdefault(path, set()).update(methods)
    return PathTable(
        concrete={path: frozenset(methods) for path, methods in concrete.items()},
        templated=tuple((regex, frozenset(methods)) for regex, methods in templated.values()),
    )


def route_path(scope: Any) -> str:
    """The request path below the app's root path, as the routes see it."""
    path: str = scope["path"]
    root: str = scope.get("root_path", "")
    if root and path.startswith(root) and path[len(root) : len(root) + 1] in ("", "/"):
        return path[len(root) :]
    return path


def allow_header(methods: frozenset[str]) -> str:
    return ", ".join(sorted(methods))
