"""Safe statistics for researchers: outputs that are checked, suppressed and evidenced.

Works on pandas and polars DataFrames and computes with polars::

    from enclave.safe import crosstab
    r = crosstab(df, index="year", columns="grant_type", values="income", aggfunc="mean")
    r.status, r.findings, r.table
    r.save("project/outbox/income_by_year.csv")   # writes the table and its evidence

The disclosure policy comes from ``$ENCLAVE_DISCLOSURE_POLICY`` when set, else the
guidance defaults; every function also takes ``policy=``.
"""

from enclave.disclosure.policy import DisclosurePolicy, load_disclosure_policy
from enclave.disclosure.verdict import Verdict
from enclave.safe.regression import logit, ols
from enclave.safe.result import SafeResult
from enclave.safe.summaries import describe, histogram
from enclave.safe.tables import crosstab, pivot_table

__all__ = [
    "DisclosurePolicy",
    "SafeResult",
    "Verdict",
    "crosstab",
    "describe",
    "histogram",
    "load_disclosure_policy",
    "logit",
    "ols",
    "pivot_table",
]
