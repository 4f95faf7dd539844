"""The site's disclosure policy inside workspace containers, on a real engine.

The site's ``policies/disclosure.yaml`` here differs from the built-in defaults (threshold
15, not 10). A batch job (the same mounts as a notebook server: ``project_mounts``) builds
tables with enclave.safe in a real container over the project's real catalogue view; the
tables must follow the site's rule, and the evidence replay on submit (which applies the
site's policy, never the sidecar's) must reproduce them. A researcher who brings looser
rules (their own file named in the environment, a policy passed to the library, or a
changed library that claims the site's policy) gets no trusted evidence.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import shutil
import uuid
from pathlib import Path

import pytest

from enclave.db.models import EgressFile
from enclave.db.session import unit_of_work
from enclave.disclosure import load_disclosure_policy
from enclave.disclosure.evidence import sidecar_path
from enclave.egress.policy import EgressEnv
from enclave.egress.quarantine import outbox_dir
from enclave.hub.access import prepare_workspace
from enclave.jobs import service as jobs
from enclave.jobs.runner import Runner
from enclave.jobs.states import JobStatus
from enclave.sandbox import ContainerPolicy
from enclave.users import get_user
from tests.engine_support import write_notebook

from ..conftest import PREFIX
from .submitting import grant_synthetic_dataset, replaying_env, submit_tables

REPO = Path(__file__).resolve().parents[3]
SLUG = "cardio"
SITE_THRESHOLD = 15
SITE_VERSION = "site-15"

NOTEBOOK_CELLS = [
    # The table as a researcher makes it: the library picks the site's policy up by itself.
    """
import datetime, json, os, pathlib
import polars as pl
from enclave.safe import crosstab, load_disclosure_policy, query
out = pathlib.Path(os.environ["ENCLAVE_JOB_OUTPUT"])
cohort = query("demo", "patients").filter(pl.col("date_of_birth") > pl.lit(datetime.date(1970, 1, 1)))
crosstab(cohort, index="deprivation_decile", columns="sex").save(out / "site.csv")
""",
    # Looser rules of the researcher's own, in a workspace file named in the environment:
    # where the site's policy is mounted the library does not take them.
    """
own = pathlib.Path("/home/jovyan/project/loose.yaml")
own.write_text("version: mine\\nthreshold: 1\\n")
os.environ["ENCLAVE_DISCLOSURE_POLICY"] = str(own)
crosstab(cohort, index="deprivation_decile", columns="sex").save(out / "env.csv")
""",
    # The same rules passed to the library explicitly: the table follows them.
    """
crosstab(cohort, index="deprivation_decile", columns="sex", policy=load_disclosure_policy(own)).save(out / "own.csv")
""",
    # What the container sees of the site's policies.
    """
probe = {"listing": sorted(os.listdir("/etc/enclave/policies")),
         "version": load_disclosure_policy().version,
         "mounts": [line.split()[4] + " " + line.split()[5] for line in open("/proc/self/mountinfo")
                    if line.split()[4].startswith("/etc/enclave")]}
for name, attempt in (("overwrite", lambda: open("/etc/enclave/policies/disclosure.yaml", "w")),
                      ("create", lambda: open("/etc/enclave/policies/mine.yaml", "w")),
                      ("remove", lambda: os.unlink("/etc/enclave/policies/disclosure.yaml"))):
    try:
        attempt()
        probe[name] = "done"
    except OSError as exc:
        probe[name] = exc.errno
(out / "probe.json").write_text(json.dumps(probe))
""",
]


@pytest.fixture
def enclave_home(enclave_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The enclave of these tests runs with a site policy directory of its own, whose
    disclosure threshold is not the built-in one."""
    policies = tmp_path / "site-policies"
    shutil.copytree(REPO / "policies", policies)
    disclosure = policies / "disclosure.yaml"
    text = disclosure.read_text()
    text = re.sub(r'(?m)^version: .*$', f'version: "{SITE_VERSION}"', text)
    text = re.sub(r"(?m)^threshold: 10$", f"threshold: {SITE_THRESHOLD}", text)
    disclosure.write_text(text)
    monkeypatch.setenv("ENCLAVE_POLICIES", str(policies))
    return enclave_home


@dataclasses.dataclass
class Site:
    settings: object
    client: object
    image: str
    prefix: str

    def env(self) -> EgressEnv:
        return replaying_env(self.settings, self.client, self.image, self.prefix)

    def run_job(self) -> Path:
        """Run the notebook above as alice's batch job; the folder of its outputs."""
        workspace = prepare_workspace(self.settings, SLUG)
        notebooks = workspace / "notebooks"
        notebooks.mkdir(exist_ok=True)
        os.chown(notebooks, 1000, 100)
        write_notebook(notebooks / "site.ipynb", NOTEBOOK_CELLS)
        with unit_of_work(self.settings) as s:
            run_id = jobs.submit_job(s, get_user(s, "alice"), self.settings, SLUG, "notebooks/site.ipynb", {}).id
        policy = ContainerPolicy(image=self.image, mem_limit="1g", cpu_limit=1.0, job_mem_limit="1g")
        runner = Runner(self.settings, policy, self.client, container_prefix=self.prefix)
        assert runner.run_next(run_id) == run_id
        with unit_of_work(self.settings) as s:
            prov = jobs.get_run_provenance(s, get_user(s, "root-admin"), run_id)
        assert prov.status is JobStatus.SUCCEEDED, prov.error
        return self.settings.workspaces_dir / SLUG / jobs.OUTPUTS_RELDIR / str(run_id)

    def submit(self, *relpaths: str) -> dict[str, EgressFile]:
        files = submit_tables(self.settings, self.env(), SLUG, list(relpaths))
        return {f.relpath.rsplit("/", 1)[-1]: f for f in files}

    def leftovers(self) -> list:
        return self.client.containers.list(all=True, filters={"name": self.prefix})


