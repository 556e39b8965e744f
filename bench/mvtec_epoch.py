"""Benchmark: one MVTec AD training epoch from decoded tensors vs decoding the PNGs each epoch.

    python bench/mvtec_epoch.py [--data-root ../shared/data/mvtec_ad] [--category grid]
                                [--image-size 256] [--batch 16] [--min-seconds 10]

``ResNetVAE()`` (ResNet-18 encoder, latent 32, 256x256), Adam 1e-4, batch 16, loss
``model.loss`` (Bernoulli BCE + KL), on ``--device`` (default the CPU; with cuda the last line also
gives the peak GPU memory of one trial), trained on ``<category>/train/good``:

* cached: ``load_mvtec`` decodes the category once (timed separately: the one-time cost);
  each batch is then an index into the in-memory (N, 3, S, S) tensor;
* uncached: each batch calls ``read_image`` (Pillow decode + antialiased resize) for each of its
  images, in the training loop, as a map-style ``torch.utils.data.Dataset`` without a cache
  and ``DataLoader(num_workers=0)`` would. (Loader workers could overlap decoding with the
  step, but on a 2-core machine they take the cores the step uses.)

Both variants run the same loop on their own identically initialised model, with the same
shuffling; untimed warm-up steps each first (one per batch shape: first-call costs), then epochs,
interleaved (ABBA...) so drift on a shared machine hits both alike, until each variant has
run ``--min-seconds`` (at least one epoch, at most ``--max-epochs``).

``--data-root`` defaults to ``../shared/data/mvtec_ad`` relative to the repository root (the
real ``grid``: 25 training PNGs of 1024x1024). Without it, a synthetic category of the same
count and size is written to a temporary folder (vaecam.data.synthetic), with a message.

Prints readable lines, then one JSON object as the last line.
"""

from __future__ import annotations

import argparse
import atexit
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor

from vaecam.data.mvtec import check_category, load_mvtec, read_image
from vaecam.models import ResNetVAE
from vaecam.training import batches, train_step

REPO = Path(__file__).resolve().parents[1]


