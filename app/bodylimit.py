"""The 1 MiB request-body limit, enforced on the bytes actually received."""

from __future__ import annotations

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.errors import problem

MAX_BODY_BYTES = 1024 * 1024


class BodyLimitMiddleware:
    """Refuses bodies over the limit with 413: at once when Content-Length says so, and otherwise
    (chunked uploads, or a Content-Length that lies) as soon as the received bytes pass it."""

    def __init__(self, app: ASGIApp, max_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._too_large()(scope, receive, send)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    # Raised inside the app's body read; FastAPI re-raises HTTPExceptions from there and
                    # the problem handler answers it.
                    raise HTTPException(413, self._detail())
            return message

        await self.app(scope, counting_receive, send)

    def _detail(self) -> str:
        return f"the request body is larger than {self.max_bytes} bytes"

    def _too_large(self) -> ASGIApp:
        return problem(413, self._detail())
