"""The service figures of the admin dashboard, computed from a real enclave built through
the service layer: applications decided and waiting, egress requests sent back, resubmitted,
released and rejected, and grants ending soon."""

from __future__ import annotations

import datetime as dt
import shutil
import sys
from pathlib import Path

import pytest

from enclave.catalog import service as catalog
from enclave.clock import today, utcnow
from enclave.config import Settings
from enclave.db.session import unit_of_work, upgrade
from enclave.enums import ReviewDecision
from enclave.errors import PermissionDenied, PolicyError
from enclave.metrics import QueueKind, ServiceLevels, load_service_levels, service_metrics, working_days
from enclave.projects import service as projects
from enclave.projects.lifecycle import ProjectAction
from enclave.projects.tiers import load_tiers
from enclave.users import get_user
from tests.register_support import EXAMPLE_REGISTER

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "tests" / "integration" / "egress"))
from egress_world import build_world, draft, release, submit, vote_all  # noqa: E402

LEVELS = ServiceLevels(queue_target_working_days=5, grant_expiry_warning_days=30, period_days=90)


@pytest.mark.parametrize(("start", "end", "days"), [
    ("2026-11-27 09:00", "2026-11-27 17:00", 0),   # same Friday
    ("2026-11-27 17:00", "2026-11-30 09:00", 1),   # Friday to Monday: one working day
    ("2026-11-28 10:00", "2026-11-29 10:00", 0),   # Saturday to Sunday
    ("2026-11-30 10:00", "2026-12-07 10:00", 5),   # a week
    ("2026-11-30 10:00", "2026-12-21 09:00", 15),  # three weeks
    ("2026-12-02 10:00", "2026-11-30 10:00", 0),   # backwards
])
def test_metrics_working_days_count_weekdays_only(start: str, end: str, days: int):
    at = lambda s: dt.datetime.fromisoformat(s).replace(tzinfo=dt.UTC)  # noqa: E731
    assert working_days(at(start), at(end)) == days


