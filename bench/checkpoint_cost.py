"""Benchmark: what a checkpoint every epoch costs an MVTec AD trial, against one every 10.

    python bench/checkpoint_cost.py [--data-root ../shared/data/mvtec_ad] [--category grid]
                                    [--epochs 3] [--checkpoints 5] [--every 10]

The MVTec AD trial's model (``ResNetVAE``: ResNet-18 encoder, latent 32, 256x256), Adam 1e-4,
batch 16, on the CPU, trained on ``<category>/train/good`` (the real ``grid`` when
``--data-root`` holds it, else a synthetic category of its shape, with a message). Measured in
one run, interleaved (epoch, checkpoint, epoch, ...) so that drift on a shared machine hits both:

* an epoch: ``vaecam.training.train_epoch`` over the training images;
* a checkpoint, exactly as a trial writes it (``orchestrator.trainable``): the training state
  (weights, Adam's moments, generator, metrics) saved atomically into the trial's temporary
  folder, then copied into the sweep's storage folder as Ray Tune persists it (``pyarrow.fs.
  copy_files``, what Tune uses for a local or cloud ``storage_path``; to a bucket it is an
  upload, slower than this local copy).

The time per epoch with a checkpoint every ``k`` epochs is ``epoch + checkpoint / k``; the last
line's ``speedup`` is that of ``--every`` (10, the sweep's default) over every epoch, from the
medians. On a GPU an epoch is far shorter and the checkpoint's share larger.

Prints readable lines, then one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from pyarrow import fs

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.mvtec_epoch import mvtec_parser, resolve_data  # noqa: E402
from orchestrator.trainable import STATE_FILE, checkpoint_folder, save_state  # noqa: E402
from vaecam.data.mvtec import load_mvtec  # noqa: E402
from vaecam.experiments.common import training_state  # noqa: E402
from vaecam.models import ResNetVAE  # noqa: E402
from vaecam.training import train_epoch  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = mvtec_parser(__doc__)
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs")
    parser.add_argument("--checkpoints", type=int, default=5, help="timed checkpoints")
    parser.add_argument("--every", type=int, default=10, help="the sparser interval compared")
    args = parser.parse_args()
    if min(args.epochs, args.checkpoints) < 1 or args.every < 2:
        parser.error("--epochs and --checkpoints must be >= 1, --every >= 2")
    return args


def checkpoint(state: dict, storage: Path, number: int) -> float:
    """Seconds to write ``state`` as a trial's checkpoint ``number`` into ``storage``."""
    start = time.perf_counter()
    with checkpoint_folder("bench") as tmp:
        save_state(state, tmp)
        target = storage / f"checkpoint_{number:06d}"
        target.mkdir()
        fs.copy_files(str(tmp), str(target))
    return time.perf_counter() - start


def main() -> None:
    args = parse_args()
    torch.manual_seed(0)
    root, kind = resolve_data(args.data_root, args.category)
    images = load_mvtec(root, args.category, args.image_size).train
    model = ResNetVAE(image_size=args.image_size)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    generator = torch.Generator().manual_seed(0)
    train_epoch(model, optimizer, images[: args.batch], args.batch, generator)  # warm-up
    epochs, writes = [], []
    with tempfile.TemporaryDirectory(prefix="checkpoint_bench_") as storage:
        for i in range(max(args.epochs, args.checkpoints)):
            if i < args.epochs:
                start = time.perf_counter()
                losses = train_epoch(model, optimizer, images, args.batch, generator)
                epochs.append(time.perf_counter() - start)
                print(f"epoch {i}: {epochs[-1]:.2f} s", flush=True)
            if i < args.checkpoints:
                state = training_state(i, losses, model, optimizer, generator)
                writes.append(checkpoint(state, Path(storage), i))
                print(f"checkpoint {i}: {writes[-1]:.2f} s", flush=True)
        size = (Path(storage) / "checkpoint_000000" / STATE_FILE).stat().st_size
    epoch, write = statistics.median(epochs), statistics.median(writes)
    every_epoch, sparse = epoch + write, epoch + write / args.every
    print(
        f"{kind} {args.category}, {len(images)} training images at {args.image_size}px: "
        f"epoch {epoch:.2f} s, checkpoint {write:.2f} s ({size / 2**20:.0f} MiB); per epoch "
        f"{every_epoch:.2f} s checkpointing every epoch, {sparse:.2f} s every {args.every}"
    )
    figures = {
        "data": kind,
        "train_images": len(images),
        "epoch_s": round(epoch, 3),
        "checkpoint_s": round(write, 3),
        "checkpoint_mb": round(size / 1e6, 1),
        "per_epoch_every_1_s": round(every_epoch, 3),
        f"per_epoch_every_{args.every}_s": round(sparse, 3),
        "speedup": round(every_epoch / sparse, 3),
    }
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
