"""The researcher console without a hub in front: the project page lists the member's
outbox (sidecars travel with their tables) and previews each file as it would leave; the
server controls check membership and record the request before the hub is asked."""

from __future__ import annotations

import json
import os

import pytest
from fastapi.testclient import TestClient

from enclave.audit import list_events
from enclave.config import Settings
from enclave.db.session import unit_of_work
from enclave.errors import PermissionDenied
from enclave.projects.lifecycle import ProjectAction
from enclave.projects.service import transition_project
from enclave.users import get_user
from enclave.web.servers import ServerEvent, request_server_start, request_server_stop
from tests.integration.web.jobs_steps import signed_in, xsrf_of
from tests.integration.web.world import PREFIX


def test_console_project_page_lists_the_outbox_without_sidecars(client: TestClient, world: Settings):
    outbox = world.workspaces_dir / "asthma" / "outbox"
    (outbox / "admissions.csv.evidence.json").write_text("{}")
    signed_in(client, "t-rob")
    page = client.get(PREFIX + "/projects/asthma").text
    assert "outbox/admissions.csv</code></a>" in page and "goes with the table" in page
    assert "admissions.csv.evidence.json" not in page
    # Without a hub to ask, the state is unknown and the hub's own start link stays.
    assert "badge-unknown" in page and 'href="/hub/spawn/rob/asthma"' in page
    signed_in(client, "t-rita")  # a reviewer sees the project, not its outbox
    assert "outbox/admissions.csv" not in client.get(PREFIX + "/projects/asthma").text


def test_console_a_file_name_that_is_not_utf8_is_listed_but_cannot_be_added(client: TestClient, world: Settings):
    """A member may give an outbox file any bytes as its name. The pages still render and
    show it (its stray bytes as \\xNN) with why it cannot be chosen; the API lists it the same
    way, and naming it (as JSON escapes or as the shown text) is refused in one line."""
    outbox = os.fsencode(world.workspaces_dir / "asthma" / "outbox")
    with open(os.path.join(outbox, b"counts-\xff.csv"), "wb") as out:
        out.write(b"region,count\nnorth,120\n")
    signed_in(client, "t-rob")
    page = client.get(PREFIX + "/projects/asthma")
    assert page.status_code == 200
    assert "<code>outbox/counts-\\xff.csv</code> <span class=\"muted\">(its name is not UTF-8" in page.text
    assert "outbox/admissions.csv</code></a>" in page.text  # the others as before
    headers = {"Authorization": "token t-rob"}
    listed = client.get(PREFIX + "/api/egress/outbox/asthma", headers=headers).json()
    odd = [f for f in listed if f["path"].startswith("counts-")]
    assert odd == [{"path": "counts-\\xff.csv", "size": 23, "evidence": False, "unusable": odd[0]["unusable"]}]
    assert "rename it" in odd[0]["unusable"]
    created = client.post(PREFIX + "/api/egress/requests", json={"project": "asthma", "title": "Counts"}, headers=headers)
    assert created.status_code == 201, created.text
    rid = created.json()["id"]
    request_page = client.get(f"{PREFIX}/egress/{rid}")
    assert request_page.status_code == 200 and "counts-\\xff.csv</code> <span class=\"muted\">" in request_page.text
    assert 'value="counts-\\xff.csv"' not in request_page.text
    shown = client.post(f"{PREFIX}/api/egress/requests/{rid}/files", headers=headers, json={
        "paths": ["counts-\\xff.csv"], "group": "main", "context": "counts by region", "controls": "none needed"})
    assert shown.status_code == 404 and len(shown.json()["detail"].splitlines()) == 1  # no such file
    escaped = client.post(f"{PREFIX}/api/egress/requests/{rid}/files", headers=headers, content=(
        b'{"paths": ["counts-\\udcff.csv"], "group": "main", "context": "counts by region", '
        b'"controls": "none needed"}'))
    assert escaped.status_code == 422 and len(escaped.json()["detail"].splitlines()) == 1  # not taken as a name


