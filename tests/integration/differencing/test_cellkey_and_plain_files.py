"""The cell-key method on submit, and outputs the enclave cannot fingerprint.

With the cell-key option on, the nested pair of the differencing tests is released as
noise: each table's canonical form (what reviewers see and the release carries) is its
perturbed bytes, the same table always gets the same noise, and the pair is not flagged.
"""

from __future__ import annotations

import dataclasses

import polars as pl

from enclave.db.models import EgressRequest
from enclave.db.session import unit_of_work
from enclave.disclosure.differencing.policy import CellKeyChoice
from enclave.egress import release as release_service
from enclave.egress import review as review_service
from enclave.egress.quarantine import read_object
from enclave.enums import EgressStatus, ReviewDecision
from enclave.safe import crosstab
from enclave.users import get_user

from .conftest import Enclave, differencing
from .test_differencing_check import cohort, patients, top_age_with_few


def cell_key_on(enclave: Enclave):
    policy = enclave.env.differencing.model_copy(update={"cell_key": CellKeyChoice(default=True)})
    return dataclasses.replace(enclave.env, differencing=policy)


def released_bytes(enclave: Enclave, rid: int, relpath: str) -> bytes:
    with unit_of_work(enclave.settings) as s:
        file = next(f for f in s.get(EgressRequest, rid).files if f.relpath == relpath)
        return read_object(enclave.settings, file.canonical_sha256).read_bytes()


def counts(data: bytes) -> list[int]:
    frame = pl.read_csv(data, infer_schema=False)
    return [int(v) for c in frame.columns[1:] for v in frame[c].to_list() if v not in (None, "")]


def test_cellkey_nested_pair_releases_only_noise(enclave: Enclave):
    env = cell_key_on(enclave)
    age = top_age_with_few(patients(enclave))
    a = enclave.save("cardio", "a.csv", crosstab(cohort(age - 1), index="age_band", columns="sex", margins=True))
    rid_a, first = enclave.submit("cardio", "a.csv", env=env)
    note = next(f for f in first["a.csv"]["findings"] if f["rule"] == "cell_key")
    assert note["status"] == "pass" and "cell-key noise" in note["message"]
    noisy = released_bytes(enclave, rid_a, "a.csv")
    assert noisy.decode().splitlines() == note["locations"]  # the researcher saw exactly what is reviewed

    b = enclave.save("cardio", "b.csv", crosstab(cohort(age), index="age_band", columns="sex", margins=True))
    rid_b, second = enclave.submit("cardio", "b.csv", env=env)
    assert differencing(second["b.csv"]) is None  # both published with noise: the difference is noise
    true = counts(a.read_bytes()) + counts(b.read_bytes())
    shown = counts(noisy) + counts(released_bytes(enclave, rid_b, "b.csv"))
    assert len(true) == len(shown) and true != shown  # (the test's fixed key makes this the same every run)
    assert all(abs(x - y) <= env.differencing.ptable.max_perturbation for x, y in zip(true, shown))
    # Without the option the same pair is flagged.
    enclave.save("cardio", "c.csv", crosstab(cohort(age), index="age_band", columns="sex", margins=True))
    _, plain = enclave.submit("cardio", "c.csv")
    assert differencing(plain["c.csv"]) is not None


def test_cellkey_same_table_gets_the_same_noise(enclave: Enclave):
    env = cell_key_on(enclave)
    enclave.save("cardio", "t.csv", crosstab(cohort(90), index="age_band", columns="sex"))
    rid1, _ = enclave.submit("cardio", "t.csv", env=env)
    rid2, _ = enclave.submit("cardio", "t.csv", env=env)
    assert released_bytes(enclave, rid1, "t.csv") == released_bytes(enclave, rid2, "t.csv")


def test_cellkey_plain_table_gets_review(enclave: Enclave):
    env = cell_key_on(enclave)
    (enclave.outbox("cardio") / "plain.csv").write_text("band,n\n40-59,120\n60-79,80\n")
    _, result = enclave.submit("cardio", "plain.csv", env=env)
    note = next(f for f in result["plain.csv"]["findings"] if f["rule"] == "cell_key")
    assert note["status"] == "review"


def test_differencing_plain_file_lists_earlier_releases_for_review(enclave: Enclave):
    enclave.save("cardio", "released.csv", crosstab(cohort(90), index="age_band", columns="sex"))
    rid, _ = enclave.submit("cardio", "released.csv")
    for reviewer in ("rita", "rex"):
        with unit_of_work(enclave.settings) as s:
            review_service.vote(s, get_user(s, reviewer), enclave.env, rid, "released.csv", ReviewDecision.APPROVE,
                                "safe")
    with unit_of_work(enclave.settings) as s:
        assert release_service.release_request(s, get_user(s, "rita"), enclave.env, rid).status is EgressStatus.RELEASED
    (enclave.outbox("cardio") / "notes.md").write_text("# Methods\n\nWe counted patients by band.\n")
    _, result = enclave.submit("cardio", "notes.md")
    finding = differencing(result["notes.md"])
    assert finding is not None and finding["status"] == "review"
    assert f"request {rid}: outbox/released.csv" in finding["locations"]
    (enclave.outbox("renal") / "notes.md").write_text("# Methods\n\nWe counted patients by band.\n")
    _, other = enclave.submit("renal", "notes.md")  # a project with no releases: nothing to compare with
    assert differencing(other["notes.md"]) is None


def test_differencing_check_that_breaks_sends_files_to_review(enclave: Enclave):
    # A damaged store (here: the project's pseudonym map) must never let a file pass unchecked.
    enclave.save("cardio", "t.csv", crosstab(cohort(90), index="age_band", columns="sex"))
    enclave.submit("cardio", "t.csv")
    maps = enclave.settings.home / "differencing" / "demo" / "maps" / "cardio-v1.parquet"
    maps.write_bytes(b"not parquet")
    _, again = enclave.submit("cardio", "t.csv")
    finding = differencing(again["t.csv"])
    assert finding is not None and finding["status"] == "review" and "failed" in finding["message"]
    assert again["t.csv"]["status"] in ("review", "fail")


def test_cellkey_researcher_sees_the_perturbed_table_before_submitting(enclave: Enclave):
    from enclave.egress.replay import check_project_files

    env = cell_key_on(enclave)
    path = enclave.save("cardio", "pre.csv", crosstab(cohort(90), index="age_band", columns="sex", margins=True))
    with unit_of_work(enclave.settings) as s:
        [(report, outcome)] = check_project_files(s, get_user(s, "alice"), env, "cardio", [path])
    assert outcome.status == "reproduced"
    [note] = [f for f in report.findings if f.rule == "cell_key"]
    assert note.locations[0] == path.read_text().splitlines()[0]  # the header as it was
    rid, result = enclave.submit("cardio", "pre.csv", env=env)
    assert released_bytes(enclave, rid, "pre.csv").decode().splitlines() == note.locations  # what the check showed
    # A check records nothing: only submitted outputs are compared with later ones.
    assert not list((enclave.settings.home / "differencing" / "demo" / "outputs").glob("check-*"))
