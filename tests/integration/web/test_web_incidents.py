"""The admin console's incidents page and the egress view: admins only, clearing needs the
session's XSRF token and a note, and is audited."""

from __future__ import annotations

import json
import re

from fastapi.testclient import TestClient

from enclave.audit import list_events
from enclave.db.session import unit_of_work
from enclave.enums import IncidentKind, IncidentStatus
from enclave.incidents import check_not_suspended, open_incident
from enclave.meter.client import state_path
from enclave.users import get_user
from tests.integration.web.test_web_pages_security import signed_in
from tests.integration.web.world import PREFIX


def _incident(world) -> int:
    with unit_of_work(world) as session:
        return open_incident(session, "enclave-meter", IncidentKind.EGRESS_VOLUME, user="rob", project="asthma",
                             server="asthma", details={"sent_in_window": 123456, "max_bytes_per_window": 100000},
                             suspend_user=True).id


def _meter_state(world) -> None:
    path = state_path(world)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"snapshot": {"at": 1_800_000_000, "routes": [], "servers": [{
        "user": "rob", "server": "asthma", "running": True, "tripped": False, "tier": "tier2",
        "window_seconds": 600, "max_bytes_per_window": 100000, "sent_window": 54321, "sent_hour": 60000,
        "sent_day": 70000, "received_day": 99, "sent_total": 70000, "received_total": 99, "last_seen": 0}]}}))


def test_incidents_page_and_dashboard_show_incidents_and_egress_to_admins_only(world, client: TestClient):
    incident = _incident(world)
    _meter_state(world)
    signed_in(client, "t-ada")
    page = client.get(PREFIX + "/admin/incidents")
    assert page.status_code == 200
    assert f"/admin/incidents/{incident}/clear" in page.text and "access suspended" in page.text
    assert "54,321" in page.text and "100,000 B / 600 s" in page.text
    board = client.get(PREFIX + "/admin")
    assert board.status_code == 200 and "open incidents" in board.text and "54,321" in board.text
    api = client.get(PREFIX + "/api/meter", headers={"Authorization": "token t-ada"}).json()
    assert api["servers"][0]["sent_window"] == 54321
    for token in ("t-rob", "t-mal"):
        signed_in(client, token)
        assert client.get(PREFIX + "/admin/incidents").status_code == 403
        assert client.get(PREFIX + "/api/incidents", headers={"Authorization": f"token {token}"}).status_code == 403
        assert client.get(PREFIX + "/api/meter", headers={"Authorization": f"token {token}"}).status_code == 403


def test_incidents_clear_needs_xsrf_and_note_and_is_audited(world, client: TestClient):
    incident = _incident(world)
    signed_in(client, "t-ada")
    url = PREFIX + f"/admin/incidents/{incident}/clear"
    assert client.post(url, data={"note": "fine"}, follow_redirects=False).status_code == 403  # no XSRF token
    xsrf = re.search(r'name="_xsrf" value="([0-9a-f]+)"', client.get(PREFIX + "/admin/incidents").text).group(1)
    empty = client.post(url, data={"note": "", "_xsrf": xsrf}, follow_redirects=False)
    assert empty.status_code == 400 and "give a note" in empty.text
    assert '<p class="field-error" id="note-error">' in empty.text and "Open and recent incidents" in empty.text
    done = client.post(url, data={"note": "a plot, not data", "_xsrf": xsrf}, follow_redirects=False)
    assert done.status_code == 303
    with unit_of_work(world) as session:
        check_not_suspended(session, get_user(session, "rob"))
        [event] = [e for e in list_events(session, action="incident.clear")]
        assert event.actor == "ada" and event.details["note"] == "a plot, not data"
    again = client.get(PREFIX + "/api/incidents", params={"status": IncidentStatus.CLEARED.value},
                       headers={"Authorization": "token t-ada"}).json()
    assert [i["id"] for i in again] == [incident] and again[0]["cleared_by"] == "ada"
