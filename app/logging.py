"""JSON logs carrying the id of the request they were written for, with secrets and personal data scrubbed.

No API key reaches a log line, and no `object_ref` (a plate, an ID number, a case number) reaches one
whole. Every line is scrubbed as it is formatted, whoever wrote it (our code, uvicorn's access and
trace logs, SQLAlchemy's error texts, a traceback), in four ways:

- the bootstrap admin key, known from the settings, is replaced wherever it appears;
- what a request presented as its key (valid, revoked or wrong) and the object_refs of the events it
  posted are remembered for that request (see `remember_secret`, `remember_object_ref`): its log lines
  carry the key as `[redacted]` and each object_ref masked (`mask_object_ref`);
- anything shaped like a key is cut whatever request wrote it: `Bearer <token>` and issued keys
  (`sv_…`, of which the public prefix `keys list` shows is kept);
- in a URL (the access log writes the query string), a parameter named like a secret (`key`,
  `api_key`, `token`, `password`, …) loses its value and `object_ref=` is masked; in uvicorn's trace
  log (`SUPERVISION_LOG_LEVEL=TRACE`, which prints every header) so does a header named like one.
"""

from __future__ import annotations

import logging
import re
import sys
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote, unquote

from pythonjsonlogger.json import JsonFormatter

request_id_var: ContextVar[str | None] = ContextVar("request_id", default=None)

REDACTED = "[redacted]"
MASK = "****"
# Too short to be a key (issued keys are 46 characters, the bootstrap key at least 16) or to name anyone:
# replacing such values wherever they appear would garble unrelated text (a "0" in every timestamp).
_MIN_SECRET = 8
_MIN_OBJECT_REF = 4


def mask_object_ref(value: str) -> str:
    """`湘J12345` → `湘J1****`: at most three leading characters are kept, and always four fewer than
    the value has, so a value of four characters or less is all mask; the mask is always four
    characters, so it does not tell the length either."""
    keep = max(0, min(3, len(value) - 4))
    return value[:keep] + MASK


@dataclass
class _RequestSensitive:
    """What one request brought that its log lines must not show; shared by the request's tasks and threads.
    The forms each value may take in a line (URL-encoded, escaped) and what replaces them are worked out
    when a line is first written, not for every event (most requests write no line)."""

    secrets: set[str] = field(default_factory=set)
    object_refs: set[str] = field(default_factory=set)
    _forms: tuple[list[tuple[str, str]], list[tuple[str, str]]] | None = None

    def forms(self) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
        """(secret forms, object_ref forms), each with its replacement."""
        if self._forms is None:
            self._forms = (
                [pair for secret in sorted(self.secrets) for pair in _secret_forms(secret)],
                [pair for ref in sorted(self.object_refs) for pair in _object_ref_forms(ref)],
            )
        return self._forms


_request_sensitive: ContextVar[_RequestSensitive | None] = ContextVar("request_sensitive", default=None)
_global_secrets: set[str] = set()
_global_secret_forms: list[tuple[str, str]] = []


def _secret_forms(secret: str) -> list[tuple[str, str]]:
    encoded = quote(secret, safe="")
    return [(secret, REDACTED)] + ([(encoded, REDACTED)] if encoded != secret else [])


def _object_ref_forms(ref: str) -> list[tuple[str, str]]:
    masked = mask_object_ref(ref)
    forms = {ref, quote(ref, safe=""), quote(ref), ref.encode("unicode_escape").decode("ascii")}
    return [(form, masked) for form in sorted(forms, key=len, reverse=True)]


def start_request_scrubbing() -> Any:
    """Called by the edge middleware as a request begins; returns the token to end it with."""
    return _request_sensitive.set(_RequestSensitive())


def end_request_scrubbing(token: Any) -> None:
    _request_sensitive.reset(token)


def remember_secret(value: str) -> None:
    """A key the current request presented: its log lines show `[redacted]` instead."""
    held = _request_sensitive.get()
    if held is not None and len(value) >= _MIN_SECRET and value not in held.secrets:
        held.secrets.add(value)
        held._forms = None


def remember_object_ref(value: str | None) -> None:
    """An object_ref the current request carries: its log lines show it masked."""
    held = _request_sensitive.get()
    if held is not None and value is not None and len(value) >= _MIN_OBJECT_REF and value not in held.object_refs:
        held.object_refs.add(value)
        held._forms = None


def always_redact(value: str | None) -> None:
    """A secret of the whole process (the bootstrap admin key): never shown in any log line."""
    if value is not None and len(value) >= _MIN_SECRET and value not in _global_secrets:
        _global_secrets.add(value)
        _global_secret_forms.extend(_secret_forms(value))


