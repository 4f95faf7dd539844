"""``enclave project create`` with the register's options: validated, one line on error."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from enclave.db.session import unit_of_work
from enclave.projects.service import get_project

from .conftest import RegisterWorld

BASE = ["project", "create", "hip-fracture", "--title", "Hip fractures", "--pi", "rita",
        "--lay-summary", "Recovery after a broken hip.", "--end-date", "2099-01-01"]
REGISTER = ["--public-benefit", "Faster recovery at home.", "--gdpr-article6", "public_task",
            "--gdpr-article9", "research_and_statistics", "--confidentiality-basis", "section_251",
            "--data-controller", "Orthopaedic Trust", "--contact-email", "hips@trust.example"]


def _cli(reg: RegisterWorld, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCLAVE_")}
    env.update(ENCLAVE_HOME=str(reg.settings.home), ENCLAVE_POLICIES=str(reg.settings.policies_dir),
               ENCLAVE_USER="admin", ENCLAVE_DB_URL=reg.settings.db_url)
    return subprocess.run([sys.executable, "-m", "enclave.cli.main", *args], env=env, capture_output=True,
                          text=True, timeout=120, cwd=Path(__file__).resolve().parents[3])


def test_cli_register_options_are_validated_in_one_line(reg: RegisterWorld):
    for bad, says in ((["--contact-email", "not an address"], "--contact-email: give one email address"),
                      (["--gdpr-article6", "because"], "--gdpr-article6: choose one of: consent, contract"),
                      (["--public-benefit", "x"], "--gdpr-article6 is missing")):
        changed = REGISTER + bad if bad[0] != "--public-benefit" else bad
        result = _cli(reg, *BASE, *changed)
        assert result.returncode != 0 and says in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
    with unit_of_work(reg.settings) as s:
        assert s.execute(__import__("sqlalchemy").text("select count(*) from projects where slug='hip-fracture'")
                         ).scalar() == 0
    result = _cli(reg, *BASE, *REGISTER, "--funders", "Bone Trust")
    assert result.returncode == 0, result.stderr
    with unit_of_work(reg.settings) as s:
        project = get_project(s, "hip-fracture")
        assert (project.gdpr_article9, project.confidentiality_basis, project.contact_email, project.funders) == (
            "research_and_statistics", "section_251", "hips@trust.example", "Bone Trust")
    shown = json.loads(_cli(reg, "project", "show", "hip-fracture", "--json").stdout)
    assert (shown["public_benefit"], shown["gdpr_article6"], shown["data_controller"]) == (
        "Faster recovery at home.", "public_task", "Orthopaedic Trust")
    assert "section_251" in _cli(reg, "project", "show", "hip-fracture").stdout


def test_cli_approve_refuses_missing_register_fields_in_one_line_until_added(reg: RegisterWorld):
    assert _cli(reg, *BASE, "--organisation", "Orthopaedic Trust").returncode == 0  # no register options
    refused = _cli(reg, "project", "approve", "hip-fracture")
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert refused.stderr.strip() == (
        "error: project hip-fracture cannot be approved: the public register needs its public benefit, lawful basis, "
        "data controller and contact, which are missing; add them with 'enclave project register-details "
        "hip-fracture --public-benefit ... --gdpr-article6 ... --gdpr-article9 ... --confidentiality-basis ... "
        "--data-controller ... --contact-email ...', then approve it")
    with unit_of_work(reg.settings) as s:
        assert get_project(s, "hip-fracture").status.value == "proposed"
    shown = " ".join(_cli(reg, "project", "show", "hip-fracture").stdout.split())
    assert "approval needs" in shown and "public benefit, lawful basis, data controller, contact" in shown

    bad = _cli(reg, "project", "register-details", "hip-fracture", "--contact-email", "Dr Bones")
    assert bad.returncode != 0 and bad.stderr.strip() == (
        "error: --contact-email: give one email address, such as research-office@example.org")
    nothing = _cli(reg, "project", "register-details", "hip-fracture")
    assert nothing.returncode != 0 and nothing.stderr.startswith("error: give at least one register option")
    added = _cli(reg, "project", "register-details", "hip-fracture", *REGISTER[:8])
    assert added.returncode == 0 and "register details of hip-fracture were updated" in added.stdout, added.stderr
    still = _cli(reg, "project", "approve", "hip-fracture")
    assert still.returncode != 0 and "needs its data controller and contact, which are missing; add them with " \
        "'enclave project register-details hip-fracture --data-controller ... --contact-email ...'" in still.stderr
    assert _cli(reg, "project", "register-details", "hip-fracture", *REGISTER[8:]).returncode == 0
    approved = _cli(reg, "project", "approve", "hip-fracture")
    assert approved.returncode == 0 and "now approved" in approved.stdout, approved.stderr
    assert "approval needs" not in _cli(reg, "project", "show", "hip-fracture").stdout
    late = _cli(reg, "project", "register-details", "hip-fracture", "--funders", "Bone Trust")
    assert late.returncode != 0 and "its register details are fixed once it is decided" in late.stderr
