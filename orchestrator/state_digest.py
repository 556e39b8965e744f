"""What a resume unpickles, checked: the digest of a sweep's state files, kept on the driver's
machine.

``Tuner.restore`` unpickles the files Tune (and the search algorithm) wrote at the top of the
sweep's folder in ``--storage-path`` (``tuner.pkl``, ``experiment_state-*.json`` with pickled
trials, ``searcher-state-*.pkl``); on a cluster the workers' role can write there too, and a
file changed there runs code on the head at ``--resume``. So when a sweep's driver stops (Tune
has written its last state), it records the SHA-256 of each of those files in a record on its own
disk (``$VAECAM_CACHE_DIR`` or ``~/.cache/vaecam``: the head's, which no worker writes), and
``--resume`` refuses a folder whose files differ unless ``--trust-storage`` is given. Trial
checkpoints are not covered: the trainable loads them with ``torch.load(weights_only=True)``,
which runs no code.

What it cannot cover: a driver killed outright (SIGKILL, a lost head) records nothing after its
last start, so its state is unverified; ``--resume`` says so and goes on. A sweep started before
this check, or on another machine, likewise.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from pyarrow import fs

#: Files of the sweep's folder that are not Tune's state: written after Tune's last write.
NOT_STATE = {"summary.csv"}


def state_files(sweep_path: str) -> dict[str, str]:
    """File name -> SHA-256 of each file at the top of the sweep's folder (a local path or a
    ``pyarrow`` URI such as ``s3://...``) but :data:`NOT_STATE`."""
    filesystem, folder = fs.FileSystem.from_uri(sweep_path)
    digests = {}
    for info in filesystem.get_file_info(fs.FileSelector(folder, allow_not_found=True)):
        if info.type != fs.FileType.File or info.base_name in NOT_STATE:
            continue
        digest = hashlib.sha256()
        with filesystem.open_input_stream(info.path) as stream:
            while chunk := stream.read(1 << 20):
                digest.update(chunk)
        digests[info.base_name] = digest.hexdigest()
    return digests


def _record(sweep_path: str) -> Path:
    """The record of a sweep on this machine, named by the folder's full path."""
    root = Path(os.environ.get("VAECAM_CACHE_DIR") or Path.home() / ".cache" / "vaecam")
    return root / "sweep-state" / f"{hashlib.sha256(sweep_path.encode()).hexdigest()[:32]}.json"


def mark_running(sweep_path: str) -> None:
    """Tune is about to write the sweep's state: what was recorded no longer holds."""
    record = _record(sweep_path)
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({"path": sweep_path, "files": None}))


def record_state(sweep_path: str) -> None:
    """Tune has written the sweep's state for the last time in this run: record it."""
    record = _record(sweep_path)
    record.parent.mkdir(parents=True, exist_ok=True)
    partial = record.with_suffix(".partial")
    partial.write_text(json.dumps({"path": sweep_path, "files": state_files(sweep_path)}))
    partial.replace(record)


def changed_state(sweep_path: str) -> list[str] | None:
    """The state files added, removed or changed since the sweep's driver recorded them, or
    None when nothing was recorded here (a driver killed outright, another machine)."""
    record = _record(sweep_path)
    recorded = json.loads(record.read_text())["files"] if record.exists() else None
    if recorded is None:
        return None
    now = state_files(sweep_path)
    return sorted(
        name for name in recorded.keys() | now.keys() if recorded.get(name) != now.get(name)
    )
