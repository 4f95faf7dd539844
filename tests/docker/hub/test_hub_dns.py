"""The real hub: its start-up log says what container DNS risks on this host
(CVE-2024-29018) and that the mitigation is applied, and a server it starts carries it.
The attack itself is tried in tests/docker/test_dns_exfiltration.py."""

from __future__ import annotations

from enclave import sandbox


def test_hub_startup_log_states_the_dns_risk_and_the_mitigation(hub):
    lines = [line for line in hub.log.read_text(errors="replace").splitlines() if "container DNS:" in line]
    assert len(lines) == 1, lines
    assert "CVE-2024-29018" in lines[0] and "mitigation applied" in lines[0]


def test_hub_server_container_names_only_its_own_loopback_as_nameserver(hub, client):
    response = hub.spawn("bob", "beta")
    assert response.status_code in (201, 202), response.text
    try:
        hub.wait_ready("bob", "beta")
        container = client.containers.get(hub.container_name("bob", "beta"))
        assert container.attrs["HostConfig"]["Dns"] == [sandbox.CONTAINER_NAMESERVER]
    finally:
        hub.stop("bob", "beta")
