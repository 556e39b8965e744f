"""The Ray instance a command runs on: ``RAY_ADDRESS``'s cluster, or a local instance that the
command starts and takes down with it."""

from __future__ import annotations

import contextlib

import ray


def connect() -> bool:
    """Connect to ``RAY_ADDRESS``'s cluster, or start a local instance, unless Ray is already
    initialised (a Python session's): whether this call did, and :func:`disconnect` is due."""
    if ray.is_initialized():
        return False
    ray.init(include_dashboard=False)
    return True


def disconnect(timeout_s: float = 30.0) -> None:
    """Leave Ray (a local instance shuts down) and wait for this process's children to exit, the
    trials' included: a worker notices that its raylet is gone only after it, and one still
    running (a second Ctrl-C gives Tune no time to stop it) could open or log into an MLflow run
    after the command has closed them. What outlives ``timeout_s`` is killed."""
    import psutil  # Ray's own copy (ray/thirdparty_files) when not installed

    processes = psutil.Process().children(recursive=True)
    ray.shutdown()
    _, alive = psutil.wait_procs(processes, timeout=timeout_s)
    for process in alive:
        with contextlib.suppress(psutil.NoSuchProcess):
            process.kill()
