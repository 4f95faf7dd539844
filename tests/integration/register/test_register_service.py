"""The register's service: what is published of each project, search, released outputs."""

from __future__ import annotations

import json
import re

import pytest

from enclave.clock import today
from enclave.db.session import unit_of_work
from enclave.enums import ProjectStatus
from enclave.errors import InvalidInput, NotFound
from enclave.register import feed
from enclave.register.policy import load_register_policy
from enclave.register.service import get_entry, search_register
from enclave.schemas import ProjectOut
from enclave.projects.service import get_project

from .conftest import QUIET, REPO, RegisterWorld


def _slugs(reg: RegisterWorld, text: str | None = None, status: ProjectStatus | None = None) -> list[str]:
    with unit_of_work(reg.settings) as s:
        return sorted(e.slug for e in search_register(s, text, status))


def test_register_lists_approved_active_suspended_and_finished_projects_in_words(reg: RegisterWorld):
    with unit_of_work(reg.settings) as s:
        entries = {e.slug: e for e in search_register(s)}
    assert set(entries) == {"heart-study", "kidney-care", "stroke-done", "lung-soon"}  # never proposed or rejected
    assert {slug: e.status_text for slug, e in entries.items()} == {
        "heart-study": "active", "kidney-care": "suspended", "stroke-done": "finished",
        "lung-soon": "approved, not started"}
    assert entries["kidney-care"].suspended_on == today() and entries["stroke-done"].finished_on == today()
    assert entries["heart-study"].suspended_on is None and entries["heart-study"].approved_on == today()
    with unit_of_work(reg.settings) as s, pytest.raises(NotFound, match="search the register"):
        get_entry(s, "secret-plan")  # unpublished and unknown look alike


def test_register_search_matches_title_purpose_organisation_and_dataset(reg: RegisterWorld):
    assert _slugs(reg, "kidney") == ["kidney-care"]                      # title
    assert _slugs(reg, "readmission") == ["heart-study"]                 # purpose
    assert _slugs(reg, "western") == ["stroke-done"]                     # organisation
    assert _slugs(reg, "cardiac-audit") == ["heart-study"]               # dataset name
    assert _slugs(reg, "HEART ATTACK admissions") == ["heart-study"]     # words of its description, any case
    assert _slugs(reg, "heart kidney") == []                             # every word must match
    assert _slugs(reg, "  ") == _slugs(reg)
    assert _slugs(reg, None, ProjectStatus.SUSPENDED) == ["kidney-care"]


def test_register_search_takes_wildcards_literally_and_refuses_what_is_too_long(reg: RegisterWorld):
    assert _slugs(reg, "%") == ["kidney-care"] and _slugs(reg, "time_x") == ["kidney-care"]
    assert _slugs(reg, "_") == ["kidney-care"]  # only its purpose has an underscore
    with unit_of_work(reg.settings) as s:
        for bad, says in (("x" * 201, "longer than 200"), (" ".join("w" * 11), "more than 10 words")):
            with pytest.raises(InvalidInput, match=says) as err:
                search_register(s, bad)
            assert "\n" not in str(err.value)
        with pytest.raises(InvalidInput, match="lists no proposed projects"):
            search_register(s, None, ProjectStatus.PROPOSED)


def test_register_entry_words_the_lawful_basis_and_says_what_is_not_stated(reg: RegisterWorld):
    with unit_of_work(reg.settings) as s:
        heart, kidney = get_entry(s, "heart-study"), get_entry(s, "kidney-care")
    assert heart.lawful_basis.article6_text == "Article 6(1)(e): a task in the public interest"
    assert heart.lawful_basis.article9_text.startswith("Article 9(2)(j): research")
    assert "duty of confidentiality does not apply" in heart.lawful_basis.confidentiality_text
    assert heart.lawful_basis.approvals == "REC 21/NE/0101; 21/CAG/0077"
    assert heart.contact_email == "heart-research@trust.example"  # stored as one lower-case mailbox
    assert heart.data_controller == "Northern Heart NHS Foundation Trust"
    assert [(d.name, d.description, d.access_ended) for d in heart.datasets] == [
        ("cardiac-audit", "National audit of heart attack admissions, 2015-2024", False)]
    assert kidney.lawful_basis.article6 is None and kidney.lawful_basis.article6_text == "Not stated"
    assert kidney.datasets == [] and kidney.public_benefit == ""


def test_register_lists_released_outputs_with_titles_dates_and_file_names(reg: RegisterWorld):
    with unit_of_work(reg.settings) as s:
        heart = get_entry(s, "heart-study")
    assert [(o.title, o.released_on, o.files) for o in heart.outputs] == [
        ("Regional counts", today(), ["analysis.ipynb", "by_region.csv"])]
    assert heart.released_outputs == 2


def test_register_publishes_nothing_about_the_people_on_a_project(reg: RegisterWorld):
    policy = load_register_policy(REPO / "policies")
    with unit_of_work(reg.settings) as s:
        # The names are there to be leaked: the project's own record holds them.
        kidney = ProjectOut.of(get_project(s, "kidney-care"))
        assert kidney.pi == "quillfeather" and "yarrowby" in kidney.members
        assert "quillfeather" in (get_project(s, "kidney-care").status_reason or "")
        entries = search_register(s)
        published = json.dumps([e.model_dump(mode="json") for e in entries])
        published += json.dumps([feed.data_use(e, policy).model_dump(mode="json") for e in entries])
        published += feed.to_csv([feed.data_use(e, policy) for e in entries])
    people = (*QUIET, "rita", "max", "rhea", "ria", "rob", "rex", "admin", "outsider")
    leaked = [name for name in people if re.search(rf"\b{name}\b", published, re.IGNORECASE)]
    assert leaked == [], leaked
    assert "password" not in published  # the suspension's reason


def test_register_withholds_the_names_researchers_typed_into_what_is_published(reg: RegisterWorld):
    """Titles, summaries and file names are typed by researchers: a mention of anyone on
    the project is withheld ("maximum" merely contains a name and is kept)."""
    import sys
    from pathlib import Path

    from enclave.egress import service as egress
    from enclave.egress.policy import EgressEnv
    from enclave.enums import EgressStatus
    from enclave.users import get_user

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "egress"))
    from egress_world import World, release, submit, vote_all

    world = World(settings=reg.settings, env=EgressEnv.load(reg.settings))
    world.write("by_region_for_Max.csv", b"region,count\nnorth,120\nsouth,85\n")
    with unit_of_work(reg.settings) as s:
        rita = get_user(s, "rita")
        rid = egress.create_request(s, rita, world.env, world.slug, "Rita's counts, checked by Rob (maximum 85)").id
        egress.add_files(s, rita, world.env, rid, ["by_region_for_Max.csv"], "main", "counts by region", "none needed")
        project = get_project(s, world.slug)
        project.lay_summary = "Outcomes after heart attacks, a study led by RITA with rhea."
    submit(world, rid)
    vote_all(world, rid, "ria")
    vote_all(world, rid, "rob")
    assert release(world, rid).status is EgressStatus.RELEASED
    with unit_of_work(reg.settings) as s:
        heart = get_entry(s, "heart-study")
    latest = heart.outputs[-1]
    assert latest.title == "[name withheld]'s counts, checked by [name withheld] (maximum 85)"
    assert latest.files == ["by_region_for_[name withheld].csv"]
    assert heart.lay_summary == "Outcomes after heart attacks, a study led by [name withheld] with [name withheld]."
