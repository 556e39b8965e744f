"""Benchmark: the cost of a full score table, train once and score many against one training and
one scoring per combination (the design before scoring grids: every scoring choice a trial).

    python bench/sweep_cost.py [--epochs 30] [--data-root DIR]

On ``digits`` at the quick budget (``DIGITS.quick``'s first trial: 30 epochs) with the
sweep's scoring grid (``DIGITS.scoring``: attention's layers, formulations and quantities, the
baselines and the controls, each image score), all in this process on the CPU, as a trial does
it (figures included):

* ``train_s``: one training, timed (every combination's own training would cost the same: the
  choices do not change training);
* ``grid_s``: scoring the whole grid on that model (:func:`vaecam.experiments.anomaly.score`);
* ``single_s``: scoring each combination alone on the same model, one call each (their sum and
  mean).

The last line is one JSON object: ``speedup`` = (combinations x train_s + sum of single_s) /
(train_s + grid_s), ``combinations``, ``grid_vs_single_scoring`` = grid_s / mean single_s, and
the seconds.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time

from orchestrator.space import candidates
from search_spaces.digits import DIGITS
from vaecam.experiments import anomaly
from vaecam.experiments.common import NullReporter
from vaecam.scoring import COLUMNS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=DIGITS.quick["epochs"])
    parser.add_argument("--data-root", default=tempfile.gettempdir())
    args = parser.parse_args()
    config = {key: candidates(value)[0] for key, value in DIGITS.quick.items()}  # one trial's
    config = anomaly.defaults(config) | config
    config |= {"epochs": args.epochs, "data_root": args.data_root}

    start = time.perf_counter()
    trained = anomaly.train(config, NullReporter())
    train_s = time.perf_counter() - start

    start = time.perf_counter()
    table = anomaly.score(trained, DIGITS.scoring, NullReporter())
    grid_s = time.perf_counter() - start

    single_s = []
    for row in table.rows:
        alone = {key: [row[key]] for key in COLUMNS if row[key] is not None}
        start = time.perf_counter()
        anomaly.score(trained, alone, NullReporter())
        single_s.append(time.perf_counter() - start)

    combinations = len(table.rows)
    separately = combinations * train_s + sum(single_s)
    figures = {
        "speedup": round(separately / (train_s + grid_s), 2),
        "combinations": combinations,
        "grid_vs_single_scoring": round(grid_s / (sum(single_s) / combinations), 2),
        "train_s": round(train_s, 2),
        "grid_s": round(grid_s, 2),
        "single_s_mean": round(sum(single_s) / combinations, 3),
        "single_s_sum": round(sum(single_s), 2),
        "separately_s": round(separately, 1),
        "epochs": args.epochs,
    }
    print(
        f"one training {train_s:.1f} s + the grid {grid_s:.1f} s, against {combinations} x "
        f"(training + one combination {figures['single_s_mean']:.2f} s) = {separately:.0f} s"
    )
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