@pytest.fixture
def site(settings, factory, session, client, image, tmp_path) -> Site:
    """Project cardio (alice), active, granted a materialised view of a synthetic dataset."""
    grant_synthetic_dataset(settings, factory, session, SLUG, tmp_path / "source")
    world = Site(settings, client, image, f"{PREFIX}site-{uuid.uuid4().hex[:6]}-")
    yield world
    for container in world.leftovers():
        container.remove(force=True)


def _cells(out: Path, name: str) -> list[dict]:
    return json.loads(sidecar_path(out / name).read_text())["cells"]


def _relpath(site: Site, out: Path, name: str) -> str:
    return (out / name).relative_to(outbox_dir(site.settings, SLUG)).as_posix()


def test_site_policy_tables_made_in_a_container_follow_the_site_and_are_reproduced(site: Site):
    assert load_disclosure_policy(site.settings.policies_dir / "disclosure.yaml").threshold == SITE_THRESHOLD
    out = site.run_job()

    # The table made in the container follows the site's threshold: every cell of 1 to 14
    # people is suppressed, among them cells the built-in threshold (10) would have shown.
    cells = _cells(out, "site.csv")
    assert {c["n"] for c in cells if 10 <= c["n"] < SITE_THRESHOLD}, "the cohort must have cells of 10-14 people"
    assert all(c["suppressed"] for c in cells if 0 < c["n"] < SITE_THRESHOLD)
    assert all(not c["suppressed"] for c in cells if c["n"] >= SITE_THRESHOLD)
    evidence = json.loads(sidecar_path(out / "site.csv").read_text())
    assert evidence["policy_version"] == SITE_VERSION and evidence["policy"]["threshold"] == SITE_THRESHOLD

    files = site.submit(_relpath(site, out, "site.csv"))
    file = files["site.csv"]
    assert file.check_json["evidence"]["status"] == "reproduced", file.check_json["evidence"]
    [note] = [f for f in file.check_json["findings"] if f["rule"] == "evidence"]
    assert note["message"].startswith("evidence reproduced")
    assert file.check_status == "pass", file.check_json["findings"]
    assert site.leftovers() == []


def test_site_policy_mount_is_read_only_and_holds_only_the_disclosure_policy(site: Site):
    out = site.run_job()
    probe = json.loads((out / "probe.json").read_text())
    assert probe["listing"] == ["disclosure.yaml"]  # no other policy, no key
    assert probe["version"] == SITE_VERSION
    # One mount under /etc/enclave, read-only; every write is refused by the file system (EROFS).
    [mount] = probe["mounts"]
    assert mount.startswith("/etc/enclave/policies ") and "ro" in mount.split()[1].split(","), probe
    assert probe["overwrite"] == probe["create"] == probe["remove"] == 30, probe
    # The host's copy is the site's file, byte for byte, and nothing under ENCLAVE_HOME but it.
    copy = site.settings.container_policies_dir / "current"
    assert sorted(p.name for p in copy.iterdir()) == ["disclosure.yaml"]
    assert (copy / "disclosure.yaml").read_bytes() == (site.settings.policies_dir / "disclosure.yaml").read_bytes()


def test_site_policy_looser_rules_brought_by_the_researcher_are_never_trusted(site: Site):
    out = site.run_job()
    # A policy file of the researcher's, named in the environment: not taken where the site's
    # is mounted, so that table is the site's table and is reproduced.
    assert (out / "env.csv").read_bytes() == (out / "site.csv").read_bytes()
    # The same rules passed to the library: the table shows cells of 10-14 people, and its
    # evidence says under which rules.
    own = _cells(out, "own.csv")
    assert any(not c["suppressed"] for c in own if 0 < c["n"] < SITE_THRESHOLD)
    # A changed library (own code on PYTHONPATH, an edited sidecar) claiming the site's
    # policy over the loosely made table: the replay applies the site's policy and the
    # table comes out different.
    forged = out / "forged.csv"
    shutil.copyfile(out / "own.csv", forged)
    record = json.loads(sidecar_path(out / "own.csv").read_text())
    site_policy = json.loads(sidecar_path(out / "site.csv").read_text())
    record.update(policy=site_policy["policy"], policy_version=site_policy["policy_version"],
                  output={"file": "forged.csv", "sha256": hashlib.sha256(forged.read_bytes()).hexdigest(),
                          "bytes": forged.stat().st_size})
    sidecar_path(forged).write_text(json.dumps(record))

    files = site.submit(*(_relpath(site, out, n) for n in ("env.csv", "own.csv", "forged.csv")))
    assert files["env.csv"].check_json["evidence"]["status"] == "reproduced", files["env.csv"].check_json["evidence"]
    mine = files["own.csv"].check_json["evidence"]
    assert mine["status"] == "not_reproducible" and "version 'mine', not the site's 'site-15'" in mine["reason"], mine
    claimed = files["forged.csv"].check_json["evidence"]
    assert claimed["status"] == "not_reproducible" and "when recomputed" in claimed["reason"], claimed
    for name in ("own.csv", "forged.csv"):
        file = files[name]
        assert file.check_status in ("review", "fail"), (name, file.check_json["findings"])
        [note] = [f for f in file.check_json["findings"] if f["rule"] == "evidence"]
        assert "checked as a plain file" in note["message"]
        # The counts under 15 that the file shows are caught by the checker under the site's rules.
        assert any(f["rule"] != "evidence" and f["status"] in ("review", "fail") for f in file.check_json["findings"]), \
            (name, file.check_json["findings"])
    assert site.leftovers() == []
