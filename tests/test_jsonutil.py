"""The fast canonical encoder must give exactly the RFC 8785 bytes, or hashes would change meaning."""

from __future__ import annotations

from typing import Any

import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from app.jsonutil import canonical_hash, canonical_json

text = st.text(st.characters(blacklist_categories=["Cs"]), max_size=12)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**53) + 1, max_value=2**53 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    st.floats(allow_nan=False, allow_infinity=False).map(float.__floor__).map(float),
    text,
)
json_values = st.recursive(
    scalars,
    lambda children: st.one_of(st.lists(children, max_size=4), st.dictionaries(text, children, max_size=4)),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(json_values)
def test_canonical_json_is_byte_for_byte_rfc8785(value: Any) -> None:
    assert canonical_json(value) == rfc8785.dumps(value)


def test_equal_content_in_another_key_order_or_number_spelling_hashes_alike() -> None:
    one = {"b": 1, "a": {"y": "湘J", "x": [1.0, 2]}}
    other = {"a": {"x": [1, 2.0], "y": "湘J"}, "b": 1.0}
    assert canonical_hash(one) == canonical_hash(other)
    assert canonical_hash(one) != canonical_hash({**one, "b": 2})


def test_keys_outside_the_basic_plane_sort_by_utf16_code_units() -> None:
    value = {"\U0001f600": 1, "\uff01": 2}  # UTF-16 puts the astral key (a surrogate pair) first
    assert canonical_json(value) == rfc8785.dumps(value)
    assert canonical_json(value).index("\U0001f600".encode()) < canonical_json(value).index("\uff01".encode())
