"""Provenance of runs: git state, environment, command line, dataset inputs and system metrics,
read back through ``MlflowClient`` from a sqlite store, as the MLflow UI would show them."""

from __future__ import annotations

import importlib.metadata
import json
import os
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow.utils.mlflow_tags import MLFLOW_DATASET_CONTEXT

from orchestrator import provenance
from orchestrator.provenance import (
    COMMAND_TAG,
    GIT_COMMIT_ENV,
    GIT_DIRTY_ENV,
    GIT_ORIGIN_TAG,
    IMAGE_ENV,
    IMAGE_TAG,
    MAX_TAG_LENGTH,
    PACKAGES,
    code_provenance,
    command_line,
    command_tags,
    dataset_digest,
    environment_provenance,
    log_dataset_input,
    log_tags,
)
from orchestrator.system_metrics import require_psutil, system_metrics

COMMIT = "mlflow.source.git.commit"
DIRTY = "mlflow.source.git.dirty"
BRANCH = "mlflow.source.git.branch"
REPO_URL = "mlflow.source.git.repoURL"
AN_HOUR_AGO_NS = time.time_ns() - 3600 * 10**9


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> tuple[str, str]:
    """(tracking URI, experiment id) of one sqlite store for the module: creating its schema
    takes seconds, runs are cheap."""
    uri = f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"
    return uri, MlflowClient(uri).create_experiment("provenance")


@pytest.fixture()
def run_id(store) -> str:
    uri, experiment_id = store
    return MlflowClient(uri).create_run(experiment_id).info.run_id


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    """Digest caches under tmp_path, and no provenance from the environment running the tests."""
    monkeypatch.setenv("VAECAM_CACHE_DIR", str(tmp_path / "cache"))
    for name in (GIT_COMMIT_ENV, GIT_DIRTY_ENV, IMAGE_ENV):
        monkeypatch.delenv(name, raising=False)


# ---------------------------------------------------------------------------------------------
# Code


def _git(repo: Path, *args: str) -> str:
    identity = ["-c", "user.name=test", "-c", "user.email=test@example.com"]
    done = subprocess.run(
        ["git", *identity, "-c", "commit.gpgsign=false", *args],
        cwd=repo,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout.strip()


@pytest.fixture()
def repo(tmp_path, monkeypatch) -> Path:
    """A git repository with one commit on branch ``main``."""
    # Git must not find a repository above tmp_path (the tests may run inside a checkout).
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q", "-b", "main")
    (repo / "train.py").write_text("print(1)\n")
    _git(repo, "add", "train.py")
    _git(repo, "commit", "-q", "-m", "first")
    return repo


def test_git_commit_and_dirty_flag_follow_the_checkout(repo):
    tags = code_provenance(repo)
    first = _git(repo, "rev-parse", "HEAD")
    assert tags[COMMIT] == first and len(first) == 40
    assert tags[DIRTY] == "false"
    assert tags[BRANCH] == "main"
    assert tags[GIT_ORIGIN_TAG] == "git"
    assert REPO_URL not in tags  # no remote

    (repo / "train.py").write_text("print(2)\n")  # an uncommitted edit
    assert code_provenance(repo)[DIRTY] == "true"
    _git(repo, "commit", "-q", "-am", "second")
    tags = code_provenance(repo)
    assert tags[COMMIT] != first and tags[DIRTY] == "false"

    (repo / "new_module.py").write_text("")  # untracked code changes what runs, too
    assert code_provenance(repo)[DIRTY] == "true"


def test_repo_url_has_no_credentials_and_detached_head_has_no_branch(repo):
    _git(repo, "remote", "add", "origin", "https://user:s3cret@example.com/org/vaecam.git")
    _git(repo, "checkout", "-q", "--detach")
    tags = code_provenance(repo)
    assert tags[REPO_URL] == "https://example.com/org/vaecam.git"
    assert BRANCH not in tags and tags[COMMIT] == _git(repo, "rev-parse", "HEAD")


def test_outside_a_repository_the_commit_is_unknown_or_from_the_image(tmp_path, monkeypatch):
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path.parent))
    tags = code_provenance(tmp_path)
    assert tags[COMMIT] == "unknown" and tags[DIRTY] == "unknown"
    assert tags[GIT_ORIGIN_TAG].startswith("unavailable: ")

    monkeypatch.setenv(GIT_COMMIT_ENV, "0123abcd" * 5)  # baked into an image at build time
    monkeypatch.setenv(GIT_DIRTY_ENV, "false")
    tags = code_provenance(tmp_path)
    assert tags[COMMIT] == "0123abcd" * 5 and tags[DIRTY] == "false"
    assert tags[GIT_ORIGIN_TAG] == GIT_COMMIT_ENV