_BEARER = re.compile(r"(?i)\b(bearer[\s:=]+)[^\s'\",;)\]}]+")
_ISSUED_KEY = re.compile(r"\b(sv_[A-Za-z0-9_-]{6})[A-Za-z0-9_-]{10,}")
_SECRET_PARAM = re.compile(
    r"(?i)((?:^|[?&;'\"\s])(?:[a-z0-9_.-]*(?:key|token|secret|password|passwd|auth|credential)[a-z0-9_.-]*)=)"
    r"[^&#\s'\"]*"
)
_OBJECT_REF_PARAM = re.compile(r"(?i)((?:^|[?&;'\"\s])object_?ref=)([^&#\s'\"]*)")
# uvicorn's trace log prints each request's headers as (b'name', b'value') pairs.
_SECRET_HEADER = re.compile(
    r"(?i)(\(b?['\"][a-z0-9-]*(?:auth|key|token|cookie|secret)[a-z0-9-]*['\"],\s*b?)(['\"]).*?\2\)"
)


# Words without which a pattern below cannot match: an ASCII line that holds none of them (most lines) is
# not searched with that pattern. A line with other characters is always searched (case-insensitive
# matching folds some of them, the Kelvin sign for a k, onto ASCII letters).
_HEADER_WORDS = ("auth", "key", "token", "cookie", "secret")
_PARAM_WORDS = ("key", "token", "secret", "password", "passwd", "auth", "credential")


def scrub(text: str) -> str:
    """The text with every secret cut out and every known object_ref masked."""
    held = _request_sensitive.get()
    secret_forms, object_ref_forms = held.forms() if held is not None else ((), ())
    for forms in (_global_secret_forms, secret_forms, object_ref_forms):
        for form, replacement in forms:
            if form in text:
                text = text.replace(form, replacement)
    if text.isascii():
        low = text.lower()
        header = "(" in text and any(word in low for word in _HEADER_WORDS)
        bearer = "bearer" in low
        issued = "sv_" in text
        param = "=" in text and any(word in low for word in _PARAM_WORDS)
        ref = "ref=" in low
    else:
        header = bearer = issued = param = ref = True
    if header:
        text = _SECRET_HEADER.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}{m.group(2)})", text)
    if bearer:
        text = _BEARER.sub(lambda m: m.group(1) + REDACTED, text)
    if issued:
        text = _ISSUED_KEY.sub(lambda m: m.group(1) + "…" + REDACTED, text)
    if param:
        text = _SECRET_PARAM.sub(lambda m: m.group(1) + REDACTED, text)
    if ref:
        text = _OBJECT_REF_PARAM.sub(lambda m: m.group(1) + quote(mask_object_ref(unquote(m.group(2))), safe="*"), text)
    return text


def _scrub_value(value: Any) -> Any:
    if isinstance(value, str):
        return scrub(value)
    if isinstance(value, dict):
        return {key: _scrub_value(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub_value(item) for item in value]
    return value


class ScrubbingJsonFormatter(JsonFormatter):
    """JSON lines whose every field (message, extras, traceback) has passed `scrub`."""

    # Written by the logging machinery itself, never from a request's content.
    _OWN_FIELDS = frozenset({"time", "level", "logger"})

    def process_log_record(self, log_data: dict[str, Any]) -> dict[str, Any]:
        return {
            key: value if key in self._OWN_FIELDS else _scrub_value(value)
            for key, value in super().process_log_record(log_data).items()
        }


class _RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = request_id_var.get()
        # uvicorn attaches a copy of its message with terminal colour codes; JSON logs want neither.
        record.__dict__.pop("color_message", None)
        return True


TRACE = 5  # uvicorn's level below DEBUG: it then logs every ASGI message, headers included


def configure_logging(level: str = "INFO", *, access_log: bool = True) -> None:
    logging.addLevelName(TRACE, "TRACE")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        ScrubbingJsonFormatter(
            "{asctime}{levelname}{name}{message}{request_id}",
            style="{",
            rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
        )
    )
    handler.addFilter(_RequestIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Alembic announces its context at INFO on every readiness probe; that is noise in a server log.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers[:] = []
        logger.propagate = True
    # uvicorn writes access lines whenever its logger has a handler, so an unwanted access log is
    # cut off here (in every worker) rather than by uvicorn's own flag alone.
    logging.getLogger("uvicorn.access").propagate = access_log
