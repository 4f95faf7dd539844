"""Load: 50 requests submitted, reviewed by two reviewers at the same time, and released
concurrently, against SQLite and PostgreSQL; no update, vote or transition is lost."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import func, select

from egress_world import World
from enclave.audit import list_events, verify_chain
from enclave.db.models import EgressRequest, EgressReview
from enclave.egress import release as release_service
from enclave.egress import review
from enclave.egress import service as egress
from enclave.enums import EgressStatus as S
from enclave.enums import ReviewDecision as D
from enclave.users import get_user

pytestmark = pytest.mark.slow
N = 50


def _run_all(jobs: list[Callable[[], object]]) -> list[object]:
    with ThreadPoolExecutor(max_workers=12) as pool:
        return [f.result() for f in [pool.submit(job) for job in jobs]]


def _load(world: World) -> None:
    for i in range(N):
        world.write(f"t{i}.csv", f"region,count\nnorth,{100 + i}\nsouth,{200 + i}\n".encode())

    def create_and_submit(i: int) -> int:
        with world.uow() as s:
            rita = get_user(s, "rita")
            rid = egress.create_request(s, rita, world.env, world.slug, f"table {i}").id
            egress.add_files(s, rita, world.env, rid, [f"t{i}.csv"], "main", "counts by region", "over 10")
        with world.uow() as s:
            egress.submit_request(s, get_user(s, "rita"), world.env, rid)
        return rid

    ids = _run_all([lambda i=i: create_and_submit(i) for i in range(N)])
    assert len(set(ids)) == N

    def vote(rid: int, reviewer: str, i: int) -> None:
        with world.uow() as s:
            review.vote(s, get_user(s, reviewer), world.env, rid, f"t{i}.csv", D.APPROVE, "ok")

    # Both reviewers of every request vote at the same moment: the deciding vote must see the other.
    _run_all([lambda r=rid, n=name, i=i: vote(r, n, i) for i, rid in enumerate(ids) for name in ("ria", "rob")])

    def do_release(rid: int) -> None:
        with world.uow() as s:
            release_service.release_request(s, get_user(s, "rex"), world.env, rid)

    _run_all([lambda r=rid: do_release(r) for rid in ids])
    with world.uow() as s:
        statuses = s.scalars(select(EgressRequest.status)).all()
        assert statuses == [S.RELEASED] * N
        assert s.scalar(select(func.count(EgressReview.id))) == 2 * N
        assert len(list(list_events(s, action="egress.vote"))) == 2 * N
        assert len(list(list_events(s, action="egress.release"))) == N
        moves = [e for e in list_events(s, action="egress.transition")]
        assert len(moves) == 4 * N
        report = verify_chain(s)
        assert report.ok, report.problem
    assert len(list((world.settings.export_dir / world.slug).iterdir())) == N


def test_concurrency_sqlite_loses_no_update(world: World) -> None:
    _load(world)


@pytest.mark.postgres
def test_concurrency_postgres_loses_no_update(pg_world: World) -> None:
    _load(pg_world)
