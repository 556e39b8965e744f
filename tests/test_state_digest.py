"""--resume refuses a sweep folder whose Tune state changed since the sweep's driver wrote it."""

from pathlib import Path

import pytest
from ray import tune

from orchestrator import state_digest, sweep
from orchestrator.tracking import start_sweep


def _sweep_folder(root: Path) -> Path:
    """The files Tune leaves at the top of a sweep's folder, and a trial's."""
    folder = root / "ray_results" / "tampered"
    (folder / "trial0" / "checkpoint_000001").mkdir(parents=True)
    (folder / "tuner.pkl").write_bytes(b"pickled tuner")
    (folder / "experiment_state-2026-01-01_00-00-00.json").write_text('{"trial_data": []}')
    (folder / "searcher-state-2026-01-01_00-00-00.pkl").write_bytes(b"pickled searcher")
    (folder / "trial0" / "checkpoint_000001" / "state.pt").write_bytes(b"weights")
    (folder / "summary.csv").write_text("trial_id\n")
    return folder


def test_the_state_files_are_recorded_and_every_change_is_named(tmp_path, monkeypatch):
    monkeypatch.setenv("VAECAM_CACHE_DIR", str(tmp_path / "cache"))
    folder = _sweep_folder(tmp_path)
    path = str(folder)
    assert state_digest.changed_state(path) is None  # nothing recorded on this machine
    state_digest.record_state(path)
    assert state_digest.changed_state(path) == []
    # not state: the summary (written after Tune's last write), checkpoints (weights only)
    (folder / "summary.csv").write_text("trial_id\nchanged\n")
    (folder / "trial0" / "checkpoint_000001" / "state.pt").write_bytes(b"other weights")
    assert state_digest.changed_state(path) == []
    (folder / "tuner.pkl").write_bytes(b"a pickle that runs code")
    (folder / "experiment_state-2027-01-01_00-00-00.json").write_text("{}")  # newer: read first
    (folder / "searcher-state-2026-01-01_00-00-00.pkl").unlink()
    assert state_digest.changed_state(path) == [
        "experiment_state-2027-01-01_00-00-00.json",
        "searcher-state-2026-01-01_00-00-00.pkl",
        "tuner.pkl",
    ]
    state_digest.mark_running(path)  # a driver at work: its record no longer holds
    assert state_digest.changed_state(path) is None


def test_resume_refuses_changed_state_unless_trusted(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("VAECAM_CACHE_DIR", str(tmp_path / "cache"))
    folder = _sweep_folder(tmp_path)
    assert tune.Tuner.can_restore(str(folder))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    start_sweep(uri, "digits", "tampered", {"quick": True})
    state_digest.record_state(str(folder))
    (folder / "tuner.pkl").write_bytes(b"a pickle that runs code")
    args = ["digits", "--resume", "--name", "tampered", "--tracking-uri", uri]
    args += ["--storage-path", str(folder.parent), "--data-root", str(tmp_path)]
    assert sweep.main(args) == 2
    error = capsys.readouterr().err
    assert f"the state files of {folder} changed since the sweep last wrote them" in error
    assert "(tuner.pkl)" in error and "--trust-storage" in error
    parsed = sweep.parse_args([*args, "--trust-storage"])
    sweep.check_state(parsed)  # trusted: no error
    with pytest.raises(SystemExit):
        sweep.parse_args(["digits", "--trust-storage"])
    assert "--trust-storage needs --resume" in capsys.readouterr().err
