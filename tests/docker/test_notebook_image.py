"""The notebook image itself, run under the sandbox spec: its tools, a batch job, and the
lockdown of the notebook server's download endpoints."""

from __future__ import annotations

import json
import os
import re
import subprocess
import urllib.error
import urllib.request
import uuid
from pathlib import Path

import jupyterhub
import pytest

from enclave.hub.browser_policy import load_browser_policy
from enclave.hub.lockdown import REFUSAL
from enclave.sandbox import ContainerPolicy, Mount, container_kwargs

from .conftest import PREFIX, REPO, Net, Sandboxes, ip_on, wait_for_http


def _pin(name: str) -> str:
    text = (REPO / "images" / "notebook" / "requirements.txt").read_text()
    return re.search(rf"^{name}==(\S+)$", text, re.M).group(1)


def test_image_runs_singleuser_and_lab(sandboxes: Sandboxes):
    code, out = sandboxes.run(
        ["bash", "-c", "jupyterhub-singleuser --help >/dev/null && echo singleuser-ok;"
         " jupyterhub --version; jupyter lab --version; python --version"]
    )
    assert code == 0, out
    lines = out.split()
    assert "singleuser-ok" in lines
    # The single-user server must speak the same hub API as the hub on the host.
    assert jupyterhub.__version__ in lines
    assert _pin("jupyterlab") in lines
    assert "3.13" in out


def test_image_has_the_research_libraries(sandboxes: Sandboxes):
    code, out = sandboxes.python(
        "import pandas, polars, pyarrow, papermill, statsmodels.api, pydantic, yaml, ipykernel\n"
        "import enclave.safe, enclave.disclosure\n"
        "print('versions', pandas.__version__, polars.__version__, pyarrow.__version__)\n"
    )
    assert code == 0, out
    assert f"versions {_pin('pandas')} {_pin('polars')} {_pin('pyarrow')}" in out


