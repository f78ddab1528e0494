"""The OpenAPI document as FastAPI builds it, with what FastAPI cannot say by itself.

- A problem answer (4xx, 5xx) is `application/problem+json`: FastAPI files a response model under
  `application/json`, so the schema is moved to the media type the server really sends.
- Refinements given by the domains (the event body as a union discriminated on `domain`) rewrite
  their component schemas. They describe the same validation; the models that validate stay as
  they are, so no error location or message changes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from fastapi import FastAPI

from app.errors import PROBLEM_JSON

Refinement = Callable[[dict[str, Any]], None]


def install_openapi(app: FastAPI, refinements: Iterable[Refinement] = ()) -> None:
    build = app.openapi
    steps = list(refinements)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        document = build()
        _problems_as_problem_json(document)
        schemas = document.get("components", {}).get("schemas", {})
        for refine in steps:
            refine(schemas)
        app.openapi_schema = document
        return document

    app.openapi = openapi  # type: ignore[method-assign]


def _problems_as_problem_json(document: dict[str, Any]) -> None:
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            for status, response in operation.get("responses", {}).items():
                content = response.get("content", {})
                if not str(status).startswith(("4", "5")) or PROBLEM_JSON not in content:
                    continue
                moved = content.pop("application/json", None)
                if moved is not None:
                    content[PROBLEM_JSON] = moved
