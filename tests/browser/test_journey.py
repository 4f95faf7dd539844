"""The whole journey in Chromium against a real JupyterHub (issue #6; the "done when" of #3).

The demo enclave (``enclave.demo.setup.setup_demo``) in a temporary ENCLAVE_HOME, the
repository's jupyterhub_config.py on free loopback ports, a test-only internal network
and container prefix, the enforcer running as in production. Then, through the pages
only: ada signs in (a wrong code first), starts the cardio server from the console, runs
a notebook in JupyterLab that saves a safe table to the outbox, asks for its egress;
rita and rex approve it and one releases it; ada downloads the zip and the test verifies
the signed record; the public register lists cardio; admin suspends cardio and the
enforcer stops ada's server. Screenshots: journey-*.png in ENCLAVE_SCREENSHOTS.
"""

from __future__ import annotations

import calendar
import hashlib
import json
import os
import re
import secrets
import shutil
import subprocess
import time
import uuid
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import nbformat
import onetimepass
import pytest
import yaml

from sqlalchemy import select

from enclave.config import Settings
from enclave.db.models import AuditEvent
from enclave.db.session import unit_of_work, upgrade
from enclave.demo.setup import current_code, setup_demo
from enclave.egress.release import verify_release
from enclave.egress.signing import PUBLIC_NAME
from enclave.hub.access import NOTEBOOK_GID, NOTEBOOK_UID
from enclave.sandbox import release_host_access
from tests.browser.test_web_consoles import PREFIX as CONSOLE, shot
from tests.hub_support import stop_hub_process
from tests.ports import free_port

docker = pytest.importorskip("docker")

pytestmark = [pytest.mark.browser, pytest.mark.docker, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
# Not another suite's prefix: those sessions remove everything named with theirs. Each
# session adds its own tag, since people sharing the machine may run this test at once.
NAME_PREFIX = "enclave-journey-"
SESSION = f"{NAME_PREFIX}{uuid.uuid4().hex[:6]}-"
LEFTOVER_AGE = 30 * 60  # seconds: older journey containers are a crashed session's
OUTPUT = "deprivation_by_sex.csv"
NOTEBOOK = "notebooks/journey.ipynb"
ENFORCE_WAIT = 90  # seconds; the enforcer runs every 20 s

# The researcher's analysis: a reproducible query of the project's read-only view, a checked
# table saved to the outbox by the safe library (with evidence the enclave re-runs on submit).
CELLS = [
    "import polars as pl\n"
    "from enclave.safe import crosstab, query\n"
    "frame = query('demo', 'patients').filter(pl.col('sex').is_in(['F', 'M'])).with_columns(\n"
    "    deprivation=pl.when(pl.col('deprivation_decile') <= 5).then(pl.lit('1-5')).otherwise(pl.lit('6-10')),\n"
    ").select('sex', 'deprivation')\n"
    "result = crosstab(frame, index='deprivation', columns='sex')\n"
    "print('status:', result.status)\n"
    "result.table",
    f"result.save('/home/jovyan/project/outbox/{OUTPUT}')\n"
    "print('saved')",
]


@dataclass
class Hub:
    url: str
    api: httpx.Client  # the hub REST API with a test service token (read-only scopes)
    settings: Settings
    log: Path

    def log_tail(self, chars: int = 6000) -> str:
        return self.log.read_text(errors="replace")[-chars:] if self.log.exists() else "(no hub log)"

    def servers(self, user: str) -> dict:
        response = self.api.get(f"users/{user}")
        assert response.status_code == 200, response.text
        return response.json().get("servers", {})


def _age(created: str) -> float:
    """Seconds since an engine timestamp such as 2026-11-22T11:39:39.05Z."""
    return time.time() - calendar.timegm(time.strptime(created[:19], "%Y-%m-%dT%H:%M:%S"))


def _remove(client, prefix: str, older_than: float = -1) -> None:  # type: ignore[no-untyped-def]
    """Remove containers and networks named ``prefix``... (and older than ``older_than`` s)."""
    for container in client.containers.list(all=True, filters={"name": prefix}):
        if container.name.startswith(prefix) and _age(container.attrs["Created"]) > older_than:
            container.remove(force=True)
    for network in client.networks.list(filters={"name": prefix}):
        if network.name.startswith(prefix) and _age(network.attrs["Created"]) > older_than:
            try:
                release_host_access(client, network.name)
                network.remove()
            except Exception:  # noqa: BLE001 - best effort
                pass


def _write_notebook(settings: Settings) -> None:
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in CELLS]
    path = settings.workspaces_dir / "cardio" / NOTEBOOK
    nbformat.write(notebook, str(path))
    os.chown(path, NOTEBOOK_UID, NOTEBOOK_GID)


