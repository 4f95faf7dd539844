"""The hub starts on a restored home: a busy enclave is backed up, restored into a fresh
folder, and a real JupyterHub (the repository's jupyterhub_config.py, its proxy and its
services) is started on the restored home, on free loopback ports. Its REST API answers,
and the enclave's web service it runs serves the restored database through the proxy."""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path

import httpx
import pytest
import yaml

from enclave.backup.create import create_backup
from enclave.backup.restore import restore_backup
from enclave.db.session import unit_of_work
from enclave.sandbox import release_host_access
from enclave.users import get_user
from tests.hub_support import stop_hub_process

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "tests" / "integration" / "backup"))
from backup_world import PASSPHRASE, make_enclave  # noqa: E402
from tests.ports import free_port  # noqa: E402

PREFIX = "enclave-restoretest-"
START_TIMEOUT = 300  # seconds: a slow, shared machine starts a hub and its services slowly


def _wait(what: str, check, proc: subprocess.Popen, log: Path) -> httpx.Response:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if proc.poll() is not None:
            pytest.fail(f"the hub exited while waiting for {what}:\n{log.read_text()[-4000:]}")
        try:
            response = check()
            if response.status_code == 200:
                return response
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"{what} did not answer within {START_TIMEOUT} s:\n{log.read_text()[-4000:]}")
        time.sleep(0.5)


def test_backup_restored_home_starts_the_hub_and_its_api_answers(client, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    network = f"{PREFIX}{uuid.uuid4().hex[:8]}"
    policies = tmp_path / "policies"
    shutil.copytree(REPO / "policies", policies)
    containers = yaml.safe_load((policies / "containers.yaml").read_text())
    containers["network"] = network  # this test's own internal network, removed at the end
    (policies / "containers.yaml").write_text(yaml.safe_dump(containers))
    for name in ("ENCLAVE_DB_URL", "ENCLAVE_USER"):
        monkeypatch.delenv(name, raising=False)
    world = make_enclave(tmp_path / "home", policies)
    with unit_of_work(world.settings) as s:
        admin = get_user(s, "admin")
    create_backup(world.settings, admin, tmp_path / "dest", passphrase=PASSPHRASE)
    restored = restore_backup(tmp_path / "dest", tmp_path / "restored", passphrase=PASSPHRASE)
    assert restored.policies_dir is not None
    shutil.rmtree(world.settings.home)  # nothing of the old home is left to lean on

    token = secrets.token_hex(32)
    config = tmp_path / "hub_config.py"
    config.write_text(
        f"load_subconfig({str(REPO / 'jupyterhub_config.py')!r})\n"
        f"c.JupyterHub.services.append({{'name': 'restore-check', 'api_token': {token!r}}})\n"
        "c.JupyterHub.load_roles.append({'name': 'restore-check-role', 'services': ['restore-check'],\n"
        "    'scopes': ['list:users', 'read:users', 'list:services', 'read:services']})\n"
    )
    ports = {name: free_port() for name in
             ("ENCLAVE_HUB_PORT", "ENCLAVE_HUB_API_PORT", "ENCLAVE_PROXY_API_PORT", "ENCLAVE_WEB_PORT")}
    env = {k: v for k, v in os.environ.items() if not k.startswith("ENCLAVE_")}
    env.update(ENCLAVE_HOME=str(restored.home), ENCLAVE_POLICIES=str(restored.policies_dir), PYTHONPATH=str(REPO),
               **{k: str(v) for k, v in ports.items()})
    log = tmp_path / "hub.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(REPO / ".venv" / "bin" / "jupyterhub"), "-f", str(config)], cwd=tmp_path,
                                env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{ports['ENCLAVE_HUB_PORT']}"
    api = httpx.Client(base_url=f"{url}/hub/api/", headers={"Authorization": f"token {token}"}, timeout=60,
                       trust_env=False)
    try:
        version = _wait("the hub's API", lambda: api.get(""), proc, log)
        assert "version" in version.json()
        services = api.get("services")
        assert services.status_code == 200, services.text
        assert {"enclave", "enclave-enforcer"} <= set(services.json())
        assert api.get("users").status_code == 200
        # The web service the hub runs reads the restored database: its public register
        # lists the restored project.
        register = _wait("the enclave's register", lambda: httpx.get(f"{url}/services/enclave/register", timeout=60,
                                                                     trust_env=False), proc, log)
        assert "Heart study" in register.text
        # The hub keeps its own state in the restored home.
        assert (restored.home / "hub" / "jupyterhub.sqlite").is_file()
    finally:
        api.close()
        stop_hub_process(proc)
        for net in client.networks.list(filters={"name": network}):
            if net.name == network:
                release_host_access(client, network)
                net.remove()
