"""Safe statistics for researchers: outputs that are checked, suppressed and evidenced.

Works on pandas and polars DataFrames and computes with polars::

    from enclave.safe import crosstab, query
    grants = query("demo", "grants")               # /data/demo/grants.parquet, reproducibly
    r = crosstab(grants, index="year", columns="grant_type", values="income", aggfunc="mean")
    print(r)                                       # both verdicts in words: raw table and saved table
    r.status, r.saved_status, r.findings, r.table
    r.save("project/outbox/income_by_year.csv")   # writes the table and its evidence

A table built from a query is reproducible: the enclave re-runs the query on submit and
trusts its evidence only if the table comes out the same. A table built from any other
frame still works, but its evidence is not trusted and the file is checked as it stands.

The disclosure policy is the site's: in a workspace container the enclave mounts its
``disclosure.yaml`` read-only at /etc/enclave/policies, and that file is used. Outside the
enclave (a laptop) it comes from ``$ENCLAVE_DISCLOSURE_POLICY`` when set, else the guidance
defaults. Every function also takes ``policy=``; but the enclave re-runs a table under the
site's policy on submit, so a table made under other rules is not reproduced.
"""

from enclave.disclosure.policy import DisclosurePolicy, load_disclosure_policy
from enclave.disclosure.verdict import Verdict
from enclave.safe.regression import logit, ols
from enclave.safe.result import SafeResult
from enclave.safe.summaries import describe, histogram
from enclave.safe.query import Query, query
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
    "Query",
    "query",
]