@pytest.fixture(scope="module")
def hub(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[Hub]:
    subprocess.run(["bash", str(REPO / "scripts" / "ensure-docker.sh")], check=True)
    client = docker.from_env()
    image = os.environ.get("ENCLAVE_NOTEBOOK_IMAGE", "enclave-notebook:latest")
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        subprocess.run(["bash", str(REPO / "scripts" / "build-images.sh")], check=True)
    _remove(client, NAME_PREFIX, older_than=LEFTOVER_AGE)

    work = tmp_path_factory.mktemp("journey")
    home, policies = work / "home", work / "policies"
    shutil.copytree(REPO / "policies", policies)
    containers = yaml.safe_load((policies / "containers.yaml").read_text())
    containers.update(image=image, network=f"{SESSION}net")
    (policies / "containers.yaml").write_text(yaml.safe_dump(containers))
    settings = Settings.from_env({"ENCLAVE_HOME": str(home), "ENCLAVE_POLICIES": str(policies)})
    upgrade(settings)
    setup_demo(settings, patients=300)
    _write_notebook(settings)

    token = secrets.token_hex(32)
    config = work / "hub_journey_config.py"
    config.write_text(
        f"load_subconfig({str(REPO / 'jupyterhub_config.py')!r})\n"
        f"c.EnclaveSpawner.prefix = {SESSION + 'nb'!r}\n"
        f"c.JupyterHub.services.append({{'name': 'journey-observer', 'api_token': {token!r}}})\n"
        "c.JupyterHub.load_roles.append({'name': 'journey-observer-role', 'services': ['journey-observer'],\n"
        "    'scopes': ['list:users', 'read:users', 'read:servers']})\n"
    )
    ports = {name: str(free_port()) for name in
             ("ENCLAVE_HUB_PORT", "ENCLAVE_HUB_API_PORT", "ENCLAVE_PROXY_API_PORT", "ENCLAVE_WEB_PORT")}
    env = {**os.environ, "ENCLAVE_HOME": str(home), "ENCLAVE_POLICIES": str(policies), **ports}
    env.pop("ENCLAVE_DB_URL", None)
    log = work / "hub.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(REPO / ".venv" / "bin" / "jupyterhub"), "-f", str(config)], cwd=work, env=env,
                                stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{ports['ENCLAVE_HUB_PORT']}"
    api = httpx.Client(base_url=f"{url}/hub/api/", headers={"Authorization": f"token {token}"}, timeout=30,
                       trust_env=False)
    hub = Hub(url, api, settings, log)
    try:
        deadline = time.monotonic() + 90
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the hub exited during start-up:\n{hub.log_tail()}")
            try:
                # The web service too: the journey starts on its pages.
                if api.get("").status_code == 200 and httpx.get(
                        f"{url}{CONSOLE}/register", timeout=5, trust_env=False).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"the hub or its web service did not answer within 90 s:\n{hub.log_tail()}")
            time.sleep(0.5)
        yield hub
    finally:
        api.close()
        stop_hub_process(proc)  # the hub stops its servers and services; then the rest of its group
        if request.session.testsfailed:
            for container in client.containers.list(all=True, filters={"name": SESSION}):
                print(f"\n--- logs of {container.name} ---\n{container.logs(tail=80).decode(errors='replace')}")
            print(f"\n--- hub log tail ({log}) ---\n{hub.log_tail(20000)}")
        _remove(client, SESSION)
        client.close()


