"""Provenance records and rerun comparison, without Docker."""

import hashlib
import json
import os

from enclave.jobs.provenance import (
    SYMLINK,
    Comparison,
    OutputMatch,
    compare_outputs,
    file_manifest,
    input_changes,
    view_record,
)


def sha256_file(path):
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _notebook(path, outputs, *, count=1, duration=0.1):
    cell = {"cell_type": "code", "source": "print(1)", "execution_count": count,
            "metadata": {"papermill": {"duration": duration}},
            "outputs": [{"output_type": "stream", "name": "stdout", "text": outputs}]}
    _write(path, json.dumps({"cells": [cell], "metadata": {"papermill": {"start_time": str(duration)}},
                             "nbformat": 4, "nbformat_minor": 5}))


def test_provenance_manifest_hashes_files_and_never_follows_symlinks(tmp_path):
    out = tmp_path / "out"
    _write(out / "a.csv", "x\n1\n")
    _write(out / "sub" / "b.txt", "hello")
    secret = _write(tmp_path / "secret.txt", "host secret")
    os.symlink(secret, out / "link.txt")
    os.symlink(tmp_path, out / "dirlink")
    manifest = file_manifest(out)
    assert manifest["a.csv"] == sha256_file(out / "a.csv")
    assert manifest["sub/b.txt"] == sha256_file(out / "sub" / "b.txt")
    assert manifest["link.txt"] == SYMLINK
    assert manifest["dirlink"] == SYMLINK
    assert not any("secret" in k for k in manifest)


def test_provenance_view_digest_changes_with_any_file(tmp_path):
    view = tmp_path / "view"
    _write(view / "t.parquet", "one")
    first = view_record("demo", view, 1, "abc")
    _write(view / "t.parquet", "two")
    assert view_record("demo", view, 1, "abc").sha256 != first.sha256


