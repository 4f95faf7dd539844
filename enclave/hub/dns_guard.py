"""The hub's start-up check of container DNS against CVE-2024-29018.

Docker engines before 23.0.11, 25.0.5 and 26.0.0 (Debian 12 ships 20.10.24) let the
embedded DNS resolver of a container on an ``--internal`` network forward queries from
the *host's* network namespace when the host's resolver is on a loopback address
(systemd-resolved's 127.0.0.53, a local dnsmasq): any name a workspace looks up, such as
``<data>.attacker.example``, would reach that resolver and the internet. The enclave's
mitigation is in :func:`enclave.sandbox.host_config`: every workspace and job container
names its own loopback as its only nameserver (``--dns 127.0.0.1``), which the engine
queries from inside the container's namespace, where nothing answers.

At start-up the hub reads the engine's version and the host's ``/etc/resolv.conf``
(read-only), says in its log what is at risk and that the mitigation is applied, and
refuses to start if the containers' configuration does not carry it (fail closed).
"""

from __future__ import annotations

import ipaddress
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from enclave import sandbox
from enclave.errors import PolicyError

CVE = "CVE-2024-29018"
RESOLV_CONF = Path("/etc/resolv.conf")


def engine_affected(version: str) -> bool:
    """Whether an engine of this version has the flaw; an unparsable version counts as
    affected (unknown means at risk)."""
    match = re.match(r"^v?(\d+)\.(\d+)\.(\d+)", version.strip())
    if match is None:
        return True
    v = tuple(int(x) for x in match.groups())
    return v < (23, 0, 11) or (24, 0, 0) <= v < (25, 0, 5)


def nameservers(resolv_conf: str) -> list[str]:
    """The ``nameserver`` addresses of a resolv.conf text, in order."""
    found = []
    for line in resolv_conf.splitlines():
        fields = line.split("#", 1)[0].split(";", 1)[0].split()
        if len(fields) >= 2 and fields[0] == "nameserver":
            found.append(fields[1])
    return found


def _is_loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address.split("%", 1)[0]).is_loopback
    except ValueError:
        return False


def mitigated(host_config: dict[str, Any]) -> bool:
    """Whether a container's host config names its own DNS servers, all on loopback: the
    engine then queries them inside the container's namespace, never the host's."""
    servers = host_config.get("dns") or []
    return bool(servers) and all(_is_loopback(s) for s in servers)


@dataclass(frozen=True)
class DnsReport:
    """What the start-up check found, and the line the hub logs."""

    engine_version: str
    affected: bool
    loopback_resolvers: list[str]
    mitigated: bool

    @property
    def at_risk(self) -> bool:
        return self.affected and bool(self.loopback_resolvers)

    @property
    def level(self) -> int:
        return logging.WARNING if self.at_risk else logging.INFO

    def message(self) -> str:
        fix = (f"mitigation applied: every workspace and job container gets nameserver "
               f"{sandbox.CONTAINER_NAMESERVER} (--dns), which the engine queries inside the container, "
               "where nothing answers")
        if not self.affected:
            return f"container DNS: Docker engine {self.engine_version} is not affected by {CVE}; {fix} anyway"
        if self.at_risk:
            servers = ", ".join(self.loopback_resolvers)
            return (f"container DNS: Docker engine {self.engine_version} is affected by {CVE} and this host's resolver "
                    f"is on loopback ({servers} in {RESOLV_CONF}): without the fix, names a workspace looks up would be "
                    f"forwarded from the host's network namespace past the --internal network (a way to send data "
                    f"out); {fix}")
        return (f"container DNS: Docker engine {self.engine_version} is affected by {CVE}; this host's resolver is "
                f"not on loopback, so it is not exposed now; {fix}, so a later change of resolver stays covered")


def check_container_dns(engine_version: str, resolv_conf: str | None,
                        host_configs: list[dict[str, Any]]) -> DnsReport:
    """Judge the engine, the host's resolver (``None``: unreadable, so taken as loopback)
    and the containers' host configs; raise PolicyError (one line) if any container would
    go without the mitigation."""
    loopback = ([f"unknown ({RESOLV_CONF} unreadable)"] if resolv_conf is None
                else [s for s in nameservers(resolv_conf) if _is_loopback(s)])
    report = DnsReport(
        engine_version=engine_version or "of unknown version",
        affected=engine_affected(engine_version or ""),
        loopback_resolvers=loopback,
        mitigated=all(mitigated(h) for h in host_configs) and bool(host_configs),
    )
    if not report.mitigated:
        raise PolicyError(
            f"container DNS: the workspace containers' configuration lacks the {CVE} mitigation "
            f"(dns: [{sandbox.CONTAINER_NAMESERVER}] in enclave.sandbox.host_config); the hub will not start "
            "until it is restored"
        )
    return report


def startup_check(client: Any, policy: sandbox.ContainerPolicy, log: logging.Logger,
                  resolv_conf: Path = RESOLV_CONF) -> DnsReport:
    """The hub's start-up check: engine version from ``client``, the host's resolver from
    ``resolv_conf`` (read only), the host configs servers and jobs are created with. Logs
    the finding; raises PolicyError when the mitigation is missing."""
    try:
        version = str(client.version().get("Version", ""))
    except Exception:  # noqa: BLE001 - any failure means the version is unknown: at risk
        version = ""
    try:
        text: str | None = resolv_conf.read_text(errors="replace")
    except OSError:
        text = None
    configs = [sandbox.host_config(policy, []), sandbox.host_config(policy, [], job=True) | {"network_mode": "none"}]
    report = check_container_dns(version, text, configs)
    log.log(report.level, report.message())
    return report


def startup_check_or_exit(client: Any, policy: sandbox.ContainerPolicy, log: logging.Logger,
                          resolv_conf: Path = RESOLV_CONF) -> DnsReport:
    """:func:`startup_check` for the hub's configuration: a missing mitigation stops the
    hub with one line."""
    try:
        return startup_check(client, policy, log, resolv_conf)
    except PolicyError as exc:
        raise SystemExit(f"the hub cannot start: {exc}") from None
