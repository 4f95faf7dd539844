"""The enclave's notion of now: UTC everywhere, one place to read it."""

import datetime as dt


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def today() -> dt.date:
    """Today's date in UTC (training and project dates are compared against it)."""
    return utcnow().date()
