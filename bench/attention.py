"""Benchmark: all-dims attention maps from one batched backward vs a loop of n backwards.

The authors' MNIST model (``ConvVAE()``: latent 32, FC 6272 -> 1024), batch 64, 28x28, target
``encoder.2``, formulation ``per_dim``. Both paths share the same code except for the gradient
step: the loop is what a competent user writes without batching (one forward, n calls to
``torch.autograd.grad`` with ``retain_graph=True`` and one-hot cotangents). Timings interleave
the paths (the machine may be shared) and keep the best of ``--repeats`` after a warm-up.

    python bench/attention.py [--device cpu|cuda] [--repeats 7] [--threads N] [--no-thp]

Prints readable lines, then one JSON object as the last line.

What makes the batched path fast on a 2-core CPU (measured here, AMD EPYC, MKL sgemm):
- one (n*B, 1024) x (1024, 6272) GEMM instead of n GEMMs with 64 rows: MKL reaches ~200-215
  GFLOP/s at 512-2048 rows vs ~155-160 at 64 (plausibly: it packs the 25 MB weight once, not
  n times); this alone bounds the speedup at about 1.35x, because the loop is already GEMM-bound;
- transparent huge pages for large tensors (PyTorch's ``THP_MEM_ALLOC_ENABLE=1``): the batched
  path's transient (n, B, C, h, w) buffers are 51 MB each, and first-touch page faults on 4 KB
  pages cost ~10 ms per buffer (mm output, ReLU backward output). The loop's 1.6 MB buffers are
  recycled by malloc and gain nothing. On by default (the script re-executes itself with the
  variable set, as it must be set before torch allocates); ``--no-thp`` measures without;
- upsampling the (n, B, h, w) maps as a 4D batch: as (1, n*B, h, w) it cost a channels-last
  copy (~2-15 ms, shared by both paths).
Tried without gain: ``torch.func.vmap(vjp)`` (same GEMM, plus a re-run of the encoder under
``vjp``: ~1.2x), one thread (~1.1x: a 64-row GEMM loses less on one core), chunks of 4/8/16
dims per batched backward (each slower than one batch of 32). MKL_VERBOSE shows MKL's generic
(AVX2) sgemm on this AMD CPU, so ~215 GFLOP/s is the ceiling for both paths; with the loop at
~160 GFLOP/s in its GEMMs, 1.5x needs near-zero overhead outside the GEMM.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable

import torch
from torch import Tensor

from vaecam.attention import (
    FORMULATIONS,
    AttentionMaps,
    LayerActivations,
    attention_maps,
    latent_gradients,
)
from vaecam.models import ConvVAE

TARGET, FORMULATION, BATCH = "encoder.2", "per_dim", 64


def forward(model: ConvVAE, x: Tensor) -> tuple[Tensor, Tensor]:
    """``(mu (B, n), A (B, C, h, w))`` with the graph kept."""
    with LayerActivations(model, TARGET) as layer:
        mu, _ = model.encode(x)
    return mu, layer.activations


def loop_gradients(mu: Tensor, A: Tensor) -> Tensor:
    """n backward passes sharing one forward: ``(n, B, C, h, w)``."""
    onehot = torch.eye(mu.shape[1], dtype=mu.dtype, device=mu.device)
    grads = [
        torch.autograd.grad(mu, A, onehot[i].expand_as(mu), retain_graph=True)[0]
        for i in range(mu.shape[1])
    ]
    return torch.stack(grads)


def func_gradients(model: ConvVAE, x: Tensor) -> Tensor:
    """The torch.func alternative: ``vmap(vjp)`` of ``A -> mu`` (the hook substitutes ``A``)."""
    with torch.no_grad(), LayerActivations(model, TARGET) as layer:
        model.encode(x)
    module = layer.module

    def mu_of(A: Tensor) -> Tensor:
        handle = module.register_forward_hook(lambda m, i, o: A)
        try:
            return model.encode(x)[0]
        finally:
            handle.remove()

    mu, vjp = torch.func.vjp(mu_of, layer.activations)
    n = mu.shape[1]
    onehot = torch.eye(n, dtype=mu.dtype, device=mu.device).unsqueeze(1).expand(n, *mu.shape)
    return torch.func.vmap(vjp)(onehot)[0]


def maps_loop(model: ConvVAE, x: Tensor) -> AttentionMaps:
    mu, A = forward(model, x)
    return FORMULATIONS[FORMULATION](A.detach(), loop_gradients(mu, A), tuple(x.shape[-2:]))


def maps_func(model: ConvVAE, x: Tensor) -> AttentionMaps:
    return FORMULATIONS[FORMULATION](
        forward(model, x)[1].detach(), func_gradients(model, x), tuple(x.shape[-2:])
    )


def maps_batched(model: ConvVAE, x: Tensor) -> AttentionMaps:
    return attention_maps(model, x, TARGET, FORMULATION)


def backward_flops(model: ConvVAE, batch: int) -> int:
    """FLOPs of the backward matmuls from ``mu`` to ``A``, all n dims: the cotangents
    ``(n*B, n)`` through ``fc_mu`` (``n -> 1024``) and ``(n*B, 1024)`` through the encoder's FC
    (``1024 -> 6272``, the big one), 2 FLOPs per multiply-add. ReLU masks, reshapes, the
    forward and the formulation are not counted (they are memory-bound and small)."""
    n = model.latent_dim
    fcs = [model.fc_mu, *(m for m in model.encoder if isinstance(m, torch.nn.Linear))]
    return sum(2 * n * batch * fc.in_features * fc.out_features for fc in fcs)


def best_times(paths: dict[str, Callable[[], object]], repeats: int, sync: Callable) -> dict:
    """Best wall time of each path; paths are interleaved so that load affects them alike."""
    for f in paths.values():  # warm-up: allocator, oneDNN/MKL kernels, autograd caches
        f(), f()
    times = {name: float("inf") for name in paths}
    for _ in range(repeats):
        for name, f in paths.items():
            sync()
            start = time.perf_counter()
            f()
            sync()
            times[name] = min(times[name], time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=None, help="torch.set_num_threads")
    parser.add_argument(
        "--thp",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="huge pages for big tensors",
    )
    args = parser.parse_args()
    if args.thp != (os.environ.get("THP_MEM_ALLOC_ENABLE") == "1"):
        # read by PyTorch's CPU allocator once, at its first allocation: re-execute with it set
        env = {**os.environ, "THP_MEM_ALLOC_ENABLE": "1" if args.thp else "0"}
        os.execve(sys.executable, [sys.executable, *sys.argv], env)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else lambda: None

    torch.manual_seed(0)
    model = ConvVAE().to(device).eval()  # authors' MNIST model, latent 32
    x = torch.rand(BATCH, 1, 28, 28, device=device)
    n = model.latent_dim

    ref, batched, func = maps_loop(model, x), maps_batched(model, x), maps_func(model, x)
    diff = max((a - b).abs().max().item() for a, b in zip(ref, batched, strict=True))
    diff_func = max((a - b).abs().max().item() for a, b in zip(ref, func, strict=True))

    t = best_times(
        {
            "loop": lambda: maps_loop(model, x),
            "batched": lambda: maps_batched(model, x),
            "func": lambda: maps_func(model, x),
            "grad_loop": lambda: loop_gradients(*forward(model, x)),
            "grad_batched": lambda: latent_gradients(*forward(model, x)),
        },
        args.repeats,
        sync,
    )
    flops = backward_flops(model, BATCH)
    gflops = flops / t["batched"] / 1e9

    print(
        f"device {device}, threads {torch.get_num_threads()}, THP {args.thp}, "
        f"n={n}, B={BATCH}, 28x28, {TARGET}"
    )
    print(f"backward matmul FLOPs counted: {flops / 1e9:.2f} GFLOP")
    for name, seconds in t.items():
        print(f"{name:>13}: {seconds * 1e3:8.1f} ms  ({flops / seconds / 1e9:6.1f} GFLOP/s)")
    print(f"speedup batched vs loop: {t['loop'] / t['batched']:.2f}x (target >= 1.5x)")
    print(f"  gradient step only:    {t['grad_loop'] / t['grad_batched']:.2f}x")
    print(f"  torch.func vmap(vjp):  {t['loop'] / t['func']:.2f}x")
    print(f"max |maps_batched - maps_loop| = {diff:.2e} (torch.func: {diff_func:.2e})")
    print(
        json.dumps(
            {
                "speedup": round(t["loop"] / t["batched"], 3),
                "speedup_gradients": round(t["grad_loop"] / t["grad_batched"], 3),
                "speedup_func": round(t["loop"] / t["func"], 3),
                "max_abs_diff": diff,
                "max_abs_diff_func": diff_func,
                "gflops": round(gflops, 1),
                "seconds_batched": t["batched"],
                "seconds_loop": t["loop"],
                "seconds_func": t["func"],
                "seconds_grad_batched": t["grad_batched"],
                "seconds_grad_loop": t["grad_loop"],
                "device": str(device),
                "threads": torch.get_num_threads(),
                "thp": args.thp,
                "n": n,
                "batch": BATCH,
            }
        )
    )


if __name__ == "__main__":
    main()
