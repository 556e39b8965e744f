"""Benchmark: image-level bootstrap of a pooled pixel AUROC against one exact pixel AUROC.

    python bench/bootstrap.py [--images 300] [--size 256] [--resamples 1000] [--seed 0]
                              [--grid 1000] [--naive-images 60] [--naive-size 64] [--repeats 3]

Data (fixed seed): ``images`` float32 anomaly maps of ``size x size`` (300 x 256 x 256 = 19.7M
pixels), two thirds of them defective with one to three elliptic regions; the map is uniform
noise plus a per-image offset (``N(0, 0.1)``: the pixels of an image are correlated, the reason
the image is the resampling unit) plus 0.3 inside the regions, quantised to a grid of 1/1000
(about 1500 distinct values: ties everywhere; ``--grid 0`` keeps the float32 scores, nearly all
distinct, the costlier case for the pair counts).

Each timed side runs in its own fresh subprocess, which builds the same data and then:

* ``exact``: ``vaecam.metrics.pixel_auroc(maps, masks)``, one exact AUROC;
* ``bootstrap``: ``vaecam.uncertainty.pixel_auroc_interval(maps, masks, resamples=1000)``,
  everything included (the per-image-pair counts ``K`` and the 1,000 quadratic forms);
* ``aupro`` and ``aupro_bootstrap`` (for information): ``metrics.aupro`` and
  ``uncertainty.aupro_interval`` on the same data.

Timing and memory as ``bench/auroc.py`` (``measure``): best wall time of ``--repeats`` calls and
the peak RSS of one call above the data.

Then, on a smaller case (``--naive-images`` maps of ``--naive-size``, same recipe, in this
process), the interval is compared with a naive bootstrap that uses the same resampled image
indices (``uncertainty``'s own stratified draws) and recomputes ``metrics.pixel_auroc`` on the
concatenated resampled images for each of the ``--resamples`` resamples.

The last line printed is one JSON object: ``ratio`` (bootstrap seconds / exact AUROC seconds,
target at most 20), ``max_endpoint_diff`` (largest |endpoint - naive endpoint|, target at most
1e-6), the timings, sizes, intervals and peak memory.
"""

from __future__ import annotations

import argparse
import gc
import json
import time

import numpy as np
from measure import MB, in_fresh_process, measure


def make_data(
    n_images: int, size: int, seed: int, grid: int = 1000
) -> tuple[np.ndarray, np.ndarray]:
    """Return maps float32 (N, size, size) and masks bool (N, size, size), built image by image
    in place to keep the peak low."""
    rng = np.random.default_rng(seed)
    maps = np.empty((n_images, size, size), dtype=np.float32)
    masks = np.zeros((n_images, size, size), dtype=bool)
    yy, xx = np.ogrid[:size, :size]
    for i in range(n_images):
        maps[i] = rng.random((size, size), dtype=np.float32)
        maps[i] += np.float32(rng.normal(0.0, 0.1))  # per-image offset: correlated pixels
        if i % 3 != 2:  # two thirds defective
            for _ in range(rng.integers(1, 4)):
                cy, cx = rng.uniform(0.15, 0.85, 2) * size
                ry, rx = rng.uniform(0.03, 0.12, 2) * size
                masks[i] |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1.0
            maps[i][masks[i]] += np.float32(0.3)
        if grid:
            np.multiply(maps[i], grid, out=maps[i])
            np.floor(maps[i], out=maps[i])
            np.divide(maps[i], grid, out=maps[i])  # coarse grid: heavy ties
    return maps, masks


def _method(name: str, resamples: int, seed: int):
    from vaecam import metrics, uncertainty

    if name == "exact":
        return metrics.pixel_auroc
    if name == "aupro":
        return metrics.aupro
    if name == "aupro_bootstrap":
        return lambda m, k: uncertainty.aupro_interval(m, k, resamples=resamples, seed=seed)
    return lambda m, k: uncertainty.pixel_auroc_interval(m, k, resamples=resamples, seed=seed)


def worker(args: argparse.Namespace) -> dict:
    """Run in a fresh process: build the data, time one method, measure its peak memory."""
    fn = _method(args.worker, args.resamples, args.seed)
    maps, masks = make_data(args.images, args.size, args.seed, args.grid)
    small = make_data(4, 16, args.seed + 1, args.grid)
    fn(*small)  # import/first-call costs out of the measurements
    gc.collect()
    measured = measure(fn, maps, masks, repeats=args.repeats)
    value = measured.pop("value")
    return {
        "method": args.worker,
        "value": list(value) if isinstance(value, tuple) else value,
        **measured,
        "data_mb": (maps.nbytes + masks.nbytes) / MB,
        "n_pixels": int(maps.size),
        "n_pos": int(np.count_nonzero(masks)),
    }


def run_child(name: str, args: argparse.Namespace) -> dict:
    return in_fresh_process(
        __file__,
        "--worker",
        name,
        "--images",
        args.images,
        "--size",
        args.size,
        "--resamples",
        args.resamples,
        "--seed",
        args.seed,
        "--repeats",
        args.repeats,
        "--grid",
        args.grid,
    )


