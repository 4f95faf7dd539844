"""The output checker against the corpus of disguised and safe outputs (tests/corpus).

Every disguised output must get ``fail`` or ``review`` with no evidence passed in (forged
sidecars lie beside some of them); every safe output must ``pass``. Safe tables made with
``enclave.safe`` are checked with the evidence the library wrote, standing in for evidence
the enclave has reproduced. The counts per class are printed (``pytest -s``).
"""

from __future__ import annotations

import importlib.util
import sys
from collections import Counter
from pathlib import Path

import pytest

from enclave.disclosure import DisclosurePolicy, Verdict, check_file
from enclave.disclosure.evidence import read_evidence

REPO = Path(__file__).resolve().parents[3]
CLASSES = {  # the classes of attack the corpus must span, by the words of its manifest
    "forged evidence", "notebook metadata", "notebook attachment", "notebook source literal", "notebook hidden output",
    "notebook vendor mime", "notebook stdout csv", "json records", "json columns", "json lists of lists", "bare numbers",
    "fewer rows than the floor", "markdown table", "html in markdown", "csv saved as txt", "svg saved as md",
    "fixed-width text", "base64", "hex", "high entropy", "dates", "identifiers", "quasi identifiers",
    "counts in strings", "counts in first column", "image trailing bytes", "image text chunk", "image comment", "image exif",
    "image pixel payload",
}


def _load_builder():
    spec = importlib.util.spec_from_file_location("make_corpus", REPO / "tests" / "corpus" / "make_corpus.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("make_corpus", module)  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    out = tmp_path_factory.mktemp("corpus")
    return out, _load_builder().build(out)


def test_corpus_spans_every_class(corpus):
    _, items = corpus
    bad = [i for i in items if i.expect == "bad"]
    safe = [i for i in items if i.expect == "safe"]
    assert len(bad) >= 45 and len(safe) >= 12
    assert CLASSES <= {i.kind for i in bad}


def test_corpus_disguised_outputs_never_pass_and_safe_ones_pass(corpus):
    out, items = corpus
    policy = DisclosurePolicy()
    tally: Counter[tuple[str, str, str]] = Counter()
    wrong = []
    for item in items:
        evidence = read_evidence(out / item.evidence) if item.evidence else None
        report = check_file(out / item.file, policy, evidence=evidence)
        tally[(item.expect, item.kind, str(report.status))] += 1
        if item.expect == "bad" and report.status is Verdict.PASS:
            wrong.append(f"{item.file} ({item.kind}) passed")
        if item.expect == "bad" and not all(f.locations or f.message for f in report.findings):
            wrong.append(f"{item.file}: a finding without a location")
        if item.expect == "safe" and report.status is not Verdict.PASS:
            wrong.append(f"{item.file} ({item.kind}) got {report.status}: {[f.message[:120] for f in report.findings]}")
    print("\nexpect  class                          fail review pass")
    for expect in ("bad", "safe"):
        for kind in sorted({k for e, k, _ in tally if e == expect}):
            counts = [tally[(expect, kind, s)] for s in ("fail", "review", "pass")]
            print(f"{expect:7} {kind:30} {counts[0]:4} {counts[1]:6} {counts[2]:4}")
    totals = Counter()
    for (expect, _, status), n in tally.items():
        totals[(expect, status)] += n
    print("totals:", {f"{e}/{s}": n for (e, s), n in sorted(totals.items())})
    assert not wrong, "\n".join(wrong)


def test_corpus_findings_show_the_payload(corpus):
    """A reviewer sees what was smuggled: findings quote it (here, a date of birth or the CSV header)."""
    out, items = corpus
    policy = DisclosurePolicy()
    for name in ("png_after_iend.png", "jpeg_comment.jpg", "png_text_chunk.png", "nb_cell_metadata.ipynb", "nb_extra_top_key.ipynb"):
        report = check_file(out / name, policy)
        shown = " ".join([f.message for f in report.findings] + [loc for f in report.findings for loc in f.locations])
        assert "a,b,c,d" in shown or "2010-04-23" in shown or "P0000001" in shown, (name, shown[:300])


def test_corpus_is_deterministic(corpus, tmp_path):
    out, items = corpus
    again = _load_builder().build(tmp_path)
    assert [i.file for i in again] == [i.file for i in items]
    for item in items:
        assert (tmp_path / item.file).read_bytes() == (out / item.file).read_bytes(), item.file
