"""Checked regression summaries: OLS and logit through statsmodels, with the ``dof`` rule."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import polars as pl

from enclave.disclosure.findings import evaluate
from enclave.disclosure.policy import DisclosurePolicy, load_disclosure_policy
from enclave.disclosure.rules import DOF
from enclave.errors import InvalidInput
from enclave.safe.frames import to_polars
from enclave.safe.result import SafeResult

COEFFICIENT_COLUMNS = ["coef", "std_err", "z_or_t", "p_value", "ci_low", "ci_high"]


def ols(data: Any, formula: str, *, policy: DisclosurePolicy | None = None) -> SafeResult:
    """Ordinary least squares of a statsmodels formula (``"income ~ age + C(sex)"``), checked.

    ``.table`` holds the coefficients, or nothing when the residual degrees of freedom are
    below the policy's ``dof``; ``.extra["summary"]`` the statsmodels summary text if safe.
    """
    return _fit("ols", data, formula, policy)


def logit(data: Any, formula: str, *, policy: DisclosurePolicy | None = None) -> SafeResult:
    """Logistic regression of a statsmodels formula (outcome coded 0/1), checked like :func:`ols`."""
    return _fit("logit", data, formula, policy)


def _fit(kind: str, data: Any, formula: str, policy: DisclosurePolicy | None) -> SafeResult:
    import statsmodels.formula.api as smf  # heavy; only regression needs it
    from patsy import PatsyError
    from statsmodels.tools.sm_exceptions import PerfectSeparationError

    policy = policy or load_disclosure_policy()
    if not isinstance(formula, str) or "~" not in formula:
        raise InvalidInput(f"formula must read like 'outcome ~ x1 + x2', got {formula!r}")
    frame = to_polars(data).to_pandas()
    try:
        model = smf.ols(formula, frame) if kind == "ols" else smf.logit(formula, frame)
        fitted = model.fit() if kind == "ols" else model.fit(disp=0)
    except (PatsyError, KeyError, NameError) as exc:
        raise InvalidInput(f"formula {formula!r} does not fit the data ({exc}); check the column names") from None
    except (PerfectSeparationError, np.linalg.LinAlgError, ValueError) as exc:
        raise InvalidInput(f"the {kind} model cannot be fitted ({type(exc).__name__}: {exc}); simplify the model") from None
    dof = int(fitted.df_resid)
    stats = pl.DataFrame({DOF: [dof]})
    cells = [("model", "dof")]
    evaluation = evaluate(stats, policy, ["dof"], cells)
    safe = evaluation.ranks["status"][0] < 2
    ci = fitted.conf_int()
    coefficients = pd.DataFrame(
        {"coef": fitted.params, "std_err": fitted.bse, "z_or_t": fitted.tvalues, "p_value": fitted.pvalues,
         "ci_low": ci[0], "ci_high": ci[1]}
    )
    coefficients.index.name = "term"
    if not safe:
        coefficients.loc[:, :] = np.nan
    return SafeResult(
        table=coefficients, status=evaluation.status, findings=evaluation.findings,
        suppressed=[] if safe else [(term, c) for term in coefficients.index for c in COEFFICIENT_COLUMNS],
        secondary=[], cell_stats=stats, cells=cells, margin_flags=[False], cell_ranks=evaluation.ranks,
        hidden=[not safe], policy=policy, rules=["dof"],
        analysis={"kind": kind, "formula": formula, "nobs": int(fitted.nobs), "dof": dof},
        extra={"summary": str(fitted.summary()) if safe else None},
    )
