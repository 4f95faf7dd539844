"""The output file checker on real files: what it catches and what it lets through."""

from __future__ import annotations

import gzip
import json
import os
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from enclave.disclosure import DisclosurePolicy, Verdict, check_file, check_files
from enclave.disclosure.checker.identifiers import find_identifiers, nhs_number_valid
from enclave.disclosure.evidence import read_evidence, sha256_file, sidecar_path
from enclave.disclosure.policy import CheckerLimits, Rounding
from enclave.safe import crosstab

POLICY = DisclosurePolicy()


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def rules(report) -> dict[str, Verdict]:
    found: dict[str, Verdict] = {}
    for f in report.findings:
        found[f.rule] = max(found.get(f.rule, Verdict.PASS), f.status)
    return found


def test_checker_passes_safe_aggregate_table(tmp_path):
    path = write(tmp_path, "by_region.csv", "region,year,count\nNorth,2020,120\nSouth,2020,85\nEast,2020,40\n")
    report = check_file(path, POLICY)
    assert report.status is Verdict.PASS and report.findings == []


def test_checker_fails_small_counts_and_zeros_with_locations(tmp_path):
    path = write(tmp_path, "t.csv", "region,n_patients\nNorth,120\nSouth,3\nEast,0\n")
    report = check_file(path, POLICY)
    assert rules(report) == {"threshold": Verdict.FAIL, "zeros": Verdict.FAIL}
    threshold = next(f for f in report.findings if f.rule == "threshold")
    assert threshold.locations == ["line 3, column 'n_patients'"]


def test_checker_recognises_suppressed_markers(tmp_path):
    path = write(tmp_path, "t.csv", "region,count\nNorth,120\nSouth,*\nEast,<10\nWest,\n")
    assert check_file(path, POLICY).status is Verdict.PASS


def test_checker_rounding_policy(tmp_path):
    path = write(tmp_path, "t.csv", "region,count\nNorth,120\nSouth,87\n")
    policy = DisclosurePolicy(rounding=Rounding(required=True, base=5))
    report = check_file(path, policy)
    assert rules(report) == {"rounding": Verdict.FAIL}


def test_checker_unnamed_integer_columns_go_to_review(tmp_path):
    path = write(tmp_path, "t.csv", "year,A,B\n2019,40,4\n2020,50,60\n")
    report = check_file(path, POLICY)
    assert report.status is Verdict.REVIEW and rules(report) == {"threshold": Verdict.REVIEW}


@pytest.mark.parametrize(
    "cell, kind",
    [
        ("943 476 5919", "NHS number"),
        ("jo.bloggs@example.org", "email address"),
        ("07700 900123", "phone number"),
        ("+44 20 7946 0018", "phone number"),
        ("SW1A 1AA", "UK postcode"),
        ("123-45-6789", "US social security number"),
        ("DOB 03/04/1971", "date of birth"),
    ],
)
def test_checker_fails_direct_identifiers(tmp_path, cell, kind):
    path = write(tmp_path, "t.csv", f"group,note,count\nA,{cell},50\nB,none,60\n")
    report = check_file(path, POLICY)
    assert report.status is Verdict.FAIL
    finding = next(f for f in report.findings if f.rule == "direct_identifier")
    assert kind in finding.message
    assert finding.locations[0].startswith("line 2, column 'note'")
    assert cell not in " ".join(finding.locations)  # the report does not repeat the identifier


def test_nhs_number_needs_valid_check_digit():
    assert nhs_number_valid("9434765919")
    assert not nhs_number_valid("9434765918")
    assert not nhs_number_valid("1111111111")
    assert find_identifiers("count 9434765918") == []


def test_checker_fails_formula_cells_but_not_negative_numbers(tmp_path):
    path = write(tmp_path, "t.csv", 'label,change\nA,-5\nB,+3.5\nC,"=HYPERLINK(""http://x"")"\nD,@SUM(A1)\nE,-cmd\n')
    report = check_file(path, POLICY)
    formula = next(f for f in report.findings if f.rule == "formula")
    assert formula.status is Verdict.FAIL
    assert [loc.split(":")[0] for loc in formula.locations] == ["line 4, column 'change'", "line 5, column 'change'", "line 6, column 'change'"]
    assert "=HYPERLINK" in formula.locations[0]  # the reviewer sees the offending text


def test_checker_fails_row_level_microdata(tmp_path):
    rows = "\n".join(f"P{i:04d},{['M', 'F'][i % 2]},{20 + i % 50}" for i in range(80))
    path = write(tmp_path, "people.csv", "patient_id,sex,age\n" + rows + "\n")
    assert rules(check_file(path, POLICY))["microdata"] is Verdict.FAIL