def _wrong_code(secret: str) -> str:
    """A six-digit code the sign-in will not accept now (nor one step either side)."""
    now = int(time.time())
    near = {f"{onetimepass.get_totp(secret, clock=now + d):06d}" for d in range(-60, 61, 30)}
    return next(code for code in ("000000", "111111", "222222") if code not in near)


def _sign_in(page, hub: Hub, name: str, code: str | None = None) -> None:  # type: ignore[no-untyped-def]
    """Fill the hub's sign-in form (password and one-time code) and submit it."""
    account = _accounts(hub)[name]
    page.goto(f"{hub.url}/hub/login")
    page.fill("#username_input", name)
    page.fill("#password_input", account["password"])
    page.fill("#otp_input", code or current_code(hub.settings, name))
    page.click("#login_submit")


def _accounts(hub: Hub) -> dict[str, dict[str, str]]:
    return json.loads((hub.settings.home / "demo-accounts.json").read_text())


def _signed_in(browser, hub: Hub, name: str):  # type: ignore[no-untyped-def]
    """A new browser context signed in as ``name``; returns its page on the consoles' start page."""
    context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    _sign_in(page, hub, name)
    _wait_signed_in(page)
    return page


def _wait_signed_in(page) -> None:  # type: ignore[no-untyped-def]
    """The hub sends a signed-in person on from the login page (to the consoles)."""
    page.wait_for_url(re.compile(rf".*{CONSOLE}/.*"), timeout=30_000)


def _run_all_cells(page, outbox_file: Path, timeout: float = 180) -> None:  # type: ignore[no-untyped-def]
    """Run > Run All Cells in JupyterLab, then wait for the output on the host."""
    # The status bar says "Python 3 (ipykernel) | Idle" once the kernel has started.
    page.locator(".jp-StatusBar-Widget", has_text=re.compile(r"Python 3.*\| Idle")).first.wait_for(timeout=120_000)
    news = page.get_by_role("button", name="No", exact=True)  # JupyterLab's news prompt
    if news.count():
        news.first.click()
    page.locator(".lm-MenuBar-item", has_text="Run").first.click()
    page.get_by_role("menuitem", name="Run All Cells", exact=True).click()
    deadline = time.monotonic() + timeout
    while not outbox_file.exists():
        errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']")
        if errors.count() and "Error" in errors.all_inner_texts()[-1]:
            raise AssertionError(f"the notebook failed:\n{errors.all_inner_texts()}")
        if time.monotonic() > deadline:
            outputs = page.locator(".jp-OutputArea-output").all_inner_texts()
            raise AssertionError(f"{outbox_file.name} did not appear within {timeout} s; outputs: {outputs}")
        time.sleep(1)


def _enforced_stops(settings: Settings) -> list[AuditEvent]:
    with unit_of_work(settings) as session:
        events = session.scalars(select(AuditEvent).where(AuditEvent.action == "hub.server_enforced_stop")).all()
        session.expunge_all()
        return list(events)


