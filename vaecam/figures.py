"""PNG figures: localisation panels (image | ground truth | reconstruction | heatmaps, the
paper's Fig. 1/4 style), per-trial comparisons, ROC curves, image grids and scatter plots.

Built on ``matplotlib.figure.Figure`` directly, never ``pyplot``: no GUI backend, no global
figure registry to leak memory in long sweeps, and safe to call from several trial threads.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from matplotlib import colormaps
from matplotlib.figure import Figure
from PIL import Image, ImageDraw, ImageFont

__all__ = [
    "compare_trials",
    "image_grid",
    "localisation_image",
    "map_image",
    "roc_figure",
    "scatter_figure",
]

CELL_INCHES = 1.6  # one image panel; tiny 8x8 inputs are upscaled by nearest interpolation
DPI = 100
OVERLAY_ALPHA = 0.5  # heatmap over the grayscale input: both stay visible
HEATMAP = "jet"  # the paper's (and Grad-CAM's) convention: red = most attended
MASK_COLOUR = (1.0, 0.0, 0.0)  # ground-truth defect: red fill and outline
MASK_ALPHA = 0.35  # the defect's texture stays visible under the fill


def _to_numpy(array: torch.Tensor | np.ndarray) -> np.ndarray:
    """A float64 numpy copy of a tensor (any device, grad or not) or array."""
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().double().numpy()
    return np.asarray(array, dtype=np.float64)


def _normalise(maps: np.ndarray) -> np.ndarray:
    """Each map (B, H, W) scaled to [0, 1] on its own, for display only.

    Non-finite values become 0 and a constant map becomes all 0, so a degenerate map shows as
    "no attention" instead of failing the figure.
    """
    maps = np.nan_to_num(maps, nan=0.0, posinf=0.0, neginf=0.0)
    low = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - low
    return np.divide(maps - low, span, out=np.zeros_like(maps), where=span > 0)


def _for_display(images: np.ndarray) -> np.ndarray:
    """(B, C, H, W) in [0, 1] -> (B, H, W) for C = 1 or (B, H, W, 3) for C = 3."""
    images = np.clip(images, 0.0, 1.0)
    return images[:, 0] if images.shape[1] == 1 else images.transpose(0, 2, 3, 1)


def _grayscale(images: np.ndarray) -> np.ndarray:
    """(B, C, H, W) -> (B, H, W) luminance (ITU-R BT.601 weights for RGB)."""
    images = np.clip(images, 0.0, 1.0)
    if images.shape[1] == 1:
        return images[:, 0]
    return np.tensordot(np.array([0.299, 0.587, 0.114]), images, axes=([0], [1]))


def _save(figure: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # tight: a legend outside the axes (or a long tick label) is never cut off
    figure.savefig(path, format="png", bbox_inches="tight", pad_inches=0.1)
    return path


def _check_batch(
    images: np.ndarray, titles: Sequence[str], pixel_maps: Mapping[str, np.ndarray | None]
) -> None:
    """``images`` ``(B, C, H, W)`` with ``C`` 1 or 3 and ``B >= 1``, one title per image, and
    each of ``pixel_maps`` (label -> array, ``None`` when absent) ``(B, H, W)``."""
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be (B, C, H, W) with C = 1 or 3, got {images.shape}")
    if len(images) == 0:
        raise ValueError("no images to draw")
    b, _, h, w = images.shape
    for name, array in pixel_maps.items():
        if array is not None and array.shape != (b, h, w):
            raise ValueError(f"{name} must be (B, H, W) = {(b, h, w)}, got {array.shape}")
    if len(titles) != b:
        raise ValueError(f"{len(titles)} titles for {b} images")


#: The trials figure shows at most this many trials (the first: the caller's best), one row each.
MAX_TRIAL_ROWS = 40


def compare_trials(
    names: list[str],
    values: dict[str, list[float]],
    path: str | Path,
    title: str,
    xlabel: str,
    reference: float | None = 0.5,
) -> Path:
    """A dot chart, one row per trial (the first on top) and one marker per series, e.g. image
    AUROC of the paper's reading beside its controls: readable for one trial and for a hundred
    (the first :data:`MAX_TRIAL_ROWS` are drawn, the title says how many of how many).

    Args:
        names: T trial names (the row labels), in the order to show them.
        values: series name -> T values; NaN (a failed trial) draws no marker, and a row with
            none is labelled "n/a".
        path: where to write the PNG (parent folders are created).
        title, xlabel: the figure's title and value-axis label.
        reference: where to draw a dashed reference line: 0.5 is chance level for AUROC;
            None for none (e.g. a chart of losses).

    Returns:
        ``path``, as a ``Path``.
    """
    if not names:
        raise ValueError("no trials to compare")
    if not values:
        raise ValueError("no series to plot")
    for series, numbers in values.items():
        if len(numbers) != len(names):
            raise ValueError(f"series {series!r} has {len(numbers)} values for {len(names)} trials")
    shown = min(len(names), MAX_TRIAL_ROWS)
    if shown < len(names):
        title = f"{title} (first {shown} of {len(names)})"
    rows = np.arange(shown)
    figure = Figure(figsize=(7.0, 1.4 + 0.28 * shown), dpi=DPI, layout="constrained")
    ax = figure.subplots()
    markers = "os^Dvp<>hX*P"
    table = {
        series: np.array([math.nan if v is None else float(v) for v in numbers[:shown]])
        for series, numbers in values.items()
    }
    for i, (series, heights) in enumerate(table.items()):
        ax.plot(heights, rows, markers[i % len(markers)], label=series, markersize=6, alpha=0.85)
    for row in rows:
        if all(not np.isfinite(heights[row]) for heights in table.values()):
            ax.annotate("n/a", (0.01, row), xycoords=("axes fraction", "data"), va="center")
    if reference is not None:
        label = "chance (0.5)" if reference == 0.5 else f"reference ({reference:g})"
        ax.axvline(reference, color="gray", linestyle="--", linewidth=1, label=label)
    finite = np.concatenate(list(table.values()))
    finite = finite[np.isfinite(finite)]
    if finite.size == 0 or (finite.min() >= 0.0 and finite.max() <= 1.0):
        ax.set_xlim(-0.02, 1.02)  # AUROC-like scores: keep the full [0, 1] scale for honesty
    ax.set_yticks(rows, names[:shown], fontsize=8)
    ax.set_ylim(shown - 0.5, -0.5)  # the first trial on top
    ax.grid(axis="x", linewidth=0.5, alpha=0.5)
    ax.set_title(title, fontsize=10)
    ax.set_xlabel(xlabel)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(figure, path)


CELL = round(CELL_INCHES * DPI)  # one panel's cell in a mosaic figure, in pixels
PANEL = CELL - 24  # the panel inside it: room for its scale label and the row label
HEADER = 54  # pixels above the first row for the (three-line) column titles
TITLE_POINTS = 9  # column and row titles: readable at 100% zoom
SCALE_POINTS = 7  # a heatmap's raw [min, max] under it


def _resize(panel: np.ndarray, size: int) -> np.ndarray:
    """A (h, w) or (h, w, 3) array in [0, 1] resized to ``size`` x ``size``: nearest when
    enlarging (an 8x8 digit stays 64 honest squares, not a blur), averaging when shrinking."""
    image = Image.fromarray(np.uint8(np.clip(panel, 0.0, 1.0) * 255 + 0.5))
    smaller = image.width > size or image.height > size
    resample = Image.Resampling.BOX if smaller else Image.Resampling.NEAREST
    return np.asarray(image.resize((size, size), resample), dtype=np.float64) / 255


def _as_rgb(panel: np.ndarray) -> np.ndarray:
    return np.repeat(panel[..., None], 3, axis=-1) if panel.ndim == 2 else panel


def _outline(mask: np.ndarray) -> np.ndarray:
    """The boundary pixels of a bool mask (inside, next to outside or the edge)."""
    padded = np.pad(mask, 1)
    inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~inner


def localisation_image(
    images: torch.Tensor | np.ndarray,
    masks: torch.Tensor | np.ndarray | None,
    maps: Mapping[str, Any],
    titles: Sequence[str],
    recons: torch.Tensor | np.ndarray | None = None,
) -> Image.Image:
    """One picture, one row per image: image | ground truth | reconstruction | one heatmap column
    per map (the paper's Fig. 1/4 view, with every map of a scoring grid side by side).

    The ground-truth defect is filled and outlined in red on the image, and each anomaly map
    (e.g. attention under each formulation, reconstruction error) is drawn as a jet heatmap
    over the grayscale image, normalised per panel for display only. Because that hides the
    maps' scales, each heatmap panel is labelled with its raw ``[min, max]``. The panels are
    composed into one image (``CELL`` pixels a panel, plus a header for the column titles)
    with Pillow: a figure of 60 panels takes milliseconds, where 60 matplotlib axes take
    seconds.

    Args:
        images: (B, C, H, W) in [0, 1], C = 1 or 3.
        masks: (B, H, W) ground truth, bool or 0/1 (values > 0.5 are drawn as defect); an
            all-zero mask (an anomaly-free image) draws no outline. None: no such column (data
            without pixel ground truth, such as MNIST).
        maps: column title -> (B, H, W) anomaly map at image resolution, any scale, e.g.
            ``{"attention": a, "recon. error": e}``; columns follow the dict's order.
        titles: B row labels, e.g. ``"bottle/broken_large 3"``.
        recons: (B, C, H, W) reconstructions in [0, 1], drawn after the ground truth; None:
            no such column.

    Returns:
        The picture, an RGB image.
    """
    images = _to_numpy(images)
    masks = None if masks is None else _to_numpy(masks)
    recons = None if recons is None else _to_numpy(recons)
    raw = {name: _to_numpy(array) for name, array in maps.items()}
    _check_batch(images, titles, {"masks": masks} | {f"map {k!r}": v for k, v in raw.items()})
    if recons is not None and recons.shape != images.shape:
        raise ValueError(f"recons {recons.shape} must match images {images.shape}")
    shown, background = _for_display(images), _grayscale(images)
    heat = {name: _normalise(array) for name, array in raw.items()}
    jet = colormaps[HEATMAP]

    columns = ["image"] + (["ground truth"] if masks is not None else [])
    columns += ["reconstruction"] if recons is not None else []
    columns += list(raw)
    rows = len(images)
    mosaic = np.ones((HEADER + rows * CELL, len(columns) * CELL, 3))
    labels: list[tuple[float, float, str, dict[str, Any]]] = []  # (x px, y px, text, style)
    for row in range(rows):
        panels = [_as_rgb(_resize(shown[row], PANEL))]
        if masks is not None:
            defects = _resize(masks[row] > 0.5, PANEL) > 0.5
            panel = panels[0].copy()
            panel[defects] = (1 - MASK_ALPHA) * panel[defects] + MASK_ALPHA * np.array(MASK_COLOUR)
            panel[_outline(defects)] = MASK_COLOUR
            panels.append(panel)
        if recons is not None:
            panels.append(_as_rgb(_resize(_for_display(recons[row : row + 1])[0], PANEL)))
        gray = _as_rgb(_resize(background[row], PANEL))
        for name in raw:
            colour = jet(_resize(heat[name][row], PANEL))[..., :3]
            panels.append((1 - OVERLAY_ALPHA) * gray + OVERLAY_ALPHA * colour)
            values = raw[name][row]
            finite = values[np.isfinite(values)]
            scale = f"[{finite.min():.3g}, {finite.max():.3g}]" if finite.size else "not finite"
            x = (len(panels) - 1) * CELL + CELL / 2
            style = {"fontsize": SCALE_POINTS}
            labels.append((x, HEADER + row * CELL + 4 + PANEL + 10, scale, style))
        top = HEADER + row * CELL + 4
        for col, panel in enumerate(panels):
            left = col * CELL + 16
            mosaic[top : top + PANEL, left : left + PANEL] = panel
        style = {"fontsize": TITLE_POINTS, "rotation": 90}
        labels.append((8, top + PANEL / 2, titles[row], style))
    for col, name in enumerate(columns):
        labels.append((col * CELL + CELL / 2, HEADER / 2, name, {"fontsize": TITLE_POINTS}))

    canvas = Image.fromarray(np.uint8(mosaic * 255 + 0.5))
    _draw_labels(canvas, labels)
    return canvas


#: The side of a :func:`map_image`, at most: MLflow's image grid shows square pictures of up
#: to this size whole.
MAP_IMAGE = 512


def map_image(
    images: torch.Tensor | np.ndarray,
    maps: torch.Tensor | np.ndarray,
    titles: Sequence[str],
    heading: str,
    masks: torch.Tensor | np.ndarray | None = None,
    size: int = MAP_IMAGE,
) -> Image.Image:
    """One map for a few images, as a square picture of ``size`` pixels for MLflow's image grid
    (the same key in every trial shows the same images side by side): the map as a heatmap
    over each grayscale image in a square grid of tiles, the ground truth outlined in white
    where there is one, ``heading`` on top and each image's title over its tile.

    Args:
        images: (B, C, H, W) in [0, 1], C = 1 or 3.
        maps: (B, H, W), any scale (each tile normalised for display).
        titles: B tile titles.
        heading: what the map is, e.g. ``"outlier_3: attention encoder.2 authors mu"``.
        masks: (B, H, W) ground truth or None.
        size: the picture's side in pixels.

    Returns:
        The picture, RGB, ``size`` x ``size``.
    """
    images, maps = _to_numpy(images), _to_numpy(maps)
    masks = None if masks is None else _to_numpy(masks)
    _check_batch(images, titles, {"maps": maps, "masks": masks})
    side = math.ceil(math.sqrt(len(images)))
    header, caption = 28, 18  # the heading; each tile's title (and the gap between tiles)
    pitch = (size - header) // side
    tile = pitch - caption
    canvas = Image.new("RGB", (size, size), "white")
    heat, background = _normalise(maps), _grayscale(images)
    jet = colormaps[HEATMAP]
    labels: list[tuple[float, float, str, dict[str, Any]]] = [
        (size / 2, header / 2, heading, {"fontsize": TITLE_POINTS})
    ]
    left0 = (size - side * pitch + caption) // 2
    for index in range(len(images)):
        row, col = divmod(index, side)
        gray = _as_rgb(_resize(background[index], tile))
        panel = (1 - OVERLAY_ALPHA) * gray + OVERLAY_ALPHA * jet(_resize(heat[index], tile))[
            ..., :3
        ]
        if masks is not None:
            panel[_outline(_resize(masks[index] > 0.5, tile) > 0.5)] = 1.0
        left, top = left0 + col * pitch, header + row * pitch + caption
        canvas.paste(Image.fromarray(np.uint8(panel * 255 + 0.5)), (left, top))
        labels.append((left + tile / 2, top - caption / 2, titles[index], {"fontsize": 8}))
    _draw_labels(canvas, labels)
    return canvas


def _draw_labels(
    canvas: Image.Image, labels: list[tuple[float, float, str, dict[str, Any]]]
) -> None:
    """Centred text at pixel positions (``fontsize`` in points at :data:`DPI`; ``rotation`` 90
    for a vertical label), with Pillow's own font: no matplotlib artists, so a figure of many
    panels draws in milliseconds."""
    draw = ImageDraw.Draw(canvas)
    for x, y, text, style in labels:
        font = ImageFont.load_default(size=round(style["fontsize"] * DPI / 72))
        if style.get("rotation") == 90:
            left, top, right, bottom = draw.multiline_textbbox((0, 0), text, font=font)
            label = Image.new("RGB", (right - left + 2, bottom - top + 2), "white")
            ImageDraw.Draw(label).multiline_text(
                (1 - left, 1 - top), text, "black", font, align="center"
            )
            label = label.rotate(90, expand=True)
            canvas.paste(label, (round(x - label.width / 2), round(y - label.height / 2)))
        else:
            draw.multiline_text((x, y), text, "black", font, anchor="mm", align="center")


#: A ROC figure draws at most this many curves: more cannot be told apart.
MAX_CURVES = 8


def roc_figure(
    curves: Mapping[str, tuple[np.ndarray, np.ndarray, float]], path: str | Path, title: str
) -> Path:
    """ROC curves of a few methods (at most :data:`MAX_CURVES`: a headline reading and its
    controls) on one square axes, with the chance diagonal and the legend beside the axes.

    Args:
        curves: method name -> ``(fpr, tpr, auroc)``: the curve's points (e.g. from
            ``vaecam.metrics.roc_points``), 1-D and of equal length, and the exact AUROC shown
            in the legend (the plotted points may be a sample of the curve).
        path: where to write the PNG (parent folders are created).
        title: the axes' title, e.g. ``"MVTec AD pixel ROC, all categories"``.

    Returns:
        ``path``, as a ``Path``.
    """
    if not curves:
        raise ValueError("no curves to plot")
    if len(curves) > MAX_CURVES:
        raise ValueError(f"{len(curves)} curves: at most {MAX_CURVES} can be told apart")
    for name, (fpr, tpr, _) in curves.items():
        fpr, tpr = np.asarray(fpr), np.asarray(tpr)
        if fpr.ndim != 1 or fpr.shape != tpr.shape:
            raise ValueError(
                f"curve {name!r}: fpr and tpr must be 1-D of equal length, "
                f"got {fpr.shape} and {tpr.shape}"
            )
    figure = Figure(figsize=(7.5, 4.5), dpi=DPI, layout="constrained")
    ax = figure.subplots()
    ax.plot([0.0, 1.0], [0.0, 1.0], color="gray", linestyle="--", linewidth=1, label="chance")
    for name, (fpr, tpr, area) in curves.items():
        ax.plot(fpr, tpr, linewidth=1.5, label=f"{name} (AUROC {float(area):.3f})")
    # A small margin: a perfect curve runs along x = 0 and y = 1, which the spines would hide.
    ax.set_xlim(-0.02, 1.02)
    ax.set_ylim(-0.02, 1.02)
    ax.set_aspect("equal")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0))
    return _save(figure, path)


def image_grid(
    images: torch.Tensor | np.ndarray,
    path: str | Path,
    row_titles: Sequence[str],
    column_titles: Sequence[str] = (),
    maps: torch.Tensor | np.ndarray | None = None,
) -> Path:
    """A grid of grayscale images ``(R, K, C, H, W)`` (e.g. latent traversals: one row per
    latent dim, one column per value), optionally overlaid with heatmaps ``(R, K, H, W)``
    (e.g. per-dimension attention maps: one row per latent dim, one column per image),
    each normalised per panel for display."""
    images = _grayscale(_to_numpy(images).reshape(-1, *np.shape(images)[-3:]))
    rows, cols = len(row_titles), len(images) // len(row_titles)
    heat = None if maps is None else _normalise(_to_numpy(maps).reshape(-1, *images.shape[-2:]))
    figure = Figure(figsize=(0.9 * cols + 1.0, 0.9 * rows + 0.5), dpi=DPI, layout="constrained")
    axes = np.atleast_2d(figure.subplots(rows, cols, squeeze=False))
    for index, ax in enumerate(axes.flat):
        ax.imshow(images[index], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        if heat is not None:
            ax.imshow(heat[index], cmap=HEATMAP, alpha=OVERLAY_ALPHA, interpolation="bilinear")
        ax.set_xticks([])
        ax.set_yticks([])
    for ax, title in zip(axes[:, 0], row_titles, strict=True):
        ax.set_ylabel(title, fontsize=8)
    for ax, title in zip(axes[0], column_titles, strict=False):
        ax.set_title(title, fontsize=8)
    return _save(figure, path)


def scatter_figure(
    points: Mapping[str, tuple[Sequence[float], Sequence[float]]],
    path: str | Path,
    title: str,
    xlabel: str,
    ylabel: str,
) -> Path:
    """Labelled point clouds, e.g. the paper's Fig. 8: disentanglement metric (y) against
    reconstruction error (x), one colour per model configuration."""
    figure = Figure(figsize=(6.0, 4.5), dpi=DPI, layout="constrained")
    ax = figure.subplots()
    for label, (x, y) in points.items():
        ax.scatter(x, y, label=label, s=30, alpha=0.8)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _save(figure, path)
