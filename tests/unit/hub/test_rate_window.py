"""The output window of the server-side kernel and terminal output limits."""

from __future__ import annotations

from enclave.hub.rate_window import OutputWindow


def test_rate_window_admits_up_to_the_byte_rate_then_pauses_until_below_80_percent():
    w = OutputWindow(bytes_per_second=1000, msgs_per_second=1000, window=2)
    assert all(w.admit(500, now=0.0) for _ in range(4))  # 2000 bytes in 2 s: exactly the rate
    assert not w.admit(1, now=0.1) and w.exceeded
    # Once the sent bytes leave the window, output resumes.
    assert w.admit(100, now=2.5) and not w.exceeded


def test_rate_window_counts_messages_as_well_as_bytes():
    w = OutputWindow(bytes_per_second=1e9, msgs_per_second=5, window=1)
    assert sum(w.admit(1, now=0.0) for _ in range(20)) == 5


def test_rate_window_hysteresis_holds_until_the_rate_falls_below_80_percent():
    w = OutputWindow(bytes_per_second=1000, msgs_per_second=1000, window=1)
    for t in range(10):
        w.admit(100, now=t / 10)  # 1000 bytes within the window
    assert not w.admit(100, now=0.95)
    # At 1.05 s one 100-byte message has left: 900 + 100 would be 100 %, still paused.
    assert not w.admit(100, now=1.05)
    assert w.admit(100, now=1.75)  # 200 bytes left in the window: below 80 %
