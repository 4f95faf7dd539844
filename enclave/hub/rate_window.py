"""A sliding window of bytes and messages sent, for the output limits of
``enclave.hub.output_guard`` (kept free of Jupyter imports so it is unit-tested on the host)."""

from __future__ import annotations

import time
from collections import deque


class OutputWindow:
    """Bytes and messages within a sliding window, with the hysteresis of Jupyter's own
    limiter: once over a limit, nothing passes until both rates fall below 80 %."""

    def __init__(self, bytes_per_second: float, msgs_per_second: float, window: float) -> None:
        self.bytes_per_second = bytes_per_second
        self.msgs_per_second = msgs_per_second
        self.window = window
        self._sent: deque[tuple[float, int]] = deque()
        self._bytes = 0
        self.exceeded = False

    def _expire(self, now: float) -> None:
        while self._sent and self._sent[0][0] <= now - self.window:
            _, size = self._sent.popleft()
            self._bytes -= size

    def admit(self, size: int, now: float | None = None) -> bool:
        """True (and counted) if a message of ``size`` bytes may be sent now."""
        now = time.monotonic() if now is None else now
        self._expire(now)
        data_rate = (self._bytes + size) / self.window
        msg_rate = (len(self._sent) + 1) / self.window
        if self.exceeded:
            if data_rate < 0.8 * self.bytes_per_second and msg_rate < 0.8 * self.msgs_per_second:
                self.exceeded = False
            else:
                return False
        if data_rate > self.bytes_per_second or msg_rate > self.msgs_per_second:
            self.exceeded = True
            return False
        self._sent.append((now, size))
        self._bytes += size
        return True