def test_image_batch_job_runs_under_sandbox(sandboxes: Sandboxes, workspace: Path, dataset: Path):
    """A papermill job (kernel, runtime files, outputs) works on the read-only system."""
    notebook = {
        "cells": [
            {"cell_type": "code", "metadata": {"tags": ["parameters"]}, "outputs": [], "execution_count": None,
             "source": "out = 'outbox/summary.csv'"},
            {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None,
             "source": "import pandas as pd\ndf = pd.read_csv('/data/cohort/cohort.csv')\n"
                       "df.groupby('sex').size().rename('n').to_csv(out)"},
        ],
        "metadata": {"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
        "nbformat": 4, "nbformat_minor": 5,
    }
    (workspace / "analysis.ipynb").write_text(json.dumps(notebook))
    code, out = sandboxes.run(
        ["papermill", "--no-progress-bar", "analysis.ipynb", "outbox/analysis-run.ipynb", "-p", "out",
         "outbox/by-sex.csv"],
        [Mount.workspace(workspace), Mount.dataset(dataset, "cohort")],
        timeout=180,
    )
    assert code == 0, out
    assert (workspace / "outbox" / "by-sex.csv").read_text().splitlines() == ["sex,n", "F,1", "M,1"]
    assert (workspace / "outbox" / "analysis-run.ipynb").exists()


@pytest.fixture(scope="module")
def server(client, image: str, internal: Net, tmp_path_factory: pytest.TempPathFactory):
    """`jupyter lab` in a sandboxed container with the image's own configuration, shared
    by the lockdown tests (they only read)."""
    workspace = tmp_path_factory.mktemp("lockdown") / "workspace"
    workspace.mkdir()
    os.chown(workspace, 1000, 100)
    (workspace / "cohort-copy.csv").write_text("age,sex\n34,F\n")
    (workspace / "notes.md").write_text("age,sex\n35,M\n")
    (workspace / "analysis.ipynb").write_text(
        json.dumps({"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5})
    )
    data = tmp_path_factory.mktemp("lockdown-data")
    (data / "cohort.csv").write_text("age,sex\n34,F\n")
    data.chmod(0o755)  # readable by the server, as a granted view is
    policy = ContainerPolicy(image=image, network=internal.name, mem_limit="1g", cpu_limit=1.0)
    token = uuid.uuid4().hex
    # The tier's settings, as the hub passes them: without them the server does not start.
    tier = load_browser_policy(REPO / "policies").for_tier("tier2")
    container = client.containers.run(
        command=["jupyter", "lab", "--ServerApp.ip=0.0.0.0", "--ServerApp.port=8888", "--no-browser",
                 f"--IdentityProvider.token={token}", *tier.server_args()],
        environment=tier.server_environment(),
        name=f"{PREFIX}lab-{uuid.uuid4().hex[:8]}", detach=True,
        **container_kwargs(policy, [Mount.workspace(workspace), Mount.dataset(data, "cohort")]),
    )
    try:
        base = f"http://{ip_on(container, internal.name)}:8888"
        wait_for_http(f"{base}/api/status", timeout=90)
        yield base, token
    except Exception:
        print(container.logs().decode(errors="replace"))
        raise
    finally:
        container.remove(force=True)


def _get(url: str, token: str, method: str = "GET") -> tuple[int, str]:
    request = urllib.request.Request(url, method=method, headers={"Authorization": f"token {token}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(errors="replace")


@pytest.mark.parametrize(
    "path, method",
    [
        ("/files/cohort-copy.csv", "GET"),
        ("/files/cohort-copy.csv?download=1", "GET"),
        ("/files/outbox/../cohort-copy.csv", "GET"),
        ("/files/cohort-copy.csv", "HEAD"),
        ("/files/", "GET"),
        ("/view/cohort-copy.csv", "GET"),
        ("/nbconvert/html/analysis.ipynb?download=true", "GET"),
        ("/nbconvert/script/analysis.ipynb", "GET"),
        ("/nbconvert/html", "POST"),
    ],
)
def test_lockdown_refuses_download_endpoints(server: tuple[str, str], path: str, method: str):
    base, token = server
    status, body = _get(base + path, token, method)
    assert status == 403, (status, body[:300])
    if method != "HEAD":
        assert body.strip() == REFUSAL
        assert "age,sex" not in body


def test_lockdown_leaves_the_contents_api_and_hides_lab_plugins(server: tuple[str, str]):
    base, token = server
    # Control: JupyterLab opens text files through the contents API...
    status, body = _get(f"{base}/api/contents/notes.md?content=1&format=text", token)
    assert status == 200 and "35,M" in body
    # ... but not a byte copy of a /data file (tests/docker/hub/test_hub_browser.py tries the rest).
    status, body = _get(f"{base}/api/contents/cohort-copy.csv?content=1&format=text", token)
    assert status == 403 and "copy of a file of /data" in body and "34,F" not in body
    # Data are mounted outside the server's root, so the contents API cannot reach them.
    status, _ = _get(f"{base}/api/contents/..%2F..%2F..%2Fdata%2Fcohort%2Fcohort.csv?content=1", token)
    assert status in (400, 403, 404)
    status, page = _get(f"{base}/lab", token)
    assert status == 200
    config = json.loads(re.search(r'id="jupyter-config-data" type="application/json">(.*?)</script>', page, re.S)
                        .group(1))
    for plugin in ("@jupyterlab/docmanager-extension:download", "@jupyterlab/filebrowser-extension:download",
                   "@jupyterlab/filebrowser-extension:open-browser-tab", "@jupyterlab/notebook-extension:export"):
        assert plugin in config["disabledExtensions"], config["disabledExtensions"]


def test_image_build_skipped_when_inputs_unchanged(client, image: str):
    """Right after a build, a second run finds the inputs hash unchanged and builds nothing."""

    def build() -> str:
        done = subprocess.run(
            ["bash", str(REPO / "scripts" / "build-images.sh")], capture_output=True, text=True, check=True,
            env=os.environ | {"ENCLAVE_NOTEBOOK_IMAGE": image},
        )
        return done.stderr

    build()  # catches up with any edit to the working tree since the session started
    before = client.images.get(image).id
    output = build()
    assert "[notebook] up to date" in output, output
    assert "docker build" not in output
    assert client.images.get(image).id == before
    assert len(client.images.get(image).labels["org.enclave.inputs"]) == 64


@pytest.mark.parametrize(
    "settings, extra, says",
    [
        ({}, [], "ENCLAVE_BROWSER_POLICY is not set"),
        ("tier2", ["--ServerApp.contents_manager_class="
                   "jupyter_server.services.contents.largefilemanager.AsyncLargeFileManager"],
         "not GuardedContentsManager"),
        ("tier2", ["--ServerApp.kernel_websocket_connection_class="
                   "jupyter_server.services.kernels.connection.channels.ZMQChannelsWebsocketConnection"],
         "not BoundedKernelWebsocketConnection"),
    ],
)
def test_lockdown_server_does_not_start_without_the_hubs_settings_or_with_other_classes(
    sandboxes: Sandboxes, settings, extra: list[str], says: str
):
    env = []
    if settings:
        env = [f"{k}={v}" for k, v in load_browser_policy(REPO / "policies").for_tier(settings)
               .server_environment().items()]
    code, out = sandboxes.run(["env", *env, "jupyter", "lab", "--no-browser", "--ServerApp.ip=127.0.0.1", *extra],
                              timeout=120)
    assert code != 0 and says in out, out[-2000:]
