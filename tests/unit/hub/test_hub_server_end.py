"""Why a server's container ended, as the hub records it with the stop (no Docker here:
the states are as the engine reports them; the real end is in tests/docker/hub/)."""

from __future__ import annotations

import pytest

from enclave.hub.spawner import container_end_reason

FINISHED = "2026-12-01T19:30:00.123456789Z"


@pytest.mark.parametrize(
    ("state", "reason"),
    [
        ({"Status": "exited", "Running": False, "OOMKilled": False, "ExitCode": 137, "Error": "",
          "FinishedAt": FINISHED}, "the server's container was ended by SIGKILL (exit code 137)"),
        ({"Status": "exited", "Running": False, "OOMKilled": True, "ExitCode": 137, "Error": ""},
         "the server's container was killed for lack of memory (out of memory, exit code 137)"),
        ({"Status": "exited", "Running": False, "OOMKilled": False, "ExitCode": 143, "Error": ""},
         "the server's container was ended by SIGTERM (exit code 143)"),
        ({"Status": "exited", "Running": False, "OOMKilled": False, "ExitCode": 1, "Error": ""},
         "the server's container exited with code 1"),
        ({"Status": "exited", "Running": False, "OOMKilled": False, "ExitCode": 0},
         "the server's container exited with code 0"),
        ({"Status": "exited", "Running": False, "ExitCode": 255},  # 127 is no signal
         "the server's container exited with code 255"),
        ({"Status": "dead", "Running": False, "OOMKilled": False, "ExitCode": 128,
          "Error": "failed to create task: mount denied\n"},
         "the server's container exited with code 128: failed to create task: mount denied"),
        ({}, "the server's container exited with code 0"),
    ],
)
def test_container_end_reason_names_memory_signal_or_exit_code(state, reason):
    assert container_end_reason(state) == reason