def test_provenance_compare_identical_table_notebook_and_differences(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    _write(a / "same.txt", "x")
    _write(b / "same.txt", "x")
    _write(a / "t.csv", "k,n\na,1.0\nb,2\n")
    _write(b / "t.csv", "k,n\nb,2.0\na,1\n")  # same table, other formatting and order
    _write(a / "bad.csv", "k,n\na,1\n")
    _write(b / "bad.csv", "k,n\na,2\n")
    _notebook(a / "run.ipynb", "42\n", count=1, duration=0.1)
    _notebook(b / "run.ipynb", "42\n", count=7, duration=9.9)
    _write(a / "gone.txt", "x")
    _write(b / "new.txt", "x")
    results = {f.path: f.match for f in compare_outputs(file_manifest(a), a, file_manifest(b), b)}
    assert results == {
        "same.txt": OutputMatch.IDENTICAL,
        "t.csv": OutputMatch.EQUAL_TABLE,
        "bad.csv": OutputMatch.DIFFERS,
        "run.ipynb": OutputMatch.EQUAL_NOTEBOOK,
        "gone.txt": OutputMatch.MISSING,
        "new.txt": OutputMatch.EXTRA,
    }


def test_provenance_notebook_with_other_output_differs(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    _notebook(a / "run.ipynb", "42\n")
    _notebook(b / "run.ipynb", "43\n")
    [result] = compare_outputs(file_manifest(a), a, file_manifest(b), b)
    assert result.match is OutputMatch.DIFFERS and "output differs" in result.detail


def test_provenance_notebook_stream_chunking_is_not_a_difference(tmp_path):
    # The kernel flushes printed text when its timer fires: one run holds a line as one stream
    # output, another as two. The text is the same, so the notebooks are.
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    _notebook(a / "run.ipynb", "mean length of stay: safe\n")
    cell = {"cell_type": "code", "source": "print(1)", "execution_count": 3, "metadata": {},
            "outputs": [{"output_type": "stream", "name": "stdout", "text": ["mean length ", "of stay:"]},
                        {"output_type": "stream", "name": "stdout", "text": " safe\n"}]}
    _write(b / "run.ipynb", json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    [same] = compare_outputs(file_manifest(a), a, file_manifest(b), b)
    assert same.match is OutputMatch.EQUAL_NOTEBOOK, same.detail
    # Text moved from stdout to stderr is a difference, however it is chunked.
    cell["outputs"][1]["name"] = "stderr"
    _write(c / "run.ipynb", json.dumps({"cells": [cell], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    [other] = compare_outputs(file_manifest(a), a, file_manifest(c), c)
    assert other.match is OutputMatch.DIFFERS and "cell 1 output differs" in other.detail


def test_provenance_input_changes_name_the_dataset_version():
    base = {"notebook_sha256": "n", "parameters": {"x": 1}, "image_digest": "sha256:aaa",
            "views": [{"dataset": "demo", "version": 1, "sha256": "v1"},
                      {"dataset": "labs", "version": 3, "sha256": "l3"}]}
    assert input_changes(base, dict(base)) == []
    changed = {**base, "parameters": {"x": 2},
               "views": [{"dataset": "demo", "version": 2, "sha256": "v2"},
                         {"dataset": "labs", "version": 3, "sha256": "other"}]}
    changes = input_changes(base, changed)
    assert "dataset demo changed from version 1 to 2" in changes
    assert any("parameters changed" in c for c in changes)
    assert any("view of dataset labs changed" in c for c in changes)


def test_provenance_input_changes_name_a_pinned_registry_image():
    one, two = "a" * 64, "b" * 64
    base = {"notebook_sha256": "n", "parameters": {}, "views": [],
            "image_digest": f"172.17.0.1:5000/enclave-notebook@sha256:{one}"}
    assert input_changes(base, dict(base)) == []
    changes = input_changes(base, {**base, "image_digest": f"172.17.0.1:5000/enclave-notebook@sha256:{two}"})
    assert changes == [f"the image changed from enclave-notebook@{one[:12]} to enclave-notebook@{two[:12]}"]
    # An image id before (one host's engine), a pinned reference after.
    changes = input_changes({**base, "image_digest": f"sha256:{one}"}, base)
    assert changes == [f"the image changed from {one[:12]} to enclave-notebook@{one[:12]}"]


def test_provenance_summary_says_what_differs_and_why():
    from enclave.jobs.provenance import FileComparison

    bad = Comparison([FileComparison("t.csv", OutputMatch.DIFFERS)], ["dataset demo changed from version 1 to 2"])
    assert not bad.matches
    assert "t.csv (differs)" in bad.summary() and "version 1 to 2" in bad.summary()
    good = Comparison([FileComparison("t.csv", OutputMatch.EQUAL_TABLE)], [])
    assert good.matches and good.summary().startswith("reproduced")
    assert not Comparison([], []).matches  # nothing to compare is not a reproduction


def test_provenance_evidence_sidecars_match_apart_from_their_time(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    record = {"output": {"file": "t.csv", "sha256": "x"}, "status": "pass", "created": "2026-01-01T00:00:00"}
    _write(a / "t.csv.evidence.json", json.dumps(record))
    _write(b / "t.csv.evidence.json", json.dumps({**record, "created": "2027-01-01T00:00:00"}))
    _write(a / "u.csv.evidence.json", json.dumps(record))
    _write(b / "u.csv.evidence.json", json.dumps({**record, "status": "fail"}))
    results = {f.path: f for f in compare_outputs(file_manifest(a), a, file_manifest(b), b)}
    assert results["t.csv.evidence.json"].match is OutputMatch.EQUAL_EVIDENCE
    assert results["u.csv.evidence.json"].match is OutputMatch.DIFFERS
    assert "status" in results["u.csv.evidence.json"].detail


def test_provenance_comparison_never_reads_through_a_link(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    host = _write(tmp_path / "host.csv", "secret_column\n42\n")
    _write(a / "t.csv", "k\n1\n")
    b.mkdir()
    os.symlink(host, b / "t.csv")
    # Even if a file becomes a link after its checksum was taken, it is not read.
    [result] = compare_outputs({"t.csv": "x"}, a, {"t.csv": "y"}, b)
    assert result.match is OutputMatch.DIFFERS and "secret_column" not in result.detail