def test_console_outbox_preview_shows_the_canonical_form(client: TestClient, world: Settings):
    outbox = world.workspaces_dir / "asthma" / "outbox"
    notebook = {"cells": [{"cell_type": "code", "source": "print(1)", "execution_count": 1,
                           "metadata": {"secret_key": "x" * 8},
                           "outputs": [{"output_type": "stream", "name": "stdout", "text": "1\n"}]}],
                "metadata": {"kernelspec": {"name": "python3"}, "smuggled": "hidden payload"},
                "nbformat": 4, "nbformat_minor": 5}
    (outbox / "analysis.ipynb").write_text(json.dumps(notebook))
    signed_in(client, "t-ria")
    table = client.get(PREFIX + "/projects/asthma/outbox/file", params={"path": "admissions.csv"})
    assert table.status_code == 200 and "<td class=\"num muted\">2</td>" in table.text and "120" in table.text
    shown = client.get(PREFIX + "/projects/asthma/outbox/file", params={"path": "analysis.ipynb"}).text
    assert "print(1)" in shown and "hidden payload" not in shown and "secret_key" not in shown
    binary = outbox / "model.pkl"
    binary.write_bytes(b"\x80\x04K\x01.")
    refused = client.get(PREFIX + "/projects/asthma/outbox/file", params={"path": "model.pkl"})
    assert refused.status_code == 200 and "This file cannot be released" in refused.text


@pytest.mark.parametrize("path, status", [("../../diabetes/outbox/x.csv", 400), ("/etc/passwd", 400),
                                           ("missing.csv", 404), ("link.csv", 400), (".hidden.csv", 400)])
def test_console_outbox_preview_stays_in_the_outbox(client: TestClient, world: Settings, path: str, status: int):
    os.symlink("/etc/passwd", world.workspaces_dir / "asthma" / "outbox" / "link.csv")
    signed_in(client, "t-rob")
    response = client.get(PREFIX + "/projects/asthma/outbox/file", params={"path": path})
    assert response.status_code == status, response.text
    assert "root:" not in response.text and "Traceback" not in response.text


def test_console_outbox_preview_only_for_members(client: TestClient):
    for token in ("t-eve", "t-rita", "t-ada"):
        signed_in(client, token)
        assert client.get(PREFIX + "/projects/asthma/outbox/file", params={"path": "admissions.csv"}).status_code == 403


def test_console_server_requests_are_checked_and_audited(world: Settings):
    with unit_of_work(world) as s:
        rob = get_user(s, "rob")
        request_server_start(s, rob, "asthma")
        request_server_stop(s, rob, "asthma")
        with pytest.raises(PermissionDenied, match="not a member"):
            request_server_start(s, get_user(s, "eve"), "asthma")
        with pytest.raises(PermissionDenied, match="not a member"):
            request_server_stop(s, get_user(s, "eve"), "asthma")
        actions = [(e.action, e.actor, e.target) for e in list_events(s, project="asthma")
                   if e.action in set(ServerEvent)]
        assert actions == [(ServerEvent.START_REQUESTED, "rob", "server:rob/asthma"),
                           (ServerEvent.STOP_REQUESTED, "rob", "server:rob/asthma")]
        transition_project(s, get_user(s, "ada"), "asthma", ProjectAction.SUSPEND, reason="review")
        with pytest.raises(PermissionDenied, match="suspended, not active"):
            request_server_start(s, rob, "asthma")


def test_console_server_controls_refused_without_a_hub_and_for_outsiders(client: TestClient):
    signed_in(client, "t-rob")
    token = xsrf_of(client, "/projects/asthma/jobs")
    refused = client.post(PREFIX + "/projects/asthma/server/start", data={"_xsrf": token})
    assert refused.status_code == 409 and "cannot reach the hub" in refused.text
    assert client.post(PREFIX + "/projects/asthma/server/start").status_code == 403  # no XSRF token
    stopped = client.post(PREFIX + "/projects/asthma/server/stop", data={"_xsrf": token})
    assert stopped.status_code == 409 and "stop the server from the hub" in stopped.text
    # One handler takes the change: anything but start or stop is refused in one line.
    other = client.post(PREFIX + "/projects/asthma/server/restart", data={"_xsrf": token})
    assert other.status_code == 422 and "start" in other.text and "stop" in other.text and "Traceback" not in other.text