@pytest.fixture(scope="module")
def enclave(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    """Applications (one waiting, one approved, one rejected) and egress requests (one sent
    back then released, one rejected, one in review), and two grants (ending in 10 and 100 days)."""
    home = tmp_path_factory.mktemp("metrics") / "home"
    settings = Settings(home=home, db_url=f"sqlite:///{home / 'enclave.db'}", policies_dir=REPO / "policies")
    upgrade(settings)
    world = build_world(settings)
    tiers = load_tiers(settings.policies_dir)
    end = today() + dt.timedelta(days=300)
    with unit_of_work(settings) as s:
        admin = get_user(s, "admin")
        for slug in ("waiting-one", "approved-one", "rejected-one"):
            projects.create_project(s, get_user(s, "rita"), tiers, slug=slug, title=slug, pi="rita",
                                    lay_summary="A study.", end_date=end, register=EXAMPLE_REGISTER)
        projects.transition_project(s, admin, "approved-one", ProjectAction.APPROVE)
        projects.transition_project(s, admin, "rejected-one", ProjectAction.REJECT, "No ethics approval yet.")

    reworked = draft(world)
    submit(world, reworked)
    vote_all(world, reworked, "ria", ReviewDecision.REQUEST_CHANGES, "Cell counts below 10")
    vote_all(world, reworked, "rob", ReviewDecision.REQUEST_CHANGES, "cell counts   below 10.")
    submit(world, reworked)
    vote_all(world, reworked, "ria")
    vote_all(world, reworked, "rob")
    release(world, reworked)
    rejected = draft(world)
    submit(world, rejected)
    vote_all(world, rejected, "ria", ReviewDecision.REJECT, "Microdata")
    vote_all(world, rejected, "rob", ReviewDecision.REJECT, "Microdata")
    submit(world, draft(world))  # waits for the checkers

    from enclave.demo.synthetic import generate, write_csv

    source = home.parent / "csv"
    write_csv(generate(40, seed=3), source)
    with unit_of_work(settings) as s:
        admin = get_user(s, "admin")
        catalog.ingest_dataset(s, admin, settings, source, "episodes", description="Synthetic episodes")
        catalog.add_grant(s, admin, settings, "heart-study", "episodes", expires=today() + dt.timedelta(days=10),
                          columns=["admissions.specialty"])
        catalog.add_grant(s, admin, settings, "approved-one", "episodes", expires=today() + dt.timedelta(days=100),
                          columns=["admissions.specialty"])
    return settings


def _metrics(settings: Settings, now: dt.datetime | None = None, levels: ServiceLevels = LEVELS):
    with unit_of_work(settings) as s:
        return service_metrics(s, get_user(s, "admin"), levels, now=now)


def test_metrics_queues_hold_what_waits_and_age_against_the_target(enclave: Settings):
    now = _metrics(enclave)
    assert [(w.kind, w.ref) for w in now.queue_of(QueueKind.APPLICATION)] == [(QueueKind.APPLICATION, "waiting-one")]
    egress = now.queue_of(QueueKind.EGRESS)
    assert len(egress) == 1 and egress[0].project == "heart-study"
    assert all(w.working_days <= 1 and not w.over_target for w in now.queue)
    later = _metrics(enclave, utcnow() + dt.timedelta(days=21))  # three weeks on: 15 working days
    assert all(w.working_days >= 14 and w.over_target for w in later.queue) and later.over_target == 2
    lenient = _metrics(enclave, utcnow() + dt.timedelta(days=21), LEVELS.model_copy(update={"queue_target_working_days": 20}))
    assert lenient.over_target == 0


def test_metrics_turnaround_counts_each_decision(enclave: Settings):
    m = _metrics(enclave)
    applications = m.turnaround[QueueKind.APPLICATION]
    assert applications.decided == 3  # heart-study, approved-one, rejected-one
    assert applications.median_working_days == 0 and applications.within_target == 3
    egress = m.turnaround[QueueKind.EGRESS]
    assert egress.decided == 3  # the rework round, its resubmission, the rejection
    assert egress.longest_working_days == 0


def test_metrics_rework_rate_and_rejection_reasons(enclave: Settings):
    m = _metrics(enclave)
    assert m.rework is not None
    assert (m.rework.decided, m.rework.returned, m.rework.rate, m.rework.rounds_mean) == (2, 1, 0.5, 1.5)
    reasons = {(r.kind, r.reason.lower()): r.count for r in m.reasons}
    assert reasons[(QueueKind.APPLICATION, "no ethics approval yet")] == 1
    files = 2  # every file of a request gets each reviewer's vote
    assert reasons[(QueueKind.EGRESS, "cell counts below 10")] == 2 * files
    assert reasons[(QueueKind.EGRESS, "microdata")] == 2 * files
    assert m.reasons[0].count >= m.reasons[-1].count


def test_metrics_grants_ending_within_the_warning(enclave: Settings):
    m = _metrics(enclave)
    assert [(g.project, g.dataset, g.days_left) for g in m.expiring] == [("heart-study", "episodes", 10)]
    wide = _metrics(enclave, levels=LEVELS.model_copy(update={"grant_expiry_warning_days": 120}))
    assert [g.project for g in wide.expiring] == ["heart-study", "approved-one"]
    assert [g.project for g in _metrics(enclave, utcnow() + dt.timedelta(days=75)).expiring] == ["approved-one"]


def test_metrics_only_admins(enclave: Settings):
    with unit_of_work(enclave) as s, pytest.raises(PermissionDenied):
        service_metrics(s, get_user(s, "rita"), LEVELS)


@pytest.mark.parametrize(("text", "says"), [
    ("queue_target_working_days: 0\ngrant_expiry_warning_days: 30\nperiod_days: 90\n", "queue_target_working_days"),
    ("queue_target_working_days: 5\ngrant_expiry_warning_days: 30\nperiod_days: 90\nqueue_target: 3\n", "unknown key"),
    ("queue_target_working_days: five\ngrant_expiry_warning_days: 30\nperiod_days: 90\n", "queue_target_working_days"),
    ("grant_expiry_warning_days: 30\nperiod_days: 90\n", "required key is missing"),
])
def test_metrics_service_policy_is_validated(tmp_path: Path, text: str, says: str):
    policies = tmp_path / "policies"
    shutil.copytree(REPO / "policies", policies)
    (policies / "service.yaml").write_text(text)
    with pytest.raises(PolicyError, match=says) as caught:
        load_service_levels(policies)
    assert "service.yaml" in str(caught.value)
    assert load_service_levels(REPO / "policies").queue_target_working_days == 5
