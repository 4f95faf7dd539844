"""An attacker for race tests: a process that swaps two names with
``renameat2(RENAME_EXCHANGE)`` in a tight loop, as a member could from inside a workspace
container (there the link's target is another project's host path, which the member reads
from ``/proc/self/mountinfo``)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

_SWAPPER = r"""
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
a, b, seconds = os.fsencode(sys.argv[1]), os.fsencode(sys.argv[2]), float(sys.argv[3])
AT_FDCWD, RENAME_EXCHANGE = -100, 2
print("ready", flush=True)
swaps, end = 0, time.monotonic() + seconds
while time.monotonic() < end:
    if libc.renameat2(AT_FDCWD, a, AT_FDCWD, b, RENAME_EXCHANGE) != 0:
        sys.exit(f"renameat2 failed: {os.strerror(ctypes.get_errno())}")
    swaps += 1
"""


@contextmanager
def swapping(a: Path, b: Path, seconds: float = 60.0) -> Iterator[subprocess.Popen[str]]:
    """Swap ``a`` and ``b`` continually while the block runs (at most ``seconds``)."""
    proc = subprocess.Popen([sys.executable, "-c", _SWAPPER, str(a), str(b), str(seconds)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready", proc.stderr.read()
        yield proc
        assert proc.poll() is None, f"the swapper stopped early: {proc.stderr.read()}"
    finally:
        proc.kill()
        proc.wait()
