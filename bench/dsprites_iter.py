"""Benchmark: dSprites training iterations per second, FactorVAE vs AD-FactorVAE.

The FactorVAE paper's dSprites model (``MODELS[name](in_channels=1, image_size=64,
latent_dim=10)``, default options: convs 32-32-64-64, FC 128, discriminator 6 x 1000; AD at
``encoder.4``, ``per_dim``, sampled ``z``, one random pair), batch 64, the VAE's Adam 1e-4 with
(0.9, 0.999), one :func:`vaecam.training.train_step` per iteration (VAE step + discriminator
step, + the AD term's double backward for AD-FactorVAE). Two data modes:

- ``prerendered``: batches cut from a pool rendered before timing, already on the device;
- ``on_the_fly``: each batch rendered by the procedural dSprites generator inside the timed
  step and copied to the device, as an iteration loop over generated data does.

The pool is procedural dSprites (``vaecam.data.dsprites.DSpritesProcedural``). Each
configuration runs ``--warmup`` steps, then ``--repeats`` timed blocks of ``--iterations``
steps, interleaved across configurations (the machine may be shared); the best block counts.

    python bench/dsprites_iter.py [--device cpu|cuda] [--iterations 10] [--repeats 3]

Prints readable lines, then one JSON object as the last line; ``ad_overhead`` is
AD-FactorVAE's seconds per iteration over FactorVAE's, on pre-rendered data.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import Tensor

from vaecam.data.dsprites import DSpritesProcedural
from vaecam.experiments.disentanglement import observations
from vaecam.models import MODELS
from vaecam.training import seed_everything, train_step

MODELS_TIMED = ("factor_vae", "ad_factor_vae")
SIDE, LATENT = 64, 10

Sampler = Callable[[int], Tensor]  # batch size -> (B, 1, 64, 64) float images on the CPU


def procedural_sampler(seed: int) -> Sampler:
    """Batches of procedural dSprites, drawn as a dSprites trial draws them."""
    data, rng = DSpritesProcedural(), np.random.RandomState(seed)
    return lambda batch_size: observations(data, batch_size, rng)


def cycle(pool: Tensor) -> Sampler:
    """Consecutive batches of a pre-rendered ``pool`` ``(N, 1, 64, 64)``, round and round."""
    position = iter(range(10**12))

    def sample(size: int) -> Tensor:
        i = next(position) % (len(pool) // size)
        return pool[i * size : (i + 1) * size]

    return sample


def training_step(
    name: str, device: torch.device, batch: Sampler, batch_size: int
) -> Callable[[], None]:
    """One ``train_step`` of a fresh seeded ``MODELS[name]`` on ``batch(batch_size)``."""
    generator = seed_everything(0)
    model = MODELS[name](in_channels=1, image_size=SIDE, latent_dim=LATENT).to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.999))

    def step() -> None:
        train_step(model, optimizer, batch(batch_size).to(device), generator)

    return step


def time_blocks(
    step: Callable[[], None], warmup: int, iterations: int, device: torch.device
) -> Callable[[], float]:
    """Warm ``step`` up now; return a function timing one block of ``iterations`` steps (s)."""
    for _ in range(warmup):
        step()

    def block() -> float:
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        for _ in range(iterations):
            step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - start

    return block


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--iterations", type=int, default=10, help="steps per timed block")
    parser.add_argument("--repeats", type=int, default=3, help="timed blocks; the best counts")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--pool", type=int, default=16, help="pre-rendered batches")
    args = parser.parse_args()
    device = torch.device(args.device)
    B = args.batch_size

    sampler = procedural_sampler(seed=0)
    start = time.perf_counter()
    pool = torch.cat([sampler(B) for _ in range(args.pool)]).to(device)
    render_s = (time.perf_counter() - start) / args.pool
    modes = ["prerendered", "on_the_fly"]
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"data: procedural dSprites; batch {B}, {SIDE}x{SIDE}, latent {LATENT}")
    print(f"rendering one batch of {B}: {render_s * 1e3:.1f} ms")

    blocks: dict[tuple[str, str], Callable[[], float]] = {}
    for name in MODELS_TIMED:
        for mode in modes:
            batch = sampler if mode == "on_the_fly" else cycle(pool)
            step = training_step(name, device, batch, B)
            blocks[name, mode] = time_blocks(step, args.warmup, args.iterations, device)

    best: dict[tuple[str, str], float] = {key: float("inf") for key in blocks}
    for _ in range(args.repeats):
        for key, block in blocks.items():
            best[key] = min(best[key], block() / args.iterations)

    for (name, mode), seconds in best.items():
        print(f"{name:14s} {mode:12s} {seconds * 1e3:8.1f} ms/it  {1 / seconds:7.2f} it/s")
    overhead = best["ad_factor_vae", "prerendered"] / best["factor_vae", "prerendered"]
    print(f"AD overhead (AD-FactorVAE / FactorVAE, pre-rendered): {overhead:.2f}x")

    result: dict[str, Any] = {
        "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "batch_size": B,
        "iterations": args.iterations,
        "repeats": args.repeats,
        "data": "procedural",
        "render_ms_per_batch": round(render_s * 1e3, 2),
        "it_per_s": {
            name: {mode: round(1 / best[name, mode], 3) for mode in modes} for name in MODELS_TIMED
        },
        "ad_overhead": round(overhead, 3),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