def mvtec_parser(doc: str) -> argparse.ArgumentParser:
    """A benchmark's parser with the MVTec AD trial's data and batch flags."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    parser.add_argument("--data-root", type=Path, default=Path("../shared/data/mvtec_ad"))
    parser.add_argument("--category", default="grid")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=16)
    return parser


def parse_args() -> argparse.Namespace:
    parser = mvtec_parser(__doc__)
    parser.add_argument("--lr", type=float, default=1e-4)
    parser.add_argument("--min-seconds", type=float, default=10.0, help="per variant")
    parser.add_argument("--max-epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--device",
        default="cpu",
        help="cuda: also reports peak GPU memory, to size how many trials share one GPU",
    )
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads")
    return parser.parse_args()


def resolve_data(root: Path, category: str) -> tuple[Path, str]:
    """The data root to use and a label: the real data if present, else a synthetic copy of
    the real grid's training set's shape (25 PNGs of 1024x1024, grayscale)."""
    root = (REPO / root).resolve()  # a relative root is relative to the repository
    if (root / category / "train" / "good").is_dir():
        return root, "real"
    print(
        f"MVTec AD '{category}' not found under {root} (expected {category}/train/good/*.png; "
        "the data is at https://www.mvtec.com/company/research/datasets/mvtec-ad).\n"
        "Falling back to a SYNTHETIC category of 25 training PNGs of 1024x1024 "
        "(vaecam.data.synthetic); timings are indicative only."
    )
    from vaecam.data.synthetic import make_mvtec

    folder = tempfile.TemporaryDirectory(prefix="mvtec_bench_")
    atexit.register(folder.cleanup)
    synthetic = Path(folder.name)
    make_mvtec(
        synthetic,
        categories=(category,),
        n_train=25,
        n_good=1,
        defects=("crack",),
        n_per_defect=1,
        size=1024,
    )
    return synthetic, "synthetic"


class Variant:
    """One way of feeding batches to its own model: ``images(index) -> (B, 3, S, S)``."""

    def __init__(self, name: str, images: Callable[[Tensor], Tensor], args: argparse.Namespace):
        self.name, self.images, self.args = name, images, args
        torch.manual_seed(args.seed)  # same initial weights for both variants
        self.model = ResNetVAE(image_size=args.image_size).to(args.device)
        self.model.train()
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=args.lr)
        self.generator = torch.Generator().manual_seed(args.seed)  # same shuffles and z draws
        self.seconds = 0.0  # timed epochs only
        self.load_seconds = 0.0  # of which: getting the batch's images
        self.epochs = 0
        self.last_loss = float("nan")

    def step(self, index: Tensor) -> float:
        """One optimisation step on the images ``index``; returns seconds spent loading them."""
        start = time.perf_counter()
        x = self.images(index).to(self.args.device)
        loaded = time.perf_counter() - start
        terms = train_step(self.model, self.optimizer, x, self.generator)  # what trials run
        self.last_loss = terms["loss"] / x[0].numel()  # per pixel, readable
        return loaded

    def warm_up(self, n: int) -> float:
        """One step at each batch size an epoch uses (full, and the remainder if any): a new
        input shape costs a first call (oneDNN primitives, allocator growth) of seconds."""
        start = time.perf_counter()
        for size in sorted({min(self.args.batch, n), n % self.args.batch} - {0}, reverse=True):
            self.step(torch.arange(size))
        return time.perf_counter() - start

    def epoch(self, n: int) -> float:
        start = time.perf_counter()
        loaded = sum(self.step(index) for index in batches(n, self.args.batch, self.generator))
        seconds = time.perf_counter() - start
        self.seconds += seconds
        self.load_seconds += loaded
        self.epochs += 1
        return seconds


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    root, source = resolve_data(args.data_root, args.category)
    size = args.image_size

    start = time.perf_counter()
    data = load_mvtec(root, args.category, size)
    decode_seconds = time.perf_counter() - start
    train = data.train
    n = len(train)
    paths = check_category(root, args.category)[0]  # the training files load_mvtec read
    print(
        f"data: {source} {args.category} at {root}: {n} train + {len(data.test_paths)} test "
        f"images -> {size}x{size}; one-time decode into the cache {decode_seconds:.2f} s "
        f"({1000 * decode_seconds / (n + len(data.test_paths)):.0f} ms/test-or-train image, "
        f"masks included, thread pool)"
    )
    print(
        f"model: ResNetVAE() latent 32, batch {args.batch}, Adam {args.lr}, {args.device}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}"
    )

    cache = train.to(args.device)  # on a GPU the cache can live in its memory
    cached = Variant("cached", lambda index: cache[index], args)
    uncached = Variant(
        "uncached",
        lambda index: torch.stack([read_image(paths[i], size) for i in index.tolist()]),
        args,
    )
    for variant in (cached, uncached):
        print(f"warm-up steps ({variant.name}, untimed): {variant.warm_up(n):.2f} s")

    order = [cached, uncached]
    while True:
        for variant in order:
            seconds = variant.epoch(n)
            print(
                f"epoch {variant.epochs} {variant.name:>8}: {seconds:6.2f} s "
                f"({n / seconds:5.2f} images/s; loading {variant.load_seconds / variant.epochs:.2f}"
                f" s/epoch; loss/pixel {variant.last_loss:.4f})"
            )
        order.reverse()  # ABBA: neither variant always runs first
        done = min(v.seconds for v in order) >= args.min_seconds
        if done or min(v.epochs for v in order) >= args.max_epochs:
            break

    rate = {v.name: n * v.epochs / v.seconds for v in (cached, uncached)}
    speedup = rate["cached"] / rate["uncached"]
    print(
        f"cached {rate['cached']:.2f} images/s vs uncached {rate['uncached']:.2f} images/s: "
        f"{speedup:.3f}x; decoding costs the uncached loop "
        f"{uncached.load_seconds / uncached.epochs:.2f} s per epoch of "
        f"{uncached.seconds / uncached.epochs:.2f} s; the cache paid {decode_seconds:.2f} s once"
    )
    print(
        json.dumps(
            {
                "speedup": round(speedup, 4),
                "device": args.device,
                "peak_gpu_memory_mb": (
                    round(torch.cuda.max_memory_allocated() / 2**20, 1)
                    if args.device.startswith("cuda")
                    else None
                ),
                "images_per_second_cached": round(rate["cached"], 3),
                "images_per_second_uncached": round(rate["uncached"], 3),
                "image_size": size,
                "batch": args.batch,
                "n_images": n,
                "epochs_per_variant": cached.epochs,
                "cache_decode_seconds": round(decode_seconds, 3),
                "cache_decoded_images": n + len(data.test_paths),
                "uncached_load_seconds_per_epoch": round(
                    uncached.load_seconds / uncached.epochs, 3
                ),
                "cached_load_seconds_per_epoch": round(cached.load_seconds / cached.epochs, 4),
                "data": source,
                "category": args.category,
                "threads": torch.get_num_threads(),
            }
        )
    )


if __name__ == "__main__":
    main()
