"""CPU, memory, disk, network and GPU use of a trial, as MLflow's ``system/...`` metrics.

MLflow records these itself only for runs opened with ``mlflow.start_run(log_system_metrics=
True)``; our trials log into a run they create with ``MlflowClient``, so ``system_metrics``
starts MLflow's own monitor (``mlflow.system_metrics.system_metrics_monitor``) for that run id.

What MLflow 3.17's monitor records, every ``interval_s`` (one sample per step, step 0, 1, ...):
``system/cpu_utilization_percentage``, ``system/system_memory_usage_megabytes`` and
``..._percentage``, ``system/disk_usage_percentage``, ``..._megabytes``,
``system/disk_available_megabytes``, ``system/network_receive_megabytes``,
``system/network_transmit_megabytes`` and, with nvidia-ml-py and an NVIDIA GPU,
``system/gpu_<i>_utilization_percentage``, ``..._memory_usage_megabytes``, ``..._percentage``,
``..._power_usage_watts`` and ``..._percentage``. CPU, memory and network figures are the whole
machine's (psutil's system-wide counters), and GPU ones cover every GPU of the node (NVML ignores
``CUDA_VISIBLE_DEVICES``): with several trials per node, they describe the node, not the trial.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Iterator
from contextlib import contextmanager

_logger = logging.getLogger(__name__)

#: The optional extra that installs what MLflow's monitor needs: psutil, nvidia-ml-py (GPUs).
EXTRA = 'pip install "vaecam[system-metrics]"'
MISSING_PSUTIL = f"System metrics need psutil: {EXTRA}, or turn system metrics off."
MISSING_NVML = f"No GPU system metrics: they need nvidia-ml-py: {EXTRA}."


def require_psutil() -> None:
    """Raise ImportError naming the extra to install when psutil is missing.

    Call on the driver before starting trials when system metrics are on, so a missing package
    stops the sweep once, with this message, instead of failing every trial. (Ray vendors psutil
    and puts it on ``sys.path`` on ``import ray``, so it is usually present in a sweep.)
    """
    try:
        import psutil  # noqa: F401
    except ImportError as error:
        raise ImportError(MISSING_PSUTIL) from error


@contextmanager
def system_metrics(run_id: str, tracking_uri: str, interval_s: float = 10.0) -> Iterator[None]:
    """Record ``system/...`` metrics into the run ``run_id`` while the block runs.

    A background thread samples every ``interval_s`` seconds (MLflow's environment variable
    ``MLFLOW_SYSTEM_METRICS_SAMPLING_INTERVAL`` overrides it) and logs each sample as one step;
    on exit the thread stops and what is buffered is flushed. The run must be ``RUNNING``: the
    monitor stops by itself once the run is terminated. A retried trial continues the steps
    where its earlier attempt stopped.
    """
    require_psutil()
    # Imported here: MLflow's monitor modules import psutil (and pynvml) at import time.
    from mlflow.system_metrics.metrics.gpu_monitor import GPUMonitor
    from mlflow.system_metrics.system_metrics_monitor import SystemMetricsMonitor

    monitor = SystemMetricsMonitor(
        run_id, sampling_interval=interval_s, resume_logging=True, tracking_uri=tracking_uri
    )
    if not any(isinstance(m, GPUMonitor) for m in monitor.monitors):
        _warn_if_gpu_unmonitored()
    monitor.start()
    try:
        yield
    finally:
        monitor.finish()


def _warn_if_gpu_unmonitored() -> None:
    """MLflow skips GPU metrics silently (a log line at INFO) without nvidia-ml-py; say it
    where a GPU is in use, which is when torch has one (a trial has imported torch by now)."""
    if importlib.util.find_spec("pynvml") is not None:
        return  # installed: NVML found no GPU, nothing to say
    try:
        import torch

        has_gpu = torch.cuda.is_available()
    except Exception:
        has_gpu = False
    if has_gpu:
        _logger.warning(MISSING_NVML)
