"""Benchmark: the top bar's inbox badge, counted (``inbox_total``: one query of four counts)
against building the whole inbox and taking its total (what every page render did
before), side by side in one run, for an author, a project member, a reviewer and an
admin.

    .venv/bin/python benchmarks/inbox_badge.py                 # 120 requests, 7 runs
    .venv/bin/python benchmarks/inbox_badge.py --requests 300 --runs 5

The enclave is real (migrated SQLite database, the egress test world's people and
project); its requests are made through the service layer: a share released (and some of
those downloaded), some in review, some returned for changes, some drafts. Each run times
both ways for every person, alternating which goes first; medians are printed with the
ratio and both totals (which must agree). Goal: the count under a fifth of the build's
time at 120 requests, and not growing with the number of released requests as the build
does. Prints numbers, asserts nothing.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "integration" / "egress"))

from egress_world import build_world, draft, release, to_state, vote_all  # noqa: E402
from enclave.config import Settings  # noqa: E402
from enclave.db.session import upgrade  # noqa: E402
from enclave.egress import inbox  # noqa: E402
from enclave.egress import release as release_service  # noqa: E402
from enclave.enums import EgressStatus  # noqa: E402
from enclave.enums import ReviewDecision  # noqa: E402
from enclave.users import get_user  # noqa: E402

PEOPLE = ["rita", "max", "ria", "admin"]


def build(root: Path, count: int):  # type: ignore[no-untyped-def]
    settings = Settings(home=root / "home", db_url=f"sqlite:///{root / 'home' / 'enclave.db'}",
                        policies_dir=REPO / "policies")
    upgrade(settings)
    world = build_world(settings)
    for i in range(count):
        kind = i % 6
        if kind <= 2:  # half of them released, a third of those downloaded by max
            rid = to_state(world, EgressStatus.IN_REVIEW)
            vote_all(world, rid, "rob")
            vote_all(world, rid, "rex")
            release(world, rid, "rex")
            if kind == 0:
                with world.uow() as s:
                    release_service.download_release(s, get_user(s, "max"), world.env, rid, root / f"got-{rid}")
        elif kind == 3:
            to_state(world, EgressStatus.IN_REVIEW)
        elif kind == 4:
            rid = to_state(world, EgressStatus.IN_REVIEW)
            vote_all(world, rid, "rob", ReviewDecision.REQUEST_CHANGES, "round the counts")
            vote_all(world, rid, "rex", ReviewDecision.REQUEST_CHANGES, "round the counts")
        else:
            draft(world)
    return world


def timed(world, name: str, counted: bool) -> tuple[float, int]:  # type: ignore[no-untyped-def]
    with world.uow() as s:
        actor = get_user(s, name)
        start = time.perf_counter()
        total = inbox.inbox_total(s, actor) if counted else inbox.inbox(s, actor).total
        return time.perf_counter() - start, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=120)
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    console = Console()
    with tempfile.TemporaryDirectory(prefix="inbox-bench-") as tmp:
        console.print(f"building {args.requests} requests through the service layer ...")
        world = build(Path(tmp), args.requests)
        table = Table(title=f"inbox badge, {args.requests} requests, median of {args.runs} runs")
        for column in ("person", "build the inbox (ms)", "count (ms)", "count / build", "totals"):
            table.add_column(column, justify="right")
        for name in PEOPLE:
            timed(world, name, True), timed(world, name, False)  # warm: imports, statement cache
            built: list[float] = []
            counted: list[float] = []
            totals = set()
            for run in range(args.runs):
                for way in ((False, True) if run % 2 else (True, False)):
                    seconds, total = timed(world, name, way)
                    (counted if way else built).append(seconds)
                    totals.add((way, total))
            b, c = statistics.median(built), statistics.median(counted)
            shown = ", ".join(f"{'count' if way else 'build'} {t}" for way, t in sorted(totals))
            table.add_row(name, f"{b * 1000:.1f}", f"{c * 1000:.1f}", f"{c / b:.3f}", shown)
        console.print(table)


if __name__ == "__main__":
    main()
