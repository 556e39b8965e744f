"""Benchmark: pooled pixel AUROC, ``vaecam.metrics.auroc`` vs ``sklearn.metrics.roc_auc_score``.

    python bench/auroc.py [--n 20000000] [--seed 0] [--repeats 5]

Data: ``n`` float32 scores on a grid of 1/1000 (about 1300 distinct values, so ties are
everywhere) and bool labels with about 5% positives, positives shifted up by 0.3 (fixed seed).

Each method runs in its own fresh subprocess, which builds the same data and then:

* time: best wall time of ``--repeats`` calls (ours) or ``--sk-repeats`` calls (sklearn);
* peak memory, measured twice, of one call each:
  - ``rss``: the kernel's peak resident set size during the call minus the resident size just
    before it. The peak (VmHWM) is reset right before the call by writing 5 to
    /proc/self/clear_refs, so what building the data cost is not counted. This is the main
    number: it sees every allocation (numpy, Cython, Python objects), at page granularity.
    Where clear_refs cannot be written, the child's ru_maxrss after the call minus its
    ru_maxrss after building the data is used instead (the data are built in place, so the
    building peak is close to the data's own size); the JSON says which was used.
  - ``traced``: the peak of tracemalloc (numpy reports its buffers to it) over the call, as a
    cross-check.

The last line printed is one JSON object: speedup (sklearn s / ours s), abs_diff, mem_ratio
(our peak RSS / sklearn's), traced_mem_ratio, and the seconds and MB of each.
"""

from __future__ import annotations

import argparse
import gc
import json

import numpy as np
from measure import MB, in_fresh_process, measure


def make_data(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Return (scores float32 (n,), labels bool (n,)), built in place to keep the peak low."""
    rng = np.random.default_rng(seed)
    scores = rng.random(n, dtype=np.float32)
    labels = np.empty(n, dtype=bool)
    step = 2**22
    for start in range(0, n, step):
        stop = min(start + step, n)
        labels[start:stop] = rng.random(stop - start, dtype=np.float32) < 0.05
    scores[labels] += np.float32(0.3)  # an informative but imperfect score
    np.multiply(scores, 1000, out=scores)
    np.floor(scores, out=scores)
    np.divide(scores, 1000, out=scores)  # coarse grid: heavy ties
    return scores, labels


def _method(name: str):
    if name == "ours":
        from vaecam.metrics import auroc

        return lambda s, y: auroc(s, y)
    from sklearn.metrics import roc_auc_score

    return lambda s, y: roc_auc_score(y, s)


def worker(name: str, n: int, seed: int, repeats: int) -> dict:
    """Run in a fresh process: build the data, time one method, measure its peak memory."""
    fn = _method(name)
    scores, labels = make_data(n, seed)
    fn(scores[:1000], labels[:1000])  # import/first-call costs out of the measurements
    gc.collect()

    # Peak RSS of one call, measured first, before anything else has run at full size.
    measured = measure(fn, scores, labels, repeats=repeats)
    return {
        "method": name,
        "auc": measured.pop("value"),
        **measured,
        "data_mb": (scores.nbytes + labels.nbytes) / MB,
        "n_pos": int(np.count_nonzero(labels)),
    }


def run_child(name: str, n: int, seed: int, repeats: int) -> dict:
    return in_fresh_process(
        __file__, "--worker", name, "--n", n, "--seed", seed, "--repeats", repeats
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=20_000_000, help="number of pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=5, help="timed calls of ours (best kept)")
    parser.add_argument("--sk-repeats", type=int, default=2, help="timed calls of sklearn")
    parser.add_argument("--worker", choices=["ours", "sklearn"], help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        print(json.dumps(worker(args.worker, args.n, args.seed, args.repeats)))
        return

    ours = run_child("ours", args.n, args.seed, args.repeats)
    sk = run_child("sklearn", args.n, args.seed, args.sk_repeats)
    result = {
        "n": args.n,
        "seed": args.seed,
        "n_pos": ours["n_pos"],
        "speedup": sk["seconds"] / ours["seconds"],
        "abs_diff": abs(ours["auc"] - sk["auc"]),
        "mem_ratio": ours["peak_rss_mb"] / sk["peak_rss_mb"],
        "traced_mem_ratio": ours["peak_traced_mb"] / sk["peak_traced_mb"],
        "ours_s": ours["seconds"],
        "sklearn_s": sk["seconds"],
        "ours_mb": ours["peak_rss_mb"],
        "sklearn_mb": sk["peak_rss_mb"],
        "ours_traced_mb": ours["peak_traced_mb"],
        "sklearn_traced_mb": sk["peak_traced_mb"],
        "ours_auc": ours["auc"],
        "sklearn_auc": sk["auc"],
        "data_mb": ours["data_mb"],
        "rss_method": ours["rss_method"],
    }
    print(f"n={args.n:,} float32 scores, {ours['n_pos']:,} positives, seed {args.seed}")
    print(f"data itself: {ours['data_mb']:.0f} MB (not counted below)")
    for label, r in (("ours   ", ours), ("sklearn", sk)):
        times = ", ".join(f"{t:.3f}" for t in r["all_seconds"])
        print(
            f"{label}: auc={r['auc']:.15f}  best {r['seconds']:.3f} s  ({times})  "
            f"peak +{r['peak_rss_mb']:.0f} MB RSS, +{r['peak_traced_mb']:.0f} MB traced"
        )
    print(f"RSS measured as: {ours['rss_method']}")
    print(
        f"speedup {result['speedup']:.1f}x, |diff| {result['abs_diff']:.2e}, "
        f"memory ratio {result['mem_ratio']:.3f} (traced {result['traced_mem_ratio']:.3f})"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
