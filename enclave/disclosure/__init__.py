"""Statistical disclosure control: the rules, their policy, and the output file checker.

Imports only polars, pandas, pyarrow, numpy, pydantic and pyyaml (plus ``enclave.errors``
and ``enclave.policy``), so the notebook image can carry it.
"""

from enclave.disclosure.checker import CheckReport, FileReport, check_file, check_files
from enclave.disclosure.findings import Evaluation, Finding, evaluate
from enclave.disclosure.policy import DisclosurePolicy, load_disclosure_policy
from enclave.disclosure.rules import RULES, Rule, register
from enclave.disclosure.verdict import Verdict, worst

__all__ = [
    "RULES",
    "CheckReport",
    "FileReport",
    "check_file",
    "check_files",
    "DisclosurePolicy",
    "Evaluation",
    "Finding",
    "Rule",
    "Verdict",
    "evaluate",
    "load_disclosure_policy",
    "register",
    "worst",
]
