"""The one ASGI middleware every request passes: request id, body limit, metrics, last-resort 500,
and 405 for a method a concrete path does not serve.

These concerns sit in one layer rather than four because each layer wraps every ASGI message
of every request; on a two-core machine the wrapping alone was a measurable share of a small POST.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import time

from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import problem
from app.logging import end_request_scrubbing, request_id_var, start_request_scrubbing
from app.metrics import observe_request
from app.routing import allow_header, path_table, route_path

MAX_BODY_BYTES = 1024 * 1024

log = logging.getLogger("supervision.errors")

# A caller's own id is kept (so logs join across systems) only when it is short and harmless.
_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")


_request_counter = itertools.count()
_request_prefix = os.urandom(8).hex()


def _new_request_prefix() -> None:
    global _request_prefix
    _request_prefix = os.urandom(8).hex()


os.register_at_fork(after_in_child=_new_request_prefix)


def _next_request_id() -> str:
    """32 hex digits, as a UUID's: 16 random ones per process (drawn anew in a forked or spawned worker), then
    a counter. Unique without asking the kernel for randomness on every request, which cost as much as
    the rest of this middleware."""
    return f"{_request_prefix}{next(_request_counter):016x}"


class EdgeMiddleware:
    """- Gives each request an id (the caller's `X-Request-ID` if sane) for logs, errors and the response.
    - Refuses bodies over the limit with 413: at once when Content-Length says so, and otherwise
      (chunked uploads, or a Content-Length that lies) as soon as the received bytes pass it.
    - Counts and times every request under its route template.
    - Turns an unexpected exception into a 500 problem with the request id, logging the trace once;
      it sits inside Starlette's ServerErrorMiddleware, so a client never sees a trace.
    - Answers 405 for a method that a concrete path (`/v1/events/batch`) does not serve, before a
      templated route (`/v1/events/{event_id}`) could take the path for one of its own.
    """

    def __init__(self, app: ASGIApp, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        headers = dict(scope["headers"])
        incoming = headers.get(b"x-request-id", b"").decode("latin-1")
        request_id = incoming if _SAFE_REQUEST_ID.match(incoming) else _next_request_id()
        token = request_id_var.set(request_id)
        scrubbing = start_request_scrubbing()
        status = 500
        response_started = False

        async def edge_send(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                status = message["status"]
                response_started = True
                MutableHeaders(scope=message).append("X-Request-ID", request_id)
            await send(message)

        received = 0
        limit = self.max_body_bytes

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Raised inside the app's body read; FastAPI re-raises HTTPExceptions from there
                    # and the problem handler answers it.
                    raise HTTPException(413, _too_large(limit))
            return message

        try:
            declared = headers.get(b"content-length")
            served = path_table(scope["app"]).concrete.get(route_path(scope)) if "app" in scope else None
            if declared is not None and declared.isdigit() and int(declared) > limit:
                await problem(413, _too_large(limit))(scope, receive, edge_send)
            elif served is not None and scope["method"] not in served:
                await problem(405, "Method Not Allowed", headers={"Allow": allow_header(served)})(
                    scope, receive, edge_send
                )
            else:
                await self.app(scope, limited_receive, edge_send)
        except Exception:
            log.exception("unhandled error", extra={"path": scope.get("path"), "method": scope.get("method")})
            if response_started:
                raise
            await problem(500, "An unexpected error occurred; it has been logged with this request id.")(
                scope, receive, edge_send
            )
        finally:
            observe_request(scope, status, time.perf_counter() - started)
            end_request_scrubbing(scrubbing)
            request_id_var.reset(token)


def _too_large(limit: int) -> str:
    return f"the request body is larger than {limit} bytes"
