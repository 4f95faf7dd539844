"""Run acro's crosstab on a Parquet file and print its cell-level verdicts as JSON.

Runs under .venv-acro (see scripts/install-acro.sh), never under the project's venv: acro
pins an older pandas. Used by tests/integration/test_acro_parity.py and
benchmarks/disclosure.py to compare enclave.safe with acro on the same table.

    .venv-acro/bin/python scripts/acro_crosstab.py DATA.parquet INDEX COLUMNS [VALUES AGGFUNC]

Prints {"seconds": ..., "checks": {check name: [[row label, column label], ...]}}.
"""

from __future__ import annotations

import json
import logging
import sys
import time


def main(argv: list[str]) -> int:
    if len(argv) not in (3, 5):
        print(__doc__.strip().splitlines()[-3].strip(), file=sys.stderr)
        return 2
    logging.disable(logging.CRITICAL)  # acro logs every table at INFO
    import pandas as pd
    from acro import ACRO

    path, index, columns = argv[:3]
    values, aggfunc = (argv[3], argv[4]) if len(argv) == 5 else (None, None)
    frame = pd.read_parquet(path)
    session = ACRO(suppress=False)
    started = time.perf_counter()
    if values is None:
        session.crosstab(frame[index], frame[columns])
    else:
        session.crosstab(frame[index], frame[columns], values=frame[values], aggfunc=aggfunc)
    seconds = time.perf_counter() - started
    record = list(session.results.results.values())[-1]
    outcome = record.outcome
    checks = {}
    for check, cells in record.sdc["cells"].items():
        checks[check] = [[_plain(outcome.index[r]), _plain(outcome.columns[c])] for r, c in cells]
    print(json.dumps({"seconds": seconds, "status": str(record.status), "checks": checks}))
    return 0


def _plain(label):
    return label.item() if hasattr(label, "item") else label


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