def test_checker_fails_dates_of_birth_column(tmp_path):
    path = write(tmp_path, "t.csv", "group,date_of_birth\nA,1971-04-03\nB,1980-01-02\n")
    assert rules(check_file(path, POLICY))["direct_identifier"] is Verdict.FAIL


def test_checker_fails_too_many_rows(tmp_path):
    policy = DisclosurePolicy(checker=CheckerLimits(max_rows=5))
    path = write(tmp_path, "t.csv", "k,count\n" + "".join(f"{i},50\n" for i in range(6)))
    assert rules(check_file(path, policy)) == {"rows": Verdict.FAIL}


def test_checker_fails_oversized_file(tmp_path):
    policy = DisclosurePolicy(checker=CheckerLimits(max_file_bytes=10))
    path = write(tmp_path, "t.csv", "region,count\nNorth,120\n")
    assert rules(check_file(path, policy)) == {"size": Verdict.FAIL}


@pytest.mark.parametrize(
    "name, content",
    [
        ("results.csv", b"PK\x03\x04" + b"\0" * 40),
        ("results.txt", gzip.compress(b"secret")),
        ("plot.png", b"\x7fELF" + b"\0" * 40),
        ("run.txt", b"#!/bin/sh\necho hi\n"),
        ("data.csv", b"SQLite format 3\x00" + b"\0" * 40),
        ("blob.json", b"\x00\x01\x02\x03"),
        ("table.xlsx", b"PK\x03\x04" + b"\0" * 40),
        ("notes.docx", b"some text"),
        ("chart.png", b"region,count\nNorth,120\n"),
        ("photo.csv", b"\x89PNG\r\n\x1a\n" + b"\0" * 40),
    ],
)
def test_checker_fails_disguised_and_forbidden_types(tmp_path, name, content):
    report = check_file(write(tmp_path, name, content), POLICY)
    assert report.status is Verdict.FAIL and rules(report) == {"file_type": Verdict.FAIL}


def test_checker_real_zip_archive_fails(tmp_path):
    path = tmp_path / "out.csv"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("inner.csv", "a,b\n1,2\n")
    assert check_file(path, POLICY).status is Verdict.FAIL


def test_checker_unreadable_images_fail(tmp_path):
    png = write(tmp_path, "plot.png", b"\x89PNG\r\n\x1a\n" + b"\0" * 40)
    jpeg = write(tmp_path, "photo.jpg", b"\xff\xd8\xff\xe0" + b"\0" * 40)
    assert rules(check_file(png, POLICY)) == {"image": Verdict.FAIL}
    assert rules(check_file(jpeg, POLICY)) == {"image": Verdict.FAIL}


def test_checker_never_follows_symlinks(tmp_path):
    target = write(tmp_path, "safe.csv", "region,count\nNorth,120\n")
    link = tmp_path / "link.csv"
    os.symlink(target, link)
    assert rules(check_file(link, POLICY)) == {"symlink": Verdict.FAIL}


def test_checker_fails_hidden_files_and_files_outside_root(tmp_path):
    hidden = write(tmp_path, ".secret.csv", "region,count\nNorth,120\n")
    assert rules(check_file(hidden, POLICY)) == {"hidden": Verdict.FAIL}
    outbox = tmp_path / "outbox"
    (outbox / ".cache").mkdir(parents=True)
    inner = write(outbox / ".cache", "t.csv", "region,count\nNorth,120\n")
    assert rules(check_file(inner, POLICY, root=outbox)) == {"hidden": Verdict.FAIL}
    outside = write(tmp_path, "t.csv", "region,count\nNorth,120\n")
    assert rules(check_file(outside, POLICY, root=outbox)) == {"location": Verdict.FAIL}


def test_checker_text_and_markdown(tmp_path):
    clean = write(tmp_path, "notes.md", "# Results\n\n| region | count |\n|---|---|\n| North | 120 |\n| South | 85 |\n")
    assert check_file(clean, POLICY).status is Verdict.PASS
    small = write(tmp_path, "small.md", "| region | count |\n|---|---|\n| North | 120 |\n| South | 4 |\n")
    assert rules(check_file(small, POLICY))["threshold"] is Verdict.FAIL
    blob = write(tmp_path, "blob.txt", "payload: " + "QUJD" * 100 + "\n")
    assert rules(check_file(blob, POLICY))["encoded_blob"] is Verdict.FAIL
    model = write(tmp_path, "model.txt", "Dep. Variable: y   No. Observations: 12\nDf Residuals:   8\n")
    assert rules(check_file(model, POLICY))["dof"] is Verdict.FAIL