def test_journey_from_sign_in_to_release_and_suspension(browser, hub: Hub, tmp_path: Path) -> None:
    settings = hub.settings
    outbox = settings.workspaces_dir / "cardio" / "outbox"
    console = f"{hub.url}{CONSOLE}"

    # 1. ada signs in with password and one-time code; a wrong code is refused first.
    ada_context = browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    ada = ada_context.new_page()
    _sign_in(ada, hub, "ada", _wrong_code(_accounts(hub)["ada"]["totp_secret"]))
    refusal = ada.get_by_text("wrong user name, password or authenticator code")
    refusal.wait_for(timeout=30_000)
    assert "/hub/login" in ada.url
    shot(ada, "journey-01-wrong-code")
    _sign_in(ada, hub, "ada")
    _wait_signed_in(ada)

    # 2. Signing in leads to the consoles; the cardio server starts from there and JupyterLab loads.
    assert ada.get_by_role("heading", name="Welcome, ada").is_visible()
    shot(ada, "journey-02-console")
    ada.locator("a.card", has_text="My projects").click()
    cardio = ada.locator("article", has=ada.locator("#p-cardio"))
    cardio.get_by_role("link", name="Start or open notebook server").click()
    # The project's server starts at once: its name is its project, so there is no form.
    ada.wait_for_url(f"{hub.url}/user/ada/cardio/lab*", timeout=180_000)
    ada.locator("#jp-main-dock-panel").wait_for(timeout=120_000)
    assert hub.servers("ada")["cardio"]["ready"]

    # 3. The notebook runs in JupyterLab (Run > Run All Cells) and saves a safe table.
    ada.goto(f"{hub.url}/user/ada/cardio/lab/tree/{NOTEBOOK}")
    ada.locator(".jp-Notebook .jp-Cell").first.wait_for(timeout=120_000)
    _run_all_cells(ada, outbox / OUTPUT)
    ada.get_by_text("saved", exact=True).wait_for(timeout=60_000)
    assert ada.get_by_text("status: pass").is_visible()
    shot(ada, "journey-04-jupyterlab")
    sidecar = outbox / f"{OUTPUT}.evidence.json"
    assert sidecar.is_file(), f"no evidence sidecar beside {OUTPUT}: {sorted(p.name for p in outbox.iterdir())}"
    header = (outbox / OUTPUT).read_text().splitlines()[0]
    assert "deprivation" in header and "F" in header and "M" in header, header

    # 4. An egress request in the console: the file, context and controls, submit; findings shown.
    ada.goto(f"{console}/egress")
    ada.locator("select#project").select_option("cardio")
    ada.fill("#title", "Deprivation by sex")
    ada.get_by_role("button", name="Start a request").click()
    ada.wait_for_url(f"{console}/egress/*", timeout=30_000)
    request_url = ada.url.split("?")[0]
    request_id = int(request_url.rsplit("/", 1)[1])
    ada.locator(f"input[name='paths'][value='{OUTPUT}']").check()
    ada.fill("#group", "table1")
    ada.fill("#context", "Patients by deprivation (deciles 1-5, 6-10) and sex; all cardio patients in the view.")
    ada.fill("#controls", "Counts checked by enclave.safe against the minimum cell count; no cell suppressed.")
    shot(ada, "journey-05-egress-files")
    ada.get_by_role("button", name="Add selected files").click()
    ada.locator(".file-entry", has_text=f"outbox/{OUTPUT}").wait_for(timeout=30_000)
    submitted = (outbox / OUTPUT).read_bytes()
    ada.get_by_role("button", name="Submit for review").click()
    ada.wait_for_url(f"{request_url}?done=submitted", timeout=60_000)
    entry = ada.locator(".file-entry", has_text=f"outbox/{OUTPUT}")
    assert ada.locator(".page-head .badge").inner_text().lower() == "in review"
    # The automated check's verdict: the enclave re-ran the table's query and got the same cells.
    assert entry.locator(".badge-pass").first.is_visible(), entry.inner_text()
    assert entry.get_by_text("evidence reproduced", exact=False).is_visible(), entry.inner_text()
    assert entry.locator(".badge-review, .badge-fail").count() == 0, entry.inner_text()
    shot(ada, "journey-06-egress-findings")

    # 5. rita and rex, each in their own context, approve the file; rex releases.
    for name in ("rita", "rex"):
        reviewer = _signed_in(browser, hub, name)
        reviewer.goto(f"{console}/review")
        reviewer.get_by_role("link", name="Deprivation by sex").click()
        reviewer.get_by_role("link", name=OUTPUT).click()
        assert reviewer.locator("table.data tbody tr").count() == 2  # the table is shown to judge
        reviewer.fill("#comment", f"{name}: counts well above the threshold; safe.")
        if name == "rita":
            shot(reviewer, "journey-07-review-file")
        reviewer.get_by_role("button", name="Approve").click()
        reviewer.wait_for_url(f"{console}/review/{request_id}?done=voted", timeout=30_000)
        if name == "rex":
            assert reviewer.locator(".page-head .badge").inner_text().lower() == "approved"
            shot(reviewer, "journey-08-approved")
            reviewer.get_by_role("link", name="Release…").click()  # an irreversible step: confirmed first
            reviewer.get_by_role("button", name="Release for good").click()
            reviewer.wait_for_url(f"{console}/review?done=released", timeout=60_000)
        reviewer.context.close()

    # 6. ada downloads the release; the record verifies and the bytes are those submitted.
    ada.goto(request_url)
    assert ada.locator(".page-head .badge").inner_text().lower() == "released"
    shot(ada, "journey-09-released")
    with ada.expect_download(timeout=60_000) as download:
        ada.get_by_role("link", name="Download released files and release record").click()
    archive = tmp_path / "release.zip"
    download.value.save_as(archive)
    unpacked = tmp_path / "release"
    with zipfile.ZipFile(archive) as zf:
        zf.extractall(unpacked)
    records = list(unpacked.rglob("release.json"))
    assert len(records) == 1, sorted(str(p.relative_to(unpacked)) for p in unpacked.rglob("*"))
    report = verify_release(records[0], settings.keys_dir / PUBLIC_NAME)
    assert report.ok and report.files_checked == 1, report.problems
    released = records[0].parent / "files" / OUTPUT
    assert released.read_bytes() == submitted
    assert report.record["files"][0]["sha256"] == hashlib.sha256(submitted).hexdigest()
    assert {r["reviewer"] for r in report.record["files"][0]["reviews"]} == {"rita", "rex"}
    assert not (records[0].parent / "files" / f"{OUTPUT}.evidence.json").exists()  # never released

    # 8 (before the suspension, which the register then shows): the public register.
    public = browser.new_context(viewport={"width": 1280, "height": 900}).new_page()
    public.goto(f"{console}/register")
    entry = public.locator("article.register-entry", has=public.locator("#reg-cardio"))
    assert entry.get_by_role("heading", name="Heart failure readmissions").is_visible()
    assert entry.get_by_text("Which patients admitted with heart failure come back to hospital").is_visible()
    assert entry.locator("div", has_text="Released outputs").locator("dd").inner_text() == "1"
    shot(public, "journey-10-register")

    # 7. admin suspends cardio; the enforcer stops ada's server within its interval.
    assert "cardio" in hub.servers("ada")
    admin = _signed_in(browser, hub, "admin")
    admin.goto(f"{console}/admin/projects/cardio")
    admin.fill("#reason-suspend", "Data sharing agreement under review")
    admin.get_by_role("button", name="Suspend").click()
    admin.wait_for_url(f"{console}/admin/projects/cardio?done=suspend", timeout=30_000)
    assert admin.locator(".badge-suspended").first.is_visible()
    shot(admin, "journey-11-suspended")
    deadline = time.monotonic() + ENFORCE_WAIT
    while "cardio" in hub.servers("ada"):
        if time.monotonic() > deadline:
            raise AssertionError(f"ada's cardio server still runs {ENFORCE_WAIT} s after the suspension:\n"
                                 f"{hub.log_tail()}")
        time.sleep(2)
    # The enforcer did it (its audit event follows the stop), for the suspension.
    deadline = time.monotonic() + 15
    while not (stops := _enforced_stops(settings)) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert [(e.project, e.target) for e in stops] == [("cardio", "server:ada/cardio")], stops
    assert "suspended" in stops[0].details["reason"], stops[0].details
    assert docker.from_env().containers.list(filters={"name": f"{SESSION}nb-ada--cardio"}) == []
    public.reload()
    suspended = public.locator("article.register-entry", has=public.locator("#reg-cardio"))
    assert suspended.locator(".reg-status").inner_text().lower() == "suspended"  # listed, and marked as such
    assert "Data sharing agreement" not in public.content()  # the reason may name people: not published
    ada_context.close()
    public.context.close()
    admin.context.close()
