"""Log scrubbing without a server: the masking rule, and what a formatted line keeps of secrets and object_refs."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
from sqlalchemy import create_engine, text
from sqlalchemy.exc import DBAPIError

from app.logging import (
    ScrubbingJsonFormatter,
    always_redact,
    end_request_scrubbing,
    mask_object_ref,
    remember_object_ref,
    remember_secret,
    start_request_scrubbing,
)


@pytest.mark.parametrize(
    ("value", "masked"),
    [
        ("湘J12345", "湘J1****"),
        ("430102199001011234", "430****"),
        ("常公交（直）认字〔2026〕第0042号", "常公交****"),
        ("AB123", "A****"),
        ("ABC123", "AB****"),
        ("ABCD", "****"),
        ("A", "****"),
    ],
)
def test_an_object_ref_keeps_at_most_three_leading_characters_and_never_more_than_length_minus_four(
    value: str, masked: str
) -> None:
    assert mask_object_ref(value) == masked


@pytest.fixture
def request_scope() -> Iterator[None]:
    token = start_request_scrubbing()
    yield
    end_request_scrubbing(token)


def formatted(record_message: str, *args: object, exc: BaseException | None = None) -> str:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(ScrubbingJsonFormatter("{levelname}{message}", style="{"))
    logger = logging.getLogger("tests.logging.scrub")
    logger.handlers[:] = [handler]
    logger.propagate = False
    try:
        logger.error(record_message, *args, exc_info=exc)
    finally:
        logger.handlers[:] = []
    return stream.getvalue()


@pytest.mark.usefixtures("request_scope")
def test_a_database_error_in_a_request_shows_neither_its_key_nor_its_object_ref() -> None:
    key, ref = "sv_SomeWrongKeyThatIsLongEnough0123456789abcd", "湘A98765"
    remember_secret(key)
    remember_object_ref(ref)
    engine = create_engine("sqlite://")
    with engine.connect() as conn:
        conn.execute(text("CREATE TABLE t (ref TEXT NOT NULL CHECK (length(ref) < 3))"))
        with pytest.raises(DBAPIError) as caught:
            conn.execute(text("INSERT INTO t VALUES (:ref)"), {"ref": ref})
    line = formatted("unhandled error for key %s with %s", key, ref, exc=caught.value)
    assert ref in str(caught.value), "the error text itself carries the value (the case this guards against)"
    assert key not in line
    assert ref not in line
    assert json.dumps(ref) not in line  # nor its JSON escape
    assert "湘A9****" in json.loads(line)["message"]
    assert "湘A9****" in json.loads(line)["exc_info"]


def test_the_bootstrap_key_and_anything_shaped_like_a_key_are_cut_outside_requests_too() -> None:
    bootstrap = "bootstrap-admin-key-for-the-log-test"
    always_redact(bootstrap)
    line = json.loads(
        formatted(
            "key %s; Authorization: Bearer some-other-token; GET /v1/events?api_key=abc123&token=t0k3n&limit=5; "
            "headers [(b'authorization', b'Basic dXNlcjpwYXNz'), (b'x-api-key', b'plain-key-value')]",
            bootstrap,
        )
    )["message"]
    assert bootstrap not in line
    assert "some-other-token" not in line
    assert "abc123" not in line
    assert "t0k3n" not in line
    assert "limit=5" in line
    assert "dXNlcjpwYXNz" not in line
    assert "plain-key-value" not in line


def test_issued_keys_keep_only_the_prefix_keys_list_shows() -> None:
    issued = "sv_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789_-abcde"
    message = json.loads(formatted("presented %s", issued))["message"]
    assert issued not in message
    assert message.startswith("presented sv_AbCdEf…")


@pytest.mark.usefixtures("request_scope")
def test_an_object_ref_in_a_query_string_is_masked_even_when_no_event_named_it() -> None:
    message = json.loads(formatted('"GET /v1/events?object_ref=%E6%B9%98J54321&limit=5 HTTP/1.1" 200'))["message"]
    assert "%E6%B9%98J54321" not in message
    assert "object_ref=%E6%B9%98J5****&limit=5" in message