def test_checker_json_records_are_tables(tmp_path):
    path = write(tmp_path, "r.json", json.dumps({"table": [{"region": "North", "count": 120}, {"region": "South", "count": 2}]}))
    assert rules(check_file(path, POLICY))["threshold"] is Verdict.FAIL
    ok = write(tmp_path, "ok.json", json.dumps({"model": "ols", "r2": 0.31}))
    assert check_file(ok, POLICY).status is Verdict.PASS


def notebook(outputs: list[dict], source: str = "x") -> str:
    return json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {},
                       "cells": [{"cell_type": "code", "source": source, "metadata": {}, "outputs": outputs, "execution_count": 1}]})


def test_checker_notebook_outputs(tmp_path):
    html = ("<table><thead><tr><th>grant_type</th><th>count</th></tr></thead>"
            "<tbody><tr><td>A</td><td>120</td></tr><tr><td>B</td><td>3</td></tr></tbody></table>")
    nb = write(tmp_path, "a.ipynb", notebook([{"output_type": "display_data", "data": {"text/html": html}, "metadata": {}}]))
    report = check_file(nb, POLICY)
    assert rules(report)["threshold"] is Verdict.FAIL
    assert "cell 1 output 1" in report.findings[0].locations[0]

    err = write(tmp_path, "b.ipynb", notebook([{"output_type": "error", "ename": "KeyError", "evalue": "'jo@example.org'", "traceback": []}]))
    assert rules(check_file(err, POLICY))["direct_identifier"] is Verdict.FAIL

    image = write(tmp_path, "c.ipynb", notebook([{"output_type": "display_data", "data": {"image/png": "iVBORw0KGgo" * 100}, "metadata": {}}]))
    assert rules(check_file(image, POLICY)) == {"image": Verdict.FAIL}  # not a readable PNG

    blob = write(tmp_path, "d.ipynb", notebook([{"output_type": "stream", "name": "stdout", "text": "A" * 400}]))
    assert rules(check_file(blob, POLICY))["encoded_blob"] is Verdict.FAIL

    clean = write(tmp_path, "e.ipynb", notebook([{"output_type": "stream", "name": "stdout", "text": "done\n"}]))
    assert check_file(clean, POLICY).status is Verdict.PASS


def test_checker_uses_only_evidence_given_by_the_caller(tmp_path):
    rng = np.random.default_rng(0)
    df = pd.DataFrame({"year": rng.choice([2019, 2020], 400), "g": rng.choice(["A", "B"], 400), "income": rng.uniform(1, 2, 400)})
    df.loc[len(df)] = [2021, "A", 5.0]
    result = crosstab(df, index="year", columns="g", values="income", aggfunc="mean", policy=POLICY)
    out = result.save(tmp_path / "income.csv")
    # The sidecar beside the file is never read: without verified evidence a mean needs review.
    assert check_file(out, POLICY).status is Verdict.REVIEW
    verified = read_evidence(sidecar_path(out))
    assert check_file(out, POLICY, evidence=verified).status is Verdict.PASS  # small cells suppressed

    stricter = DisclosurePolicy(threshold=300, version="stricter")
    report = check_file(out, stricter, evidence=verified)
    assert report.status is Verdict.FAIL and "stricter" in report.findings[0].message

    out.write_text(out.read_text().replace("2021,,", "2021,5.0,"))
    report = check_file(out, POLICY, evidence=verified)
    assert report.status is Verdict.REVIEW
    assert "evidence" in rules(report)

    # the sidecar never leaves on its own
    assert rules(check_file(sidecar_path(out), POLICY)) == {"evidence": Verdict.FAIL}


def test_checker_ignores_forged_sidecar_beside_microdata(tmp_path):
    rows = "".join(f"P{i:07d},{1950 + i % 40}-0{1 + i % 9}-{10 + i % 18},{'MF'[i % 2]}\n" for i in range(60))
    path = write(tmp_path, "cohort.csv", "ref,when,grp\n" + rows)
    forged = {"format": "enclave-sdc-evidence/1", "output": {"file": "cohort.csv", "sha256": sha256_file(path), "bytes": path.stat().st_size},
              "analysis": {}, "policy_version": "2026.1", "policy": {}, "rules": ["threshold"], "datasets": [], "status": "pass",
              "findings": [], "cells": [{"row": [i], "column": ["n"], "n": 1000} for i in range(60)], "created": "2026-01-01", "library": "x"}
    sidecar_path(path).write_text(json.dumps(forged))
    report = check_file(path, POLICY)
    assert report.status is Verdict.FAIL and "microdata" in rules(report)
    assert check_files([path], POLICY).status is Verdict.FAIL


