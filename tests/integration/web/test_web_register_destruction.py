"""A finished project's destruction over HTTP: the register's page and its record say who
closed it by role, never the administrator's name, and the published record verifies."""

from __future__ import annotations

import datetime as dt
import re

from fastapi.testclient import TestClient

from enclave.config import Settings
from enclave.db.models import DataRetention
from enclave.db.session import unit_of_work
from enclave.egress.signing import KEYRING_NAME, load_public_key, verify_envelope
from enclave.projects.lifecycle import ProjectAction
from enclave.projects.retention import closed_by_name, housekeeping, move_project
from enclave.projects.service import get_project
from enclave.users import get_user
from tests.integration.web.world import PREFIX


def test_register_destroyed_project_shows_the_role_and_policy_never_the_admins_name(client: TestClient,
                                                                                     world: Settings):
    with unit_of_work(world) as s:
        move_project(s, get_user(s, "ada"), world, "diabetes", ProjectAction.CLOSE, "study finished")
    housekeeping(world)
    with unit_of_work(world) as s:
        row = s.get(DataRetention, get_project(s, "diabetes").id)
        due, tier = row.destroy_after, get_project(s, "diabetes").tier
    assert housekeeping(world, now=due + dt.timedelta(seconds=1)).destroyed == ["diabetes"]

    page = client.get(PREFIX + "/register/diabetes").text
    assert "Closed by an administrator on" in page and f"retention policy of tier {tier}" in page
    response = client.get(PREFIX + "/register/diabetes/destruction.json")
    assert response.status_code == 200
    public = response.json()
    verify_envelope(public, load_public_key(world.keys_dir / KEYRING_NAME))
    words = page + public["statement"] + str(public["record"])
    assert not re.search(r"\bada\b", words, re.IGNORECASE)
    assert "custodians" not in public
    with unit_of_work(world) as s:
        assert closed_by_name(s.get(DataRetention, get_project(s, "diabetes").id).destruction_record) == "ada"