def naive_comparison(n_images: int, size: int, resamples: int, seed: int, grid: int) -> dict:
    """Interval of ``pixel_auroc_interval`` against a naive bootstrap on the same draws."""
    from vaecam import metrics, uncertainty

    maps, masks = make_data(n_images, size, seed, grid)
    start = time.perf_counter()
    fast = uncertainty.pixel_auroc_interval(maps, masks, resamples=resamples, seed=seed)
    fast_s = time.perf_counter() - start

    # The same stratified draws the function makes: images with anomalous pixels apart.
    has_pos = masks.any(axis=(1, 2))
    has_neg = ~masks.all(axis=(1, 2))
    strata = uncertainty._strata(has_pos, has_neg)
    (draws,) = uncertainty._resample_units(strata, resamples, seed, resamples)
    start = time.perf_counter()
    values = [metrics.pixel_auroc(maps[rows], masks[rows]) for rows in draws]
    naive_s = time.perf_counter() - start
    level = 0.95
    low, high = np.quantile(values, [(1 - level) / 2, (1 + level) / 2])
    return {
        "naive_images": n_images,
        "naive_size": size,
        "naive_n_pixels": int(maps.size),
        "naive_interval": [float(low), float(high)],
        "fast_interval": [fast.low, fast.high],
        "max_endpoint_diff": max(abs(fast.low - low), abs(fast.high - high)),
        "naive_s": naive_s,
        "fast_s": fast_s,
        "estimate_diff": abs(fast.estimate - metrics.pixel_auroc(maps, masks)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--size", type=int, default=256, help="image height and width")
    parser.add_argument("--resamples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="timed calls (best kept)")
    parser.add_argument("--grid", type=int, default=1000, help="score levels per unit; 0: none")
    parser.add_argument("--naive-images", type=int, default=60)
    parser.add_argument("--naive-size", type=int, default=64)
    parser.add_argument("--no-aupro", action="store_true", help="skip the AUPRO timings")
    parser.add_argument(
        "--worker",
        choices=["exact", "bootstrap", "aupro", "aupro_bootstrap"],
        help=argparse.SUPPRESS,
    )
    args = parser.parse_args()

    if args.worker:
        print(json.dumps(worker(args)))
        return

    exact = run_child("exact", args)
    boot = run_child("bootstrap", args)
    estimate, low, high, n_pos, n_neg = boot["value"]
    naive = naive_comparison(
        args.naive_images, args.naive_size, args.resamples, args.seed, args.grid
    )
    result = {
        "ratio": boot["seconds"] / exact["seconds"],
        "max_endpoint_diff": naive["max_endpoint_diff"],
        "bootstrap_s": boot["seconds"],
        "auroc_s": exact["seconds"],
        "resamples": args.resamples,
        "images": args.images,
        "size": args.size,
        "n_pixels": exact["n_pixels"],
        "n_pos": exact["n_pos"],
        "seed": args.seed,
        "grid": args.grid,
        "pixel_auroc": exact["value"],
        "estimate_diff": abs(estimate - exact["value"]),
        "ci_low": low,
        "ci_high": high,
        "bootstrap_mb": boot["peak_rss_mb"],
        "auroc_mb": exact["peak_rss_mb"],
        "data_mb": exact["data_mb"],
        "rss_method": exact["rss_method"],
        **naive,
    }
    print(
        f"{args.images} maps of {args.size}x{args.size} ({exact['n_pixels']:,} pixels, "
        f"{exact['n_pos']:,} anomalous), float32 "
        + (f"on a 1/{args.grid} grid" if args.grid else "unquantised")
        + f", seed {args.seed}"
    )
    print(f"data itself: {exact['data_mb']:.0f} MB (not counted below)")
    rows = [("exact pixel_auroc", exact), (f"bootstrap x{args.resamples}", boot)]
    if not args.no_aupro:
        aupro = run_child("aupro", args)
        aupro_boot = run_child("aupro_bootstrap", args)
        rows += [("exact aupro", aupro), (f"aupro bootstrap x{args.resamples}", aupro_boot)]
        result |= {
            "aupro": aupro["value"],
            "aupro_ci": aupro_boot["value"][1:3],
            "aupro_s": aupro["seconds"],
            "aupro_bootstrap_s": aupro_boot["seconds"],
            "aupro_ratio": aupro_boot["seconds"] / aupro["seconds"],
        }
    for label, r in rows:
        times = ", ".join(f"{t:.3f}" for t in r["all_seconds"])
        print(
            f"{label:>24}: best {r['seconds']:.3f} s ({times})  "
            f"peak +{r['peak_rss_mb']:.0f} MB RSS, +{r['peak_traced_mb']:.0f} MB traced"
        )
    print(
        f"pixel AUROC {exact['value']:.6f}, 95% interval [{low:.6f}, {high:.6f}] "
        f"(|estimate - exact| = {result['estimate_diff']:.1e})"
    )
    print(f"ratio: bootstrap / one exact AUROC = {result['ratio']:.2f} (target <= 20)")
    print(
        f"naive check, {args.naive_images} maps of {args.naive_size}x{args.naive_size}: "
        f"interval {naive['fast_interval']} vs naive {naive['naive_interval']}, "
        f"max endpoint diff {naive['max_endpoint_diff']:.1e} (target <= 1e-6); "
        f"naive {naive['naive_s']:.2f} s vs {naive['fast_s']:.3f} s"
    )
    print(json.dumps(result))


if __name__ == "__main__":
    main()
