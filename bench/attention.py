"""Benchmark: all-dims attention maps, the library's batched path vs a loop of n backwards.

The authors' MNIST model (``ConvVAE()``: latent 32, FC 6272 -> 1024), batch 64, 28x28, target
``encoder.2``, formulation ``per_dim``. All paths share one forward and the formulation; they
differ in how the per-dimension gradients are had:

* ``loop``: what a competent user writes without batching: n calls to ``torch.autograd.grad``
  with ``retain_graph=True`` and one-hot cotangents, each through the 6272 x 1024 FC;
* ``batched``: ``attention_maps``, the library's path. ``per_dim`` reads the gradients only
  through their GAP, and at ``encoder.2`` (then ReLU, Flatten, FC) ``attention._pool_through_head``
  contracts the FC's weight with the ReLU mask first: one 64 x 1024 x 6272 product instead of n;
* ``batched_full``: the full (n, B, C, h, w) gradients from one batched backward (vmap over
  one-hot cotangents), which every formulation can use and ``authors`` needs; one
  (n*B, 1024) x (1024, 6272) GEMM instead of n with 64 rows;
* ``func``: ``torch.func.vmap(vjp)``, the functional alternative to ``batched_full``.

Timings interleave the paths (the machine may be shared) and keep the best of ``--repeats``
after a warm-up. ``gflops`` is the batched path's achieved rate on the FLOPs it does (its
matmuls); ``gflops_full`` that of ``batched_full`` on the full backward's matmuls.

    python bench/attention.py [--device cpu|cuda] [--repeats 7] [--threads N] [--no-thp]

Prints readable lines, then one JSON object as the last line.

Why ``batched_full`` alone is not 1.5x on a 2-core CPU (measured here, AMD EPYC, MKL sgemm):
the loop is already GEMM-bound, and MKL reaches ~200-215 GFLOP/s with 512-2048 rows vs
~155-160 with 64 (MKL_VERBOSE shows its generic AVX2 sgemm on this CPU), which bounds that
speedup at about 1.35-1.4x. What helps it: transparent huge pages for large tensors (PyTorch's
``THP_MEM_ALLOC_ENABLE=1``; its transient (n, B, C, h, w) buffers are 51 MB each and first-touch
page faults on 4 KB pages cost ~10 ms per buffer; on by default: the script re-executes itself
with the variable set, as it must be set before torch allocates; ``--no-thp`` measures
without). Tried without gain: one thread, chunks of 4/8/16 dims per backward.

On a GPU (an H200) every path is bound by the host's per-operation overhead, not by the GPU:
the loop's 32 backward calls take 5-7 ms, the batched paths 1.3-1.7 ms, of which the forward is
~0.3 ms and each call into the autograd engine ~0.3 ms (hence ``phi'(A)`` by the chain rule in
the batched path, not by a backward call). The maps are upsampled channels-last: CUDA's NCHW
bilinear kernel loops over N*C inside each output pixel's thread (0.4 ms for these maps).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from functools import partial

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
    """The library's path: for ``per_dim`` at ``encoder.2`` only the GAP of the gradients is
    needed, which ``vaecam.attention._pool_through_head`` gets without the big backward GEMM."""
    return attention_maps(model, x, TARGET, FORMULATION)


def maps_batched_full(model: ConvVAE, x: Tensor) -> AttentionMaps:
    """The full ``(n, B, C, h, w)`` gradients from one batched backward (the path every
    formulation can use, and the one ``authors`` needs), then the formulation."""
    mu, A = forward(model, x)
    return FORMULATIONS[FORMULATION](A.detach(), latent_gradients(mu, A), tuple(x.shape[-2:]))


def full_flops(model: ConvVAE, batch: int) -> int:
    """FLOPs of the backward matmuls from ``mu`` to ``A``, all n dims: the cotangents
    ``(n*B, n)`` through ``fc_mu`` (``n -> 1024``) and ``(n*B, 1024)`` through the encoder's FC
    (``1024 -> 6272``, the big one), 2 FLOPs per multiply-add. ReLU masks, reshapes, the
    forward and the formulation are not counted (they are memory-bound and small)."""
    n, hidden, flat = model.latent_dim, model.fc_mu.in_features, model.encoder[-2].in_features
    return 2 * n * batch * hidden * (n + flat)


def pooled_flops(model: ConvVAE, batch: int, channels: int) -> int:
    """FLOPs of the matmuls of ``vaecam.attention._pool_through_head``: the cotangents through
    ``fc_mu``, ``W`` ``(1024, C, hw)`` contracted with ``phi'(A)`` ``(B, C, hw)`` over ``hw``,
    and the ``(n, B, 1024)`` gradients with that ``(B, 1024, C)``; counted as above."""
    n, hidden, flat = model.latent_dim, model.fc_mu.in_features, model.encoder[-2].in_features
    return 2 * batch * hidden * (n * n + flat + n * channels)


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
    cuda = device.type == "cuda"
    sync = torch.cuda.synchronize if cuda else lambda: None

    torch.manual_seed(0)
    model = ConvVAE().to(device).eval()  # authors' MNIST model, latent 32
    x = torch.rand(BATCH, 1, 28, 28, device=device)
    n = model.latent_dim

    channels = forward(model, x)[1].shape[1]
    paths = {
        "loop": maps_loop,
        "batched": maps_batched,
        "batched_full": maps_batched_full,
        "func": maps_func,
    }
    ref = maps_loop(model, x)
    diff = {
        name: max((a - b).abs().max().item() for a, b in zip(ref, f(model, x), strict=True))
        for name, f in paths.items()
        if name != "loop"
    }
    t = best_times({name: partial(f, model, x) for name, f in paths.items()}, args.repeats, sync)
    flops = {"batched": pooled_flops(model, BATCH, channels), "full": full_flops(model, BATCH)}
    gflops = flops["batched"] / t["batched"] / 1e9
    gflops_full = flops["full"] / t["batched_full"] / 1e9

    print(
        f"device {device}, threads {torch.get_num_threads()}, THP {args.thp}, "
        f"n={n}, B={BATCH}, 28x28, {TARGET}, {FORMULATION}"
    )
    print(
        f"matmul FLOPs: batched (pooled) {flops['batched'] / 1e9:.2f} GFLOP, "
        f"full gradients (batched_full, each loop) {flops['full'] / 1e9:.2f} GFLOP"
    )
    for name, seconds in t.items():
        rate = flops["batched"] if name == "batched" else flops["full"]
        print(
            f"{name:>12}: {seconds * 1e3:8.1f} ms  ({rate / seconds / 1e9:6.1f} GFLOP/s)  "
            f"{t['loop'] / seconds:5.2f}x  max|diff| {diff.get(name, 0.0):.1e}"
        )
    target = 5.0 if cuda else 1.5
    print(f"speedup batched vs loop: {t['loop'] / t['batched']:.2f}x (target >= {target}x)")
    print(
        json.dumps(
            {
                "speedup": round(t["loop"] / t["batched"], 3),
                "speedup_full": round(t["loop"] / t["batched_full"], 3),
                "speedup_func": round(t["loop"] / t["func"], 3),
                "max_abs_diff": diff["batched"],
                "max_abs_diff_full": diff["batched_full"],
                "max_abs_diff_func": diff["func"],
                "gflops": round(gflops, 1),
                "gflops_full": round(gflops_full, 1),
                **{f"seconds_{name}": seconds for name, seconds in t.items()},
                "device": str(device),
                "device_name": torch.cuda.get_device_name(device) if cuda else "cpu",
                "threads": torch.get_num_threads(),
                "thp": args.thp,
                "n": n,
                "batch": BATCH,
            }
        )
    )


if __name__ == "__main__":
    main()
