"""The meter's window accounting: what counts, when it leaves the window, the bound."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from enclave.meter.accounting import DAY, HOUR, ServerMeter, SlidingWindow
from enclave.meter.proxy import _is_directory_listing, contents_path


def test_window_counts_bytes_until_they_leave_the_window():
    window = SlidingWindow(10)
    window.add(100.0, 5)
    window.add(105.5, 7)
    assert window.total(109.9) == 12
    assert window.total(110.0) == 7   # the bytes of second 100 have left a 10 s window
    assert window.total(115.9) == 0


def test_meter_allows_exactly_up_to_the_limit():
    meter = ServerMeter("ada", "cardio", window_seconds=60, max_bytes_per_window=100)
    assert meter.allows(0, 100)
    meter.sent(0, 60)
    assert meter.allows(1, 40) and not meter.allows(1, 41)
    meter.sent(1, 40)
    assert not meter.allows(59, 1)
    assert meter.allows(60, 60)  # the first 60 bytes left the window


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 5), st.integers(0, 400)), min_size=1, max_size=80),
       st.integers(1, 30), st.integers(1, 1000))
def test_meter_never_lets_more_than_the_limit_through_any_window(steps, window_seconds, limit):
    """Whatever the traffic, what was let through in any window is at most the limit."""
    meter = ServerMeter("ada", "cardio", window_seconds=window_seconds, max_bytes_per_window=limit)
    now, passed = 1000.0, []
    for gap, size in steps:
        now += gap
        if meter.allows(now, size):
            meter.sent(now, size)
            passed.append((int(now), size))
    for start, _ in passed:
        in_window = sum(size for second, size in passed if start <= second < start + window_seconds)
        assert in_window <= limit


def test_meter_history_by_hour_and_day_and_received_apart():
    meter = ServerMeter("ada", "cardio", window_seconds=600, max_bytes_per_window=10**9)
    t0 = 10 * DAY
    meter.sent(t0, 1000)
    meter.sent(t0 + 2 * HOUR, 500)
    meter.received(t0 + 2 * HOUR, 77)
    now = t0 + 2 * HOUR + 10
    assert meter.sent_within(now, HOUR) == 500
    assert meter.sent_within(now, DAY) == 1500
    assert meter.received_within(now, DAY) == 77
    assert meter.in_window(now) == 500
    assert meter.sent_within(t0 + DAY + 3 * HOUR, DAY) == 0  # both have left the day


def test_meter_state_round_trips():
    meter = ServerMeter("ada", "cardio", window_seconds=60, max_bytes_per_window=100)
    meter.sent(50, 30)
    meter.received(50, 4)
    meter.tripped = True
    again = ServerMeter.load(meter.dump(), 55)
    assert again.in_window(55) == 30 and again.received_total == 4 and again.tripped
    again.start_new_window()
    assert again.in_window(55) == 0 and not again.tripped and again.sent_within(55, HOUR) == 30


def test_contents_path_sees_every_spelling_of_the_contents_api():
    assert contents_path("/api/contents/project/a.ipynb?content=1") == "project/a.ipynb"
    assert contents_path("/api/contents") == ""
    assert contents_path("/api/%63ontents/data%2Fx.parquet") == "data/x.parquet"
    assert contents_path("/lab/../api/contents/x.csv") == "x.csv"
    assert contents_path("//api//contents/x.csv") == "x.csv"
    assert contents_path("/api/contents/x.ipynb/checkpoints") is None
    assert contents_path("/api/kernels") is None


def test_directory_listing_is_recognised_only_by_its_top_level_content():
    assert _is_directory_listing(b'{"name": "", "path": "", "content": [{"type": "file"}], "type": "directory"}')
    assert not _is_directory_listing(b'{"name": "a", "content": "text", "type": "file"}')
    # A file named to look like a listing is still a file.
    assert not _is_directory_listing(b'{"name": "x\\"content\\": [", "content": "data"}')
    assert not _is_directory_listing(b'{"name": "n.ipynb", "content": {"cells": [{"content": []}]}}')
    assert not _is_directory_listing(b'not json at all')
