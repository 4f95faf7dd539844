"""The backup's fast canonical JSON is byte for byte the reference one, so a manifest signed
with it verifies with the reference form (as custodians' tools and ``verify`` compute it)."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from enclave.egress.signing import canonical, canonical_plain, load_or_create_key, signed_json, verify_envelope

# Every character but lone surrogates (no UTF-8 form: a manifest writes such names as bytes),
# with control characters, quotes, backslashes, DEL, U+2028 and astral ones often.
TEXT = st.text(st.characters(exclude_categories=("Cs",)) | st.sampled_from(
    ['"', "\\", "\x00", "\x1f", "\x7f", "\u2028", "\u00e9", "\U0001f600", "\n", "\t", "/"]), max_size=12)
PLAIN = st.recursive(
    st.none() | st.booleans() | st.integers(min_value=-(2**63), max_value=2**64 - 1) | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4), max_leaves=30)


@settings(max_examples=400)
@given(st.dictionaries(TEXT, PLAIN, max_size=6))
def test_canonical_plain_is_the_reference_form(record: dict) -> None:
    assert canonical_plain(record) == canonical(record)


def test_canonical_plain_takes_what_orjson_cannot_through_the_reference_form(tmp_path) -> None:
    record = {"big": 2**70, "neg": -(2**65), "rows": [["a", 1]]}
    assert canonical_plain(record) == canonical(record)
    envelope = json.loads(signed_json(record, load_or_create_key(tmp_path)))
    assert verify_envelope(envelope, load_or_create_key(tmp_path).public_key()) == record