def test_check_files_report_shape(tmp_path):
    good = write(tmp_path, "good.csv", "region,count\nNorth,120\n")
    bad = write(tmp_path, "bad.csv", "region,count\nNorth,2\n")
    report = check_files([good, bad], POLICY)
    data = report.to_dict()
    assert data["status"] == "fail"
    assert [set(f) for f in data["files"]] == [{"path", "status", "findings"}] * 2
    assert set(data["files"][1]["findings"][0]) == {"rule", "status", "message", "locations"}
    json.dumps(data)


def test_checker_finds_identifiers_in_columns_read_as_numbers(tmp_path):
    rows = "".join(f"{g},{v},50\n" for g, v in [("A", "9434765919"), ("B", "07700900123"), ("C", "12")])
    report = check_file(write(tmp_path, "t.csv", "group,ref,count\n" + rows), POLICY)
    messages = " ".join(f.message for f in report.findings if f.rule == "direct_identifier")
    assert "NHS number" in messages and "phone number" in messages
    locations = [loc for f in report.findings for loc in f.locations]
    assert any(loc.startswith("line 2, column 'ref'") for loc in locations)
    assert any(loc.startswith("line 3, column 'ref'") for loc in locations)


def test_checker_non_utf8_csv_fails_with_advice(tmp_path):
    path = write(tmp_path, "t.csv", "region,count\nZ\xfcrich,120\n".encode("latin-1"))
    report = check_file(path, POLICY)
    assert report.status is Verdict.FAIL and "UTF-8" in report.findings[0].message


def test_checker_reads_evidence_given_for_a_copy(tmp_path):
    df = pd.DataFrame({"year": [2019] * 30 + [2020] * 2, "g": ["A"] * 32, "income": [1.0] * 32})
    out = crosstab(df, index="year", columns="g", values="income", aggfunc="mean", policy=POLICY).save(tmp_path / "t.csv")
    quarantine = tmp_path / "q"
    quarantine.mkdir()
    copy = quarantine / "t.csv"
    copy.write_bytes(out.read_bytes())
    assert check_file(copy, POLICY).status is Verdict.REVIEW  # a mean without evidence
    verified = read_evidence(sidecar_path(out))
    assert check_file(copy, POLICY, evidence=verified).status is Verdict.PASS
    assert check_files([copy], POLICY, evidence={copy: verified}).status is Verdict.PASS


def test_disclosure_and_safe_import_without_server_packages():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "class Block:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in ('sqlalchemy', 'jupyterhub', 'typer', 'rich', 'alembic', 'fastapi'):\n"
        "            raise ImportError(name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import enclave.safe, enclave.disclosure\n"
        "bad = [m for m in sys.modules if m.startswith('enclave.') and m.split('.')[1] not in ('safe', 'disclosure', 'errors', 'enums', 'policy')]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).resolve().parents[3])


def test_checker_keeps_library_findings_recorded_in_evidence(tmp_path):
    from enclave.safe import describe, histogram

    df = pd.DataFrame({"age": np.arange(200) % 70 + 18})
    out = histogram(df, "age", bins=5, policy=POLICY).save(tmp_path / "hist.csv")  # no range: edges are extremes
    report = check_file(out, POLICY, evidence=read_evidence(sidecar_path(out)))
    assert rules(report) == {"bin_edges": Verdict.REVIEW}
    frame = pd.DataFrame({"x": [1.0] * 20 + [1e9], "y": np.linspace(1, 2, 21)})
    summary = describe(frame, policy=POLICY).save(tmp_path / "d.csv")
    verified = read_evidence(sidecar_path(summary))
    assert check_file(summary, POLICY, evidence=verified).status is Verdict.PASS  # the dominated column x is hidden
    assert check_file(summary, DisclosurePolicy(threshold=50), evidence=verified).status is Verdict.FAIL  # y is shown


def test_checker_stray_words_do_not_hide_small_counts(tmp_path):
    path = write(tmp_path, "t.csv", "region,count\nNorth,120\nSouth,N/A\nEast,4\n")
    assert rules(check_file(path, POLICY))["threshold"] is Verdict.FAIL


def test_checker_notebook_with_pandas_html_table(tmp_path):
    df = pd.DataFrame({"year": [2019] * 30 + [2020] * 3, "g": ["A"] * 30 + ["B"] * 3})
    html = pd.crosstab(df["year"], df["g"]).to_html()
    nb = write(tmp_path, "a.ipynb", notebook([{"output_type": "execute_result", "execution_count": 1,
                                               "data": {"text/html": html, "text/plain": str(pd.crosstab(df["year"], df["g"]))},
                                               "metadata": {}}]))
    report = check_file(nb, POLICY)
    assert report.status is not Verdict.PASS
    assert any("cell 1 output 1" in loc for f in report.findings for loc in f.locations)
