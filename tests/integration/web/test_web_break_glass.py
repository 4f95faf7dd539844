"""The project page shows its members every break-glass window an admin opened into the
project's servers: who, whose server, when, until when, and the written reason."""

from __future__ import annotations

from fastapi.testclient import TestClient

from enclave.clock import utcnow
from enclave.db.session import unit_of_work
from enclave.hub.breakglass import open_break_glass
from enclave.projects.tiers import Tier, TierPolicy, load_tiers
from enclave.users import get_user
from tests.integration.web.world import PREFIX

REASON = "rob's kernel hangs on every start, he asked for help (ticket 4711)"


def test_project_page_shows_members_who_opened_their_server_and_why(world, client: TestClient) -> None:
    base = load_tiers(world.policies_dir)
    tiers = TierPolicy(version=base.version, default_tier=base.default_tier, tiers={
        name: Tier(level=t.level, description=t.description, break_glass_minutes=30) for name, t in base.tiers.items()})
    page = client.get(f"{PREFIX}/projects/asthma", headers={"Authorization": "token t-ria"})
    assert page.status_code == 200 and "Access by admins" not in page.text
    with unit_of_work(world) as session:
        open_break_glass(session, get_user(session, "ada"), tiers, "rob/asthma", REASON, utcnow())
    for member in ("t-ria", "t-rob"):
        page = client.get(f"{PREFIX}/projects/asthma", headers={"Authorization": f"token {member}"})
        assert page.status_code == 200
        assert "Access by admins" in page.text and "admin ada opened rob&#39;s server at " in page.text
        assert "he asked for help (ticket 4711)" in page.text
    other = client.get(f"{PREFIX}/projects/diabetes", headers={"Authorization": "token t-eve"})
    assert other.status_code == 200 and "Access by admins" not in other.text
