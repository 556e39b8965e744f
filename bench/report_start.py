"""Benchmark: how long ``report`` takes to start, before its first MLflow query.

    PYTHONPATH=$PWD python bench/report_start.py [--repeats 3]

Two wall times per repeat, each in a fresh process: ``python -c "import orchestrator.report"``,
and ``python -m orchestrator.report --name X --tracking-uri sqlite:///<empty temp db>`` until
it first opens the store (an audit hook on ``sqlite3.connect`` ends the process there: what
follows is MLflow's work, not the command's start). Also whether importing the report imported
torch. Prints one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

IMPORT = "import sys, orchestrator.report; print('torch' in sys.modules)"

#: The command as ``python -m`` runs it, ended where it first opens the sqlite store.
COMMAND = """
import os, runpy, sys
def first_query(event, args):
    if event == "sqlite3.connect":
        os._exit(0)
sys.addaudithook(first_query)
sys.argv = ["orchestrator.report", *sys.argv[1:]]
runpy.run_module("orchestrator.report", run_name="__main__", alter_sys=True)
"""


def timed(argv: list[str]) -> tuple[float, str]:
    """Seconds ``argv`` took, and what it printed."""
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return time.perf_counter() - started, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    imports, starts, torch = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        db = Path(tmp) / "mlflow.db"
        db.touch()  # an existing, empty store: the command opens it
        for _ in range(args.repeats):
            seconds, out = timed([sys.executable, "-c", IMPORT])
            imports.append(seconds)
            torch.append(out.strip() == "True")
            flags = ["--name", "X", "--tracking-uri", f"sqlite:///{db}", "--out", tmp]
            starts.append(timed([sys.executable, "-c", COMMAND, *flags])[0])
    result = {
        "import_s": [round(s, 2) for s in imports],
        "start_to_first_query_s": [round(s, 2) for s in starts],
        "import_median_s": round(statistics.median(imports), 2),
        "start_median_s": round(statistics.median(starts), 2),
        "imports_torch": any(torch),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
