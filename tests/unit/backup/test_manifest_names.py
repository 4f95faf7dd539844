"""How a manifest writes a path: as it is, or as its raw bytes when they are not UTF-8."""

from __future__ import annotations

import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from enclave.backup.store import (FILE_FIELDS, MANIFEST_FORMAT, encode_rows, manifest_files, manifest_name,
                                  manifest_rows, name_of)
from enclave.errors import Conflict
from enclave.workspace_fs import printable_name


@given(st.binary(min_size=1, max_size=40).filter(lambda b: b"/" not in b and b"\0" not in b))
def test_manifest_name_round_trips_any_bytes(raw: bytes) -> None:
    name = os.fsdecode(raw)
    written = manifest_name(name)
    assert os.fsencode(name_of(written)) == raw
    if isinstance(written, dict):  # only names that are not UTF-8 are written as bytes
        with pytest.raises(UnicodeDecodeError):
            raw.decode("utf-8")
    else:
        assert written == raw.decode("utf-8")


def test_manifest_rows_leave_out_a_path_they_cannot_decode_and_files_refuse_it() -> None:
    good = ["workspaces/p/\udcff.txt", "a" * 64, 1, 0o600, 5, None]
    record = {"format": MANIFEST_FORMAT, "files": encode_rows([good]) + [
        [{"raw": "not base64!"}, "b" * 64, 1, 0o600, 5, None], [{"other": "x"}, "c" * 64, 1, 0o600, 5, None]]}
    assert record["files"][0][0] == {"raw": "d29ya3NwYWNlcy9wL/8udHh0"}
    assert manifest_rows(record) == [good]
    with pytest.raises(Conflict, match="cannot decode"):
        manifest_files(record)
    assert dict(zip(FILE_FIELDS, good)) == manifest_files({"format": MANIFEST_FORMAT, "files": encode_rows([good])})[0]
    assert printable_name(good[0]) == "workspaces/p/\\xff.txt"
