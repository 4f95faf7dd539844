"""The hub's start-up check of container DNS (CVE-2024-29018), without Docker: what it
says for each engine and resolver, and that it refuses a configuration without the fix."""

from __future__ import annotations

import logging

import pytest

from enclave import sandbox
from enclave.errors import PolicyError
from enclave.hub.dns_guard import check_container_dns, engine_affected, mitigated, nameservers

DEBIAN_LOOPBACK = "# managed by systemd-resolved\nnameserver 127.0.0.53\noptions edns0 trust-ad\nsearch lan\n"
PLAIN = "nameserver 10.255.255.53\n"


@pytest.mark.parametrize("version, affected", [
    ("20.10.24+dfsg1", True), ("23.0.10", True), ("23.0.11", False), ("24.0.9", True), ("25.0.4", True),
    ("25.0.5", False), ("26.0.0", False), ("27.3.1", False), ("", True), ("nonsense", True),
])
def test_dns_guard_knows_which_engines_are_affected(version: str, affected: bool):
    assert engine_affected(version) is affected


def test_dns_guard_reads_nameservers_and_ignores_comments():
    assert nameservers(DEBIAN_LOOPBACK + "#nameserver 1.2.3.4\nnameserver ::1 ; local\n") == ["127.0.0.53", "::1"]


def _configs() -> list[dict]:
    policy = sandbox.ContainerPolicy()
    return [sandbox.host_config(policy, []), sandbox.host_config(policy, [], job=True) | {"network_mode": "none"}]


def test_dns_guard_warns_plainly_on_an_affected_engine_with_a_loopback_resolver():
    report = check_container_dns("20.10.24+dfsg1", DEBIAN_LOOPBACK, _configs())
    assert report.at_risk and report.level == logging.WARNING
    text = report.message()
    for said in ("20.10.24", "CVE-2024-29018", "127.0.0.53", "host's network namespace", "mitigation applied",
                 "nameserver 127.0.0.1"):
        assert said in text, said
    assert "\n" not in text


def test_dns_guard_informs_when_not_exposed_or_not_affected():
    calm = check_container_dns("20.10.24+dfsg1", PLAIN, _configs())
    assert not calm.at_risk and calm.level == logging.INFO and "not exposed now" in calm.message()
    fixed = check_container_dns("26.1.0", DEBIAN_LOOPBACK, _configs())
    assert not fixed.at_risk and "not affected" in fixed.message()
    unreadable = check_container_dns("20.10.24", None, _configs())
    assert unreadable.at_risk and "unreadable" in unreadable.message()


def test_dns_guard_refuses_to_start_without_the_mitigation():
    assert all(mitigated(c) for c in _configs())
    without = [{k: v for k, v in c.items() if k != "dns"} for c in _configs()]
    for bad in (without, [c | {"dns": ["10.255.255.53"]} for c in _configs()], []):
        with pytest.raises(PolicyError, match="CVE-2024-29018 mitigation") as refused:
            check_container_dns("26.1.0", PLAIN, bad)
        assert "\n" not in str(refused.value)
