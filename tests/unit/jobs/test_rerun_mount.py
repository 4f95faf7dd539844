"""The sandbox accepts exactly one writable mount besides the workspace: a rerun's own
output folder, at one fixed path; any other target under the home is still refused."""

import pytest

from enclave.errors import InvalidInput
from enclave.sandbox import RERUN_OUTPUT_PATH, ContainerPolicy, Mount, host_config


def test_rerun_output_mount_is_the_only_extra_writable_target(tmp_path):
    mounts = [Mount.workspace(tmp_path / "ws", read_only=True),
              Mount(source=str(tmp_path / "rerun"), target=RERUN_OUTPUT_PATH, read_only=False)]
    docker_mounts = host_config(ContainerPolicy(), mounts, job=True)["mounts"]
    assert [(m["Target"], m["ReadOnly"]) for m in docker_mounts] == [
        ("/home/jovyan/project", True), ("/home/jovyan/rerun-output", False)]
    for target in ("/home/jovyan/rerun-output/x", "/home/jovyan/other", "/home/jovyan", "/home/jovyan/rerun-output/.."):
        with pytest.raises(InvalidInput, match="is not allowed"):
            Mount(source=str(tmp_path), target=target, read_only=False)
