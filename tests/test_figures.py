"""Figures are written as real PNGs of a sensible size, for tiny and MNIST-sized inputs."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from vaecam.figures import (
    CELL,
    HEADER,
    MAX_CURVES,
    MAX_TRIAL_ROWS,
    compare_trials,
    localisation_image,
    map_image,
    roc_figure,
)
from vaecam.metrics import auroc, roc_points


def open_png(path: Path) -> Image.Image:
    assert path.is_file() and path.stat().st_size > 0
    image = Image.open(path)
    image.load()  # decode fully: a truncated file fails here, not just at the header
    assert image.format == "PNG"
    return image


def localisation_figure(
    images: torch.Tensor,
    masks: torch.Tensor | None,
    maps: dict[str, torch.Tensor],
    titles: list[str],
    path: Path,
    recons: torch.Tensor | None = None,
) -> Path:
    """:func:`localisation_image` as a PNG at ``path`` (parent folders created), as the anomaly
    experiment writes its overlays."""
    path.parent.mkdir(parents=True, exist_ok=True)
    localisation_image(images, masks, maps, titles, recons).save(path, format="PNG")
    return path


def batch(b: int, c: int, size: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(b, c, size, size, generator=generator)
    recons = torch.rand(b, c, size, size, generator=generator)
    maps = torch.randn(b, size, size, generator=generator) * 1e3  # any scale: display normalises
    errors = (images - recons).pow(2).mean(1)
    return images, recons, maps, errors


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [8, 16, 28, 300])
@pytest.mark.parametrize("with_recons", [False, True])
def test_overlays_without_masks_png(
    tmp_path: Path, channels: int, size: int, with_recons: bool
) -> None:
    """MNIST's view: no ground truth, the reconstruction and every map side by side."""
    images, recons, maps, errors = batch(3, channels, size)
    path = tmp_path / "sub" / "overlay.png"  # parent folders are created
    returned = localisation_figure(
        images,
        None,
        {"attention\nencoder.2": maps, "recon": errors},
        ["inlier 1", "outlier 7", "outlier 3"],
        path,
        recons=recons if with_recons else None,
    )
    assert returned == path
    width, height = open_png(path).size
    columns = 4 if with_recons else 3
    # One cell per panel, whatever the image size: 8x8 inputs are not drawn 8 px big.
    assert (width, height) == (columns * CELL, HEADER + 3 * CELL)


def test_overlays_draw_the_heatmap_and_keep_the_input_gray(tmp_path: Path) -> None:
    images, recons, maps, _ = batch(1, 1, 16)
    path = localisation_figure(images, None, {"a": maps}, ["inlier 0"], tmp_path / "one.png")
    pixels = np.asarray(open_png(path).convert("RGB"), dtype=np.int32)
    saturation = pixels.max(axis=2) - pixels.min(axis=2)
    assert saturation[:, :CELL].max() < 10  # the input column: gray only (text is black)
    assert saturation[:, CELL:].max() > 100  # the jet heatmap


def test_overlays_accept_numpy_constant_and_nan_maps(tmp_path: Path) -> None:
    images = np.full((2, 1, 8, 8), 0.5)
    maps = np.zeros((2, 8, 8))
    maps[1] = np.nan  # a degenerate map is drawn as "no attention", not an error
    open_png(localisation_figure(images, None, {"flat": maps}, ["a", "b"], tmp_path / "f.png"))


def test_overlays_reject_bad_reconstructions(tmp_path: Path) -> None:
    images, recons, maps, _ = batch(2, 1, 8)
    path = tmp_path / "bad.png"
    with pytest.raises(ValueError, match="recons"):
        localisation_figure(images, None, {"a": maps}, ["a", "b"], path, recons=recons[:, :, :4])
    assert not path.exists()


def test_compare_trials_png_with_failed_trial(tmp_path: Path) -> None:
    names = [f"trial_{i}" for i in range(6)]
    values = {
        "attention": [0.9, 0.8, math.nan, 0.7, 0.65, 0.95],  # trial_2 failed
        "reconstruction": [0.6, 0.55, math.nan, 0.5, 0.45, 0.7],
    }
    path = compare_trials(names, values, tmp_path / "auroc.png", "image AUROC", "AUROC")
    width, height = open_png(path).size
    assert width > height > 100


def test_compare_trials_single_series_and_errors(tmp_path: Path) -> None:
    path = compare_trials(
        ["a"], {"loss": [123.0]}, tmp_path / "loss.png", "loss", "nats", reference=None
    )
    open_png(path)
    with pytest.raises(ValueError, match="'loss' has 1 values for 2 trials"):
        compare_trials(["a", "b"], {"loss": [1.0]}, tmp_path / "x.png", "t", "y")
    with pytest.raises(ValueError, match="no trials"):
        compare_trials([], {}, tmp_path / "x.png", "t", "y")


