"""Seeding and the epoch loops shared by every experiment."""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Iterator, Mapping

import numpy as np
import torch
from torch import Tensor

from vaecam.models import VAE


def seed_everything(seed: int) -> torch.Generator:
    """Seed Python, NumPy and torch's global RNGs (weight initialisation draws from torch's) and
    return a CPU generator for everything the experiment draws later (shuffling, sampling ``z``),
    whose state goes into checkpoints so a resumed trial draws what the uninterrupted one would.
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    return torch.Generator().manual_seed(seed)


def batches(n: int, batch_size: int, generator: torch.Generator | None = None) -> Iterator[Tensor]:
    """Index tensors covering ``range(n)``; shuffled when a generator is given."""
    order = torch.randperm(n, generator=generator) if generator is not None else torch.arange(n)
    yield from order.split(batch_size)


def train_step(
    model: VAE, optimizer: torch.optim.Optimizer, x: Tensor, generator: torch.Generator
) -> dict[str, float]:
    """One optimisation step on the batch ``x`` ``(B, C, H, W)``, already on the model's device:
    forward (``z`` sampled with ``generator``), ``model.loss``, backward, ``optimizer.step()``,
    then ``model.after_step`` (e.g. FactorVAE's discriminator update). Returns the batch means
    of the loss terms and whatever ``after_step`` reports. A non-finite loss raises
    ``FloatingPointError`` before the step, so the parameters stay finite.

    The only place the step is written: :func:`train_epoch` (epochs over a tensor) and
    iteration loops over data generated on the fly (dSprites) both call it.
    """
    model.train()
    out = model(x, generator=generator)
    terms = model.loss(x, out, generator)
    if not torch.isfinite(terms["loss"]):
        raise FloatingPointError(f"training loss became {terms['loss'].item()}")
    optimizer.zero_grad(set_to_none=True)
    terms["loss"].backward()
    optimizer.step()
    logged = {name: value.item() for name, value in terms.items()}
    return logged | model.after_step(x, out, generator)


def train_epoch(
    model: VAE,
    optimizer: torch.optim.Optimizer,
    images: Tensor,
    batch_size: int,
    generator: torch.Generator,
    augment: Callable[[Tensor, torch.Generator], Tensor] | None = None,
) -> dict[str, float]:
    """One pass over ``images`` (N, C, H, W) in shuffled mini-batches, each passed through
    ``augment`` when given and then through :func:`train_step`; returns per-image means of the
    loss terms and of the ``after_step`` numbers. A non-finite loss raises
    ``FloatingPointError`` instead of training on.
    """
    device = next(model.parameters()).device

    def steps() -> Iterator[tuple[dict[str, float], int]]:
        for index in batches(len(images), batch_size, generator):
            x = images[index].to(device)
            if augment is not None:
                x = augment(x, generator)
            yield train_step(model, optimizer, x, generator), len(index)

    return _per_image_means(steps())


@torch.no_grad()
def evaluate_loss(model: VAE, images: Tensor, batch_size: int) -> dict[str, float]:
    """Per-image means of the loss terms on ``images`` (N, C, H, W) with ``z = mu``, so that
    validation (model selection, early stopping) is deterministic."""
    model.eval()
    device = next(model.parameters()).device
    steps = (
        (model.loss(x, model(x, sample=False)), len(x))
        for x in (images[index].to(device) for index in batches(len(images), batch_size))
    )
    return _per_image_means(steps)


def _per_image_means(
    steps: Iterable[tuple[Mapping[str, Tensor | float], int]],
) -> dict[str, float]:
    """Per-image means of batch-mean numbers (scalar tensors or floats), from
    ``(terms, batch size)`` pairs."""
    totals: dict[str, float] = {}
    count = 0
    for terms, size in steps:
        count += size
        for name, value in terms.items():
            totals[name] = totals.get(name, 0.0) + float(value) * size
    return {name: total / count for name, total in totals.items()}


@torch.no_grad()
def encode_all(model: VAE, images: Tensor, batch_size: int = 64) -> tuple[Tensor, Tensor]:
    """``mu`` and ``logvar`` (N, n) of ``images`` (N, C, H, W), in eval mode, on the CPU."""
    model.eval()
    device = next(model.parameters()).device
    codes = [model.encode(images[i].to(device)) for i in batches(len(images), batch_size)]
    return torch.cat([mu for mu, _ in codes]).cpu(), torch.cat([lv for _, lv in codes]).cpu()