def test_without_git_installed_provenance_says_so(repo, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    tags = code_provenance(repo)
    assert tags[COMMIT] == "unknown"
    assert tags[GIT_ORIGIN_TAG] == "unavailable: git is not installed"


# ---------------------------------------------------------------------------------------------
# Environment and command line


def test_environment_tags_give_package_versions_host_and_image(monkeypatch):
    tags = environment_provenance()
    assert set(PACKAGES) == {"torch", "torchvision", "ray", "mlflow", "numpy", "scikit-learn"}
    for package in PACKAGES:
        assert tags[f"vaecam.version.{package}"] == importlib.metadata.version(package)
    assert tags["vaecam.version.python"] == ".".join(map(str, sys.version_info[:3]))
    assert tags["vaecam.host.cpus"] == str(os.cpu_count())
    for key in ("vaecam.host.cpu", "vaecam.host.name", "vaecam.host.gpu", "vaecam.version.cuda"):
        assert tags[key]
    assert IMAGE_TAG not in tags  # only when a container says which image it is

    monkeypatch.setenv(IMAGE_ENV, "registry.example.com/vaecam:1.0")
    assert environment_provenance()[IMAGE_TAG] == "registry.example.com/vaecam:1.0"
    assert provenance._version("no-such-package-vaecam") == "not installed"


def test_command_line_is_shell_quoted_without_credentials():
    argv = ["python", "-m", "orchestrator.sweep", "mvtec", "--category", "metal nut", "--x=a'b"]
    assert shlex.split(command_line(argv)) == argv  # pastes back into a shell as typed
    uri = ["python", "-m", "orchestrator.sweep", "--tracking-uri", "https://me:tok@mlflow:5000"]
    assert command_line(uri).endswith("--tracking-uri https://mlflow:5000")

    assert command_tags(["python", "-X", "dev", "-m", "orchestrator.sweep", "digits"]) == {
        COMMAND_TAG: "python -X dev -m orchestrator.sweep digits",
        "mlflow.source.name": "orchestrator.sweep",
        "mlflow.source.type": "LOCAL",
    }
    assert command_tags(["python", "-u", "bench/run.py", "-m", "x"])["mlflow.source.name"] == (
        "bench/run.py"
    )
    assert command_tags()[COMMAND_TAG] == shlex.join(sys.orig_argv)  # the default: this process


def test_provenance_tags_reach_the_run_even_a_long_command(store, run_id, repo):
    uri, _ = store
    long_argv = ["python", "-m", "orchestrator.sweep", *[f"--opt{i}=value" for i in range(2000)]]
    assert len(command_line(long_argv)) == MAX_TAG_LENGTH
    tags = {**code_provenance(repo), **command_tags(long_argv), **environment_provenance()}
    log_tags(MlflowClient(uri), run_id, tags)

    logged = MlflowClient(uri).get_run(run_id).data.tags
    assert {key: logged.get(key) for key in tags} == tags
    assert logged[COMMIT] == _git(repo, "rev-parse", "HEAD")
    assert logged[COMMAND_TAG].endswith("characters, truncated]")


# ---------------------------------------------------------------------------------------------
# Dataset digest


def _write(path: Path, data: bytes) -> Path:
    """Write a data file dated an hour ago, as downloaded data is (fresh files are not cached:
    see provenance._RACY_NS)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, ns=(AN_HOUR_AGO_NS, AN_HOUR_AGO_NS))
    return path


@pytest.fixture()
def data(tmp_path) -> Path:
    root = tmp_path / "data"
    _write(root / "good" / "000.png", b"\x89PNG good 0")
    _write(root / "good" / "001.png", b"\x89PNG good 1")
    _write(root / "crack" / "000.png", b"\x89PNG crack 0")
    return root


@pytest.fixture()
def hashed(monkeypatch) -> list[Path]:
    """The files whose content ``dataset_digest`` reads, in order."""
    read: list[Path] = []
    original = provenance._file_sha256

    def counting(path: Path) -> str:
        read.append(path)
        return original(path)

    monkeypatch.setattr(provenance, "_file_sha256", counting)
    return read


def test_digest_is_cached_and_follows_content(data, hashed):
    first = dataset_digest(data)
    assert len(first) == 64 and len(hashed) == 3
    assert provenance.default_cache_path(data).is_file()

    hashed.clear()
    assert dataset_digest(data) == first
    assert hashed == []  # unchanged files: stat only, no content read

    (data / "good" / "001.png").write_bytes(b"\x89PNG GOOD 1")  # an edit: same size, new mtime
    second = dataset_digest(data)
    assert second != first and hashed == [data / "good" / "001.png"]


def test_digest_identifies_files_by_relative_path_and_subset(data, tmp_path):
    whole = dataset_digest(data)
    moved = tmp_path / "elsewhere"
    data.rename(moved)
    assert dataset_digest(moved) == whole  # the same data mounted elsewhere

    good = dataset_digest(moved, files=["good/000.png", moved / "good" / "001.png"])
    assert good != whole
    (moved / "good" / "001.png").rename(moved / "good" / "002.png")
    assert dataset_digest(moved) != whole  # a rename changes the dataset
    _write(moved / ".DS_Store", b"finder")  # hidden files are not data
    assert dataset_digest(moved) == dataset_digest(moved, files=None)


def test_digest_survives_a_broken_cache_and_refuses_no_or_foreign_files(data, tmp_path, hashed):
    cache = tmp_path / "digests.json"
    cache.write_text("{not json")
    expected = dataset_digest(data, cache=tmp_path / "other.json")
    assert dataset_digest(data, cache=cache) == expected
    assert json.loads(cache.read_text())["version"] == 1  # rewritten whole

    fresh = data / "fresh.png"  # written just now: hashed, but not trusted to the cache yet
    fresh.write_bytes(b"new")
    dataset_digest(data, cache=cache)
    hashed.clear()
    dataset_digest(data, cache=cache)
    assert hashed == [fresh]

    with pytest.raises(ValueError, match="No data files"):
        dataset_digest(tmp_path / "empty")
    with pytest.raises(ValueError, match="not under the dataset root"):
        dataset_digest(data, files=[tmp_path / "digests.json"])


# ---------------------------------------------------------------------------------------------
# Dataset inputs


def _inputs(uri: str, run_id: str) -> list:
    return MlflowClient(uri).get_run(run_id).inputs.dataset_inputs


def test_dataset_input_is_visible_with_digest_profile_and_context(store, run_id, data):
    uri, _ = store
    digest = dataset_digest(data)
    kwargs = dict(name="mvtec/bottle", source=data, digest=digest, num_images=3, split="train")
    log_dataset_input(MlflowClient(uri), run_id, **kwargs, profile={"category": "bottle"})

    (logged,) = _inputs(uri, run_id)
    dataset = logged.dataset
    assert dataset.name == "mvtec/bottle"
    assert len(dataset.digest) == provenance.MLFLOW_DIGEST_CHARS
    assert json.loads(dataset.profile) == {
        "num_images": 3,
        "split": "train",
        "sha256": digest,
        "category": "bottle",
    }
    assert dataset.source_type == "local"
    assert json.loads(dataset.source) == {"uri": str(data)}
    assert {t.key: t.value for t in logged.tags} == {MLFLOW_DATASET_CONTEXT: "training"}

    # A retried trial logs it again: still one input.
    log_dataset_input(MlflowClient(uri), run_id, **kwargs, profile={"category": "bottle"})
    assert [i.dataset.digest for i in _inputs(uri, run_id)] == [dataset.digest]


def test_other_data_or_another_split_of_the_same_files_is_another_dataset(store, data):
    uri, experiment_id = store
    client = MlflowClient(uri)
    digest = dataset_digest(data)
    runs = [client.create_run(experiment_id).info.run_id for _ in range(3)]
    log_dataset_input(
        client, runs[0], name="mnist", source=data, digest=digest, num_images=3, split="train"
    )
    # The same files read as the test split: MLflow keeps one profile per (name, digest) in an
    # experiment, so the digest must differ or this run would show the train split's numbers.
    log_dataset_input(
        client, runs[1], name="mnist", source=data, digest=digest, num_images=1, split="test"
    )
    _write(data / "good" / "000.png", b"\x89PNG changed")
    log_dataset_input(
        client,
        runs[2],
        name="mnist",
        source="https://u:p@example.com/mnist.tgz",
        digest=dataset_digest(data),
        num_images=3,
        split="train",
    )

    (train,), (test,), (changed,) = (_inputs(uri, run) for run in runs)
    assert len({train.dataset.digest, test.dataset.digest, changed.dataset.digest}) == 3
    assert json.loads(train.dataset.profile)["num_images"] == 3
    assert json.loads(test.dataset.profile)["num_images"] == 1
    assert test.tags[0].value == "testing"
    assert changed.dataset.source_type == "http"
    assert json.loads(changed.dataset.source) == {"url": "https://example.com/mnist.tgz"}


def _log_together(client: MlflowClient, runs: list[str], data: Path, digest: str) -> list:
    """Each run logs the same dataset from its own thread, released at the same moment."""
    start, errors = threading.Barrier(len(runs)), []

    def log(run: str) -> None:
        start.wait()
        try:
            log_dataset_input(
                client, run, name="race", source=data, digest=digest, num_images=3, split="train"
            )
        except Exception as error:
            errors.append(error)

    threads = [threading.Thread(target=log, args=(run,)) for run in runs]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return errors


def test_trials_logging_the_same_dataset_together_each_get_it(store, data):
    """MLflow checks for a dataset and inserts it without a lock: trials that start at the same
    moment race on the insert (seen in CI as a trial failing on a UNIQUE constraint)."""
    uri, experiment_id = store
    client = MlflowClient(uri)
    for attempt in range(3):  # one round loses the race most of the time; three almost always
        runs = [client.create_run(experiment_id).info.run_id for _ in range(8)]
        assert _log_together(client, runs, data, digest=f"d{attempt}") == []
        inputs = [_inputs(uri, run) for run in runs]
        assert [len(i) for i in inputs] == [1] * len(runs)
        assert len({i.dataset.digest for (i,) in inputs}) == 1


# ---------------------------------------------------------------------------------------------
# System metrics


def test_missing_psutil_is_one_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "psutil", None)  # makes `import psutil` fail
    with pytest.raises(ImportError, match=r"vaecam\[system-metrics\]"):
        require_psutil()
    with pytest.raises(ImportError, match=r"vaecam\[system-metrics\]"):
        with system_metrics("0" * 32, "sqlite:///unused.db"):
            pass


def test_system_metrics_are_logged_under_system(store, run_id):
    import ray  # noqa: F401  Ray vendors psutil (trials always have it); it may be nothing else

    pytest.importorskip("psutil")
    uri, _ = store
    with system_metrics(run_id, uri, interval_s=0.2):
        time.sleep(1.0)
    client = MlflowClient(uri)
    metrics = client.get_run(run_id).data.metrics
    assert "system/cpu_utilization_percentage" in metrics
    assert "system/system_memory_usage_megabytes" in metrics
    assert all(key.startswith("system/") for key in metrics)
    steps = [m.step for m in client.get_metric_history(run_id, "system/cpu_utilization_percentage")]
    assert len(steps) >= 2 and steps == sorted(set(steps))  # one step per sample

    # A retried trial continues the steps instead of overwriting step 0.
    with system_metrics(run_id, uri, interval_s=0.2):
        time.sleep(0.3)
    history = client.get_metric_history(run_id, "system/cpu_utilization_percentage")
    assert max(m.step for m in history) > max(steps)