def defect_batch(b: int, c: int, size: int) -> tuple[torch.Tensor, np.ndarray, dict]:
    """Images with a square defect in every image but the last (anomaly-free), and two maps."""
    images, _, attention, errors = batch(b, c, size, seed=1)
    masks = np.zeros((b, size, size), dtype=bool)
    masks[:-1, size // 4 : size // 2, size // 4 : size // 2] = True
    return images, masks, {"attention": attention, "recon. error": errors.numpy()}


@pytest.mark.parametrize("channels", [1, 3])
def test_localisation_figure_png(tmp_path: Path, channels: int) -> None:
    images, masks, maps = defect_batch(3, channels, 32)
    path = tmp_path / "sub" / "loc.png"  # parent folders are created
    returned = localisation_figure(images, masks, maps, ["bottle 0", "bottle 1", "good"], path)
    assert returned == path
    width, height = open_png(path).size
    # image | ground truth | attention | recon. error, one cell each, under the titles.
    assert (width, height) == (4 * CELL, HEADER + 3 * CELL)


def test_localisation_figure_draws_mask_and_heatmaps(tmp_path: Path) -> None:
    """On a gray image: the image column stays gray, the ground truth shows red, maps colour."""
    images = torch.full((1, 1, 16, 16), 0.5)
    masks = np.zeros((1, 16, 16))
    masks[0, 4:10, 4:10] = 1
    maps = {"a": torch.rand(1, 16, 16), "b": np.linspace(0, 1, 256).reshape(1, 16, 16)}
    path = localisation_figure(images, masks, maps, ["x"], tmp_path / "one.png")
    pixels = np.asarray(open_png(path).convert("RGB"), dtype=np.int32)
    saturation = pixels.max(axis=2) - pixels.min(axis=2)
    assert saturation[:, :CELL].max() < 10  # image column: gray only
    truth = pixels[:, CELL : 2 * CELL]
    assert np.any((truth[..., 0] - truth[..., 1:].max(axis=2)) > 60)  # red defect
    assert saturation[:, 2 * CELL :].max() > 100  # jet heatmaps


def test_localisation_figure_degenerate_maps_and_no_maps(tmp_path: Path) -> None:
    images = np.full((2, 3, 8, 8), 0.5)
    masks = np.zeros((2, 8, 8), dtype=bool)  # no defect anywhere: no outline, no warning
    flat = np.zeros((2, 8, 8))
    flat[1] = np.nan  # drawn as "no anomaly", labelled "not finite"
    open_png(localisation_figure(images, masks, {"flat": flat}, ["a", "b"], tmp_path / "f.png"))
    open_png(localisation_figure(images, masks, {}, ["a", "b"], tmp_path / "none.png"))


def test_localisation_figure_rejects_bad_shapes(tmp_path: Path) -> None:
    images, masks, maps = defect_batch(2, 3, 8)
    path = tmp_path / "bad.png"
    with pytest.raises(ValueError, match="titles"):
        localisation_figure(images, masks, maps, ["only one"], path)
    with pytest.raises(ValueError, match="masks"):
        localisation_figure(images, masks[:, :4], maps, ["a", "b"], path)
    with pytest.raises(ValueError, match="'attention'"):
        localisation_figure(images, masks, {"attention": maps["attention"][:1]}, ["a", "b"], path)
    with pytest.raises(ValueError, match="C = 1 or 3"):
        localisation_figure(images[:, :2], masks, maps, ["a", "b"], path)
    assert not path.exists()


def test_roc_figure_png(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    labels = rng.random(5000) < 0.1
    curves = {}
    for name, shift in (("attention", 1.5), ("recon. error", 0.5)):
        scores = rng.standard_normal(5000) + shift * labels
        fpr, tpr = roc_points(scores, labels, max_points=200)
        curves[name] = (fpr, tpr, auroc(scores, labels))
    path = roc_figure(curves, tmp_path / "sub" / "roc.png", "pixel ROC")
    width, height = open_png(path).size
    assert height > 300 and width > height  # square axes, the legend beside them
    # the legend is outside the axes and whole: the right edge has the legend's frame, not a cut
    pixels = np.asarray(open_png(path).convert("L"))
    assert pixels[:, -3:].min() == 255  # a white margin: nothing was clipped at the right
    many = {f"c{i}": curves["attention"] for i in range(MAX_CURVES + 1)}
    with pytest.raises(ValueError, match="at most 8"):
        roc_figure(many, tmp_path / "x.png", "t")
    with pytest.raises(ValueError, match="no curves"):
        roc_figure({}, tmp_path / "x.png", "t")
    with pytest.raises(ValueError, match="'bad'"):
        roc_figure({"bad": (np.zeros(3), np.zeros(4), 0.5)}, tmp_path / "x.png", "t")


@pytest.mark.parametrize("trials", [1, 100])
def test_compare_trials_is_readable_for_one_trial_and_for_a_hundred(tmp_path: Path, trials):
    names = [f"trial_{i:03d} latent_dim=32" for i in range(trials)]
    values = {
        name: list(np.linspace(0.3, 0.9, trials))
        for name in ("image_auroc/authors_code", "image_auroc/recon", "image_auroc/random")
    }
    path = compare_trials(names, values, tmp_path / "t.png", "trials", "image AUROC")
    width, height = open_png(path).size
    rows = min(trials, MAX_TRIAL_ROWS)
    assert 300 < width < 1200  # the legend beside, not a 3,660 px strip
    assert height >= 28 * rows  # at least 28 px (font 8 pt) a trial's row
    assert height < 200 + 40 * rows  # and no more than it needs


@pytest.mark.parametrize(("examples", "size"), [(1, 8), (4, 16), (10, 256)])
def test_map_image_is_square_at_most_512_px_with_legible_tiles(tmp_path, examples, size):
    images, _, maps, _ = batch(examples, 3, size)
    masks = np.zeros((examples, size, size), dtype=bool)
    image = map_image(images, maps, [f"img {i}" for i in range(examples)], "grid: recon", masks)
    assert image.size == (512, 512)
    pixels = np.asarray(image, dtype=np.int32)
    coloured = (pixels.max(axis=2) - pixels.min(axis=2)) > 20  # the heatmap, not text or gray
    widths = [
        len(run)
        for y in range(0, 512, 8)
        for run in "".join("x" if c else " " for c in coloured[y]).split()
    ]
    tiles = sorted(widths)[-examples:]
    assert min(tiles) >= 96  # every tile at least 96 px wide, tiles apart
    assert max(widths) <= 512 // math.ceil(math.sqrt(examples))
