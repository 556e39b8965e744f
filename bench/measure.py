"""Shared by the benchmarks: time one call and measure its peak memory, in the calling
process (run each method in a fresh subprocess, :func:`in_fresh_process`, so one's allocations
do not hide another's)."""

from __future__ import annotations

import gc
import json
import resource
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

MB = 2**20


def _status_kb(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def measure(fn: Callable[..., Any], *args: Any, repeats: int) -> dict[str, Any]:
    """``fn(*args)``'s value, best-of-``repeats`` seconds, and peak memory of one call: the rise
    of the resident set (Linux: VmHWM reset through /proc/self/clear_refs; elsewhere the rise of
    ru_maxrss, which only counts if the call exceeds what building the data took) and, as a
    cross-check, tracemalloc's peak (which numpy reports its buffers to)."""
    gc.collect()
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # reset VmHWM (peak RSS) to the current RSS
        rss_method = "VmHWM reset via /proc/self/clear_refs"
        before_kb = _status_kb("VmRSS")
    except OSError:
        rss_method = "ru_maxrss after call - ru_maxrss after building data"
        before_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    value = fn(*args)
    if rss_method.startswith("VmHWM"):
        peak_kb = _status_kb("VmHWM")
    else:
        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    gc.collect()

    tracemalloc.start()
    fn(*args)
    traced_mb = tracemalloc.get_traced_memory()[1] / MB
    tracemalloc.stop()
    gc.collect()

    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - start)
    return {
        "value": value,
        "seconds": min(times),
        "all_seconds": times,
        "peak_rss_mb": (peak_kb - before_kb) / 1024,
        "peak_traced_mb": traced_mb,
        "rss_method": rss_method,
    }


def in_fresh_process(script: str, *args: object) -> dict[str, Any]:
    """Run ``python script *args`` in a new process and return the JSON object on the last line
    of its output (a worker prints its :func:`measure` figures there)."""
    cmd = [sys.executable, script, *map(str, args)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])
