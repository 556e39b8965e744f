"""UCSD Ped1: video anomaly localisation (PAPER.md sections 1, 3 and 6), plugged into the
anomaly skeleton (:mod:`vaecam.experiments.anomaly`). Everything known of the dataset is here
(:data:`UCSD`): its settings, its plug-in, its layout under a data root
(``<root>/UCSD_Anomaly_Dataset.v1p2/<scene>``), its download and its generated stand-in; its
files are read by :mod:`vaecam.data.ucsd`.

Train on frames of normal training clips (whole held-out clips validate). The field's standard
metrics: from each map, pixel AUROC over the pooled pixels of the clips with masks and the
pixel-level criterion of Mahadevan et al. 2010 (a frame is detected when 40% of its anomalous
pixels are); from each frame score, frame-level AUROC and EER over all clips. Clips without
pixel masks are never scored as all-normal: they enter the frame-level metrics only. The
reproduction found a plain "average reconstruction" baseline beat the paper's model here: put
``average_recon`` in the scoring grid beside ``attention`` and ``recon``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import Tensor

from vaecam.data import DataSource
from vaecam.data.download import Download, anomalib_archive
from vaecam.data.images import Progress
from vaecam.data.synthetic import example_ucsd, found_at, written_once
from vaecam.data.ucsd import SCENES, UCSD_URL, load_ucsd, verify_ucsd
from vaecam.experiments.common import (
    AnomalyData,
    AnomalySettings,
    Benchmark,
    Dataset,
    Found,
    subset_source,
)
from vaecam.metrics import pixel_criterion_scores
from vaecam.settings import setting
from vaecam.uncertainty import bootstrap_interval, interval_metrics, pixel_auroc_interval

DOWNLOAD = Download(
    name="ucsd",
    title="UCSD Anomaly Detection Dataset (v1p2)",
    folder="UCSD_Anomaly_Dataset.v1p2",
    loader_root="folder",
    parts=SCENES,
    # the authors' own link (SVCL, UC San Diego), as anomalib uses it
    # (src/anomalib/data/datamodules/video/ucsd_ped.py, DOWNLOAD_INFO): 706 MiB
    sources=anomalib_archive(
        "http://www.svcl.ucsd.edu/projects/anomaly/UCSD_Anomaly_Dataset.tar.gz",
        740306953,
        "2329af326951f5097fdd114c50e853957d3e569493a49d22fc082a9fd791915b",
        "5006421b89885f45a6f93b041145f2eb",
    ),
    kind="archive",
    # The archive holds UCSD_Anomaly_Dataset.v1p2/{UCSDped1,UCSDped2}/...
    strip="UCSD_Anomaly_Dataset.v1p2",
    licence="the authors' terms (V. Mahadevan, W. Li, V. Bhalodia, N. Vasconcelos, "
    "SVCL, UC San Diego): see the dataset page",
    homepage=UCSD_URL,
)


@dataclass(frozen=True)
class UCSDSettings(AnomalySettings):
    """The reproduction's Ped1 setup (PAPER.md section 3): conv 1 -> 64 -> 128 -> 256 with batch
    norm, FC 1024, latent 32, 100x100 frames (or 96x96), Adam 1e-4, batch 32."""

    dataset: str = setting("ucsd", data=True)
    scene: str = setting("UCSDped1", choices=SCENES, data=True)
    image_size: int = setting(100, ge=8)  # 100 or 96: the reproduction's two models
    val_clips: int = setting(3, ge=1)  # whole training clips held out (frames are near-duplicates)
    model_options: dict[str, Any] = setting(
        {"widths": [64, 128, 256], "batch_norm": True, "hidden": 1024}
    )
    lr: float = setting(1e-4, gt=0)
    batch_size: int = setting(32, ge=1)
    epochs: int = setting(200, ge=1)  # the reproduction trained 512
    figure_examples: int = setting(3, ge=0)
    # the reproduction's test_expVAE.py default (its batch-wide RMS depends on it)
    score_batch_size: int = setting(4, ge=1)


def check(settings: UCSDSettings, progress: Progress | None = None) -> None:
    """The layout, the frame labels, and every frame and mask decoded once, before any trial
    starts."""
    verify_ucsd(Path(settings.data_root), settings.scene, progress)


def load(settings: UCSDSettings) -> AnomalyData:
    data = load_ucsd(
        Path(settings.data_root), settings.image_size, settings.val_clips, settings.scene
    )
    labels = data.test_labels
    return AnomalyData(
        train=data.train,
        val=data.val,
        test=data.test_frames,
        anomalous=labels,
        groups=["anomalous" if label else "normal" for label in labels.tolist()],
        titles=[
            f"clip {clip} frame {frame}"
            for clip, frame in zip(data.test_clip.tolist(), data.test_frame.tolist(), strict=True)
        ],
        masks=data.test_masks,
        has_mask=data.has_mask,
        units=data.test_clip,  # a clip's frames are correlated: the clip is the unit
    )


def map_metrics(maps: Tensor, data: AnomalyData, settings: UCSDSettings) -> dict[str, float]:
    """Over the frames of the clips with pixel masks: ``pixel_auroc`` (pooled pixels) and the
    pixel-level criterion's ``pixel_criterion_auroc``, ``pixel_criterion_eer`` and
    ``pixel_criterion_excluded`` (anomalous frames with an empty mask). Each AUROC and EER has
    its 95% bootstrap interval over clips (a clip's frames are not independent) and counts."""
    annotated = data.has_mask
    masks, clips = data.masks[annotated], data.units[annotated]
    out = interval_metrics("pixel_auroc", pixel_auroc_interval(maps[annotated], masks, clips))
    criterion = pixel_criterion_scores(maps[annotated], masks, data.anomalous[annotated])
    for name, metric in (
        ("pixel_criterion_auroc", "auroc"),
        ("pixel_criterion_eer", "equal_error_rate"),
    ):
        interval = bootstrap_interval(
            metric, criterion.scores, criterion.is_anomalous, groups=clips[criterion.frames]
        )
        out |= interval_metrics(name, interval)
    return out | {"pixel_criterion_excluded": criterion.n_excluded}


def image_metrics(scores: Tensor, data: AnomalyData, settings: UCSDSettings) -> dict[str, float]:
    """``frame_auroc`` and ``frame_eer`` over every test frame, each with its 95% bootstrap
    interval over clips and frame counts."""
    return {
        name: value
        for name, metric in (("frame_auroc", "auroc"), ("frame_eer", "equal_error_rate"))
        for name, value in interval_metrics(
            name, bootstrap_interval(metric, scores, data.anomalous, groups=data.units)
        ).items()
    }


def source(settings: UCSDSettings) -> DataSource:
    """The scene's folder (its clips, frame labels and masks)."""
    return subset_source("ucsd", settings.data_root, "scene", settings.scene, UCSD_URL)


def find(root: Path, quick: bool, cache: Path) -> Found | str:
    """Ped1 under ``<root>/UCSD_Anomaly_Dataset.v1p2``; with ``quick`` and none there, the
    generated stand-in."""
    folder = root / DOWNLOAD.folder
    if (folder / "UCSDped1" / "Test").is_dir():
        return Found("ucsd", str(folder), found_at(folder))
    missing = f"UCSD Ped1 is not under {folder} (UCSDped1/Train, UCSDped1/Test)"
    if quick:
        data = f"synthetic: generated in the UCSD layout ({missing})"
        return Found("ucsd", str(generate(cache)), data)
    return missing


def generate(cache: Path) -> Path:
    """The stand-in of ``--quick`` without real data: clips generated in the UCSD layout
    (:func:`~vaecam.data.synthetic.example_ucsd`), once, under ``cache``."""
    return written_once(cache / "ucsd", example_ucsd)


UCSD = Dataset(
    "ucsd",
    Benchmark(UCSDSettings, check, load, source, image_metrics, map_metrics),
    download=DOWNLOAD,
    find=find,
    generate=generate,
)
