"""The whole flow through the commands people type, on the real catalogue and engine:
a researcher runs the cohort notebook as a job with new parameters, requests egress of an
output citing the run, and a reviewer re-runs it and sees the outputs reproduce."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.register_support import REGISTER_OPTIONS

REPO = Path(__file__).resolve().parents[3]
ENCLAVE = [sys.executable, "-m", "enclave.cli.main"]


def _enclave(env: dict[str, str], *args: str, ok: bool = True) -> str:
    done = subprocess.run([*ENCLAVE, *args], env=env, capture_output=True, text=True, timeout=600)
    if ok:
        assert done.returncode == 0, f"enclave {' '.join(args)}: {done.stdout}{done.stderr}"
    return done.stdout + done.stderr


def test_jobs_cli_researcher_runs_cites_and_reviewer_reproduces(tmp_path: Path, image: str):
    home = tmp_path / "home"
    env = os.environ | {"ENCLAVE_HOME": str(home), "ENCLAVE_POLICIES": str(REPO / "policies")}
    env.pop("ENCLAVE_DB_URL", None)
    env.pop("ENCLAVE_USER", None)
    e = lambda *a, **k: _enclave(env, *a, **k)  # noqa: E731
    e("db", "upgrade")
    e("user", "add", "admin", "--role", "admin")
    for name, role in (("alice", "researcher"), ("mallory", "researcher"), ("rita", "reviewer")):
        e("--as", "admin", "user", "add", name, "--role", role, "--training-expires", "2030-01-01")
    e("--as", "alice", "project", "create", "cohort", "--title", "Cohort", "--pi", "alice",
      "--lay-summary", "A study.", "--end-date", "2029-01-01", *REGISTER_OPTIONS)
    e("--as", "admin", "project", "approve", "cohort")
    e("--as", "admin", "project", "activate", "cohort")
    e("demo", "generate", str(tmp_path / "synth"), "--patients", "300", "--seed", "4", "--format", "csv", "--quiet")
    e("--as", "admin", "dataset", "ingest", str(tmp_path / "synth" / "csv"), "--name", "demo", "--quiet")
    e("--as", "admin", "grant", "add", "cohort", "demo", "--expires", "2028-12-31", "--quiet")
    # Activation gave the workspace the example notebooks, owned by the notebook user.
    copied = home / "workspaces" / "cohort" / "notebooks" / "cohort_analysis.ipynb"
    assert copied.read_bytes() == (REPO / "notebooks" / "cohort_analysis.ipynb").read_bytes()
    assert (copied.stat().st_uid, copied.stat().st_gid) == (1000, 100)

    # Bad input: one clear line, no traceback.
    bad = e("--as", "alice", "job", "submit", "cohort", "notebooks/cohort_analysis.ipynb", "-p", "min age=3", ok=False)
    assert bad.startswith("error: parameter 'min age=3'") and "Traceback" not in bad
    refused = e("--as", "mallory", "job", "submit", "cohort", "notebooks/cohort_analysis.ipynb", ok=False)
    assert "mallory may not run jobs in cohort" in refused

    out = e("--as", "alice", "job", "submit", "cohort", "notebooks/cohort_analysis.ipynb",
            "-p", "min_age=55", "-p", "max_age=85", "--wait")
    assert "run 1 succeeded" in out
    shown = e("--as", "alice", "job", "show", "1")
    assert "parameters {'min_age': 55, 'max_age': 85}" in shown
    assert "dataset demo version 1" in shown  # the granted version, found through the catalogue
    assert "cohort_by_age_band_sex.csv" in shown
    assert "aged 55-85" in e("--as", "alice", "job", "logs", "1")

    e("--as", "alice", "egress", "create", "cohort", "--title", "Cohort tables", "--cite-run", "1")
    e("--as", "alice", "egress", "add", "1", "jobs/1/cohort_by_age_band_sex.csv", "--group", "t1",
      "--context", "Cohort aged 55-85 by age band and sex", "--controls", "enclave.safe threshold suppression")
    e("--as", "alice", "egress", "submit", "1")

    rerun = e("--as", "rita", "job", "rerun", "1", "--wait")
    assert "run 2 succeeded" in rerun
    assert "rerun of run 1: reproduced: all 5 output(s) match" in rerun
    assert "identical       cohort_by_age_band_sex.csv" in rerun
    listed = json.loads(e("--as", "rita", "job", "list", "--project", "cohort", "--json"))
    assert [(r["run_id"], r["rerun_of"], (r["comparison"] or {}).get("matches")) for r in listed] == [
        (2, 1, True), (1, None, None)]
