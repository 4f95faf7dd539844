"""Byte accounting per server: a sliding window for the limit, minute buckets for history.

Pure and clock-free (every call takes ``now`` in seconds), so it is tested without a
proxy. The limit is checked *before* bytes are forwarded (:meth:`ServerMeter.allows`),
so no more than ``max_bytes_per_window`` bytes reach a browser within any window.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

DAY = 24 * 3600
HOUR = 3600


class SlidingWindow:
    """Bytes counted in one-second buckets; :meth:`total` covers the last ``seconds``."""

    def __init__(self, seconds: int) -> None:
        if seconds < 1:
            raise ValueError("a window is at least one second long")
        self.seconds = seconds
        self._buckets: deque[list[int]] = deque()  # [second, bytes], oldest first
        self._total = 0

    def _trim(self, now: float) -> None:
        oldest = int(now) - self.seconds  # buckets at or before this second have left the window
        while self._buckets and self._buckets[0][0] <= oldest:
            self._total -= self._buckets.popleft()[1]

    def add(self, now: float, count: int) -> None:
        second = int(now)
        self._trim(now)
        if self._buckets and self._buckets[-1][0] >= second:
            self._buckets[-1][1] += count  # a clock step back counts in the newest bucket
        else:
            self._buckets.append([second, count])
        self._total += count

    def total(self, now: float) -> int:
        self._trim(now)
        return self._total

    def clear(self) -> None:
        self._buckets.clear()
        self._total = 0

    def dump(self) -> list[list[int]]:
        return [list(b) for b in self._buckets]

    def load(self, buckets: list[list[int]], now: float) -> None:
        self.clear()
        for second, count in buckets:
            self._buckets.append([int(second), int(count)])
            self._total += int(count)
        self._trim(now)


@dataclass
class ServerMeter:
    """What one (user, server) sent to browsers and received from them."""

    user: str
    server: str
    window_seconds: int
    max_bytes_per_window: int
    window: SlidingWindow = field(init=False)
    # Per-minute history of the last day, for the dashboard: sent and received.
    sent_history: SlidingWindow = field(init=False)
    received_history: SlidingWindow = field(init=False)
    sent_total: int = 0
    received_total: int = 0
    last_seen: float = 0.0
    # Set when the server passed its limit; the next start of it opens a new window.
    tripped: bool = False

    def __post_init__(self) -> None:
        self.window = SlidingWindow(self.window_seconds)
        # Minute resolution: keys are minutes, so 1440 buckets at most.
        self.sent_history = SlidingWindow(DAY // 60)
        self.received_history = SlidingWindow(DAY // 60)

    def set_limits(self, window_seconds: int, max_bytes_per_window: int, now: float) -> None:
        """Apply a (possibly changed) tier limit, keeping what was counted when the window is the same."""
        if window_seconds != self.window_seconds:
            self.window = SlidingWindow(window_seconds)
            self.window_seconds = window_seconds
        self.max_bytes_per_window = max_bytes_per_window

    def allows(self, now: float, count: int) -> bool:
        """May ``count`` more bytes go to the browser at ``now`` without passing the limit?"""
        return self.window.total(now) + count <= self.max_bytes_per_window

    def sent(self, now: float, count: int) -> None:
        if count <= 0:
            return
        self.window.add(now, count)
        self.sent_history.add(now / 60, count)
        self.sent_total += count
        self.last_seen = now

    def received(self, now: float, count: int) -> None:
        if count <= 0:
            return
        self.received_history.add(now / 60, count)
        self.received_total += count
        self.last_seen = now

    def in_window(self, now: float) -> int:
        return self.window.total(now)

    def sent_within(self, now: float, seconds: int) -> int:
        """Bytes sent in the last ``seconds`` (minute resolution; at most a day)."""
        return _sum_since(self.sent_history, now, seconds)

    def received_within(self, now: float, seconds: int) -> int:
        return _sum_since(self.received_history, now, seconds)

    def start_new_window(self) -> None:
        """After an incident: the next server starts with an empty window (the incident
        recorded what was sent); the history stays."""
        self.window.clear()
        self.tripped = False

    def dump(self) -> dict[str, Any]:
        return {"user": self.user, "server": self.server, "window_seconds": self.window_seconds,
                "max_bytes_per_window": self.max_bytes_per_window, "window": self.window.dump(),
                "sent_history": self.sent_history.dump(), "received_history": self.received_history.dump(),
                "sent_total": self.sent_total, "received_total": self.received_total, "last_seen": self.last_seen, "tripped": self.tripped}

    @classmethod
    def load(cls, data: dict[str, Any], now: float) -> ServerMeter:
        meter = cls(str(data["user"]), str(data["server"]), int(data["window_seconds"]),
                    int(data["max_bytes_per_window"]))
        meter.window.load(data.get("window", []), now)
        meter.sent_history.load(data.get("sent_history", []), now / 60)
        meter.received_history.load(data.get("received_history", []), now / 60)
        meter.sent_total = int(data.get("sent_total", 0))
        meter.received_total = int(data.get("received_total", 0))
        meter.last_seen = float(data.get("last_seen", 0.0))
        meter.tripped = bool(data.get("tripped", False))
        return meter


def _sum_since(history: SlidingWindow, now: float, seconds: int) -> int:
    first_minute = int(now // 60) - (seconds // 60) + 1
    history.total(now / 60)  # trims what is older than a day
    return sum(count for minute, count in history.dump() if minute >= first_minute)
