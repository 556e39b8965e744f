"""What produced a run: code, environment, command line and data, as MLflow tags and inputs.

Where each piece is captured matters, because a sweep's trials may run on other nodes:

- ``code_provenance`` and ``command_tags`` run on the sweep's **driver**, where the git checkout
  and the command line are. Cluster nodes run the code baked into the image (no ``.git``) under
  a Ray worker's command line, so the driver passes these tags to every trial.
- ``environment_provenance`` and ``dataset_digest`` run **where the code runs** (the driver for
  the parent run, each trial for its child run): package versions, CPU, GPU and data files are
  those of that node.

Nothing here raises because provenance is unavailable: a missing git, package or GPU becomes a
tag value that says so, so provenance can never fail a sweep. ``dataset_digest`` is the one
exception: a dataset with no files is an error in the caller, not missing provenance.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
import platform
import re
import shlex
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from mlflow import MlflowClient
from mlflow.entities import Dataset, DatasetInput, InputTag, RunTag
from mlflow.exceptions import MlflowException
from mlflow.utils.mlflow_tags import (
    MLFLOW_DATASET_CONTEXT,
    MLFLOW_GIT_BRANCH,
    MLFLOW_GIT_COMMIT,
    MLFLOW_GIT_DIRTY,
    MLFLOW_GIT_REPO_URL,
    MLFLOW_SOURCE_NAME,
    MLFLOW_SOURCE_TYPE,
)

_logger = logging.getLogger(__name__)

#: The repository root when running from a checkout (``orchestrator/`` is one level below it).
PROJECT_ROOT = Path(__file__).resolve().parents[1]

#: Set at image build time (``--build-arg``, see ``code_provenance``): images carry no ``.git``.
GIT_COMMIT_ENV = "VAECAM_GIT_COMMIT"
GIT_DIRTY_ENV = "VAECAM_GIT_DIRTY"
#: The Docker image a node runs, e.g. ``registry/vaecam:2024-06-01``; absent outside containers.
IMAGE_ENV = "VAECAM_IMAGE"

#: Tag keys of our own (MLflow's standard ``mlflow.source.*`` keys are used where they exist).
GIT_ORIGIN_TAG = "vaecam.git.origin"
COMMAND_TAG = "vaecam.command"
IMAGE_TAG = "vaecam.image"
VERSION_TAG = "vaecam.version."  # + package name
HOST_TAG = "vaecam.host."  # + name, cpu, cpus, os, gpu

#: Packages whose versions decide the numbers a run produces (the issue's list).
PACKAGES = ("torch", "torchvision", "ray", "mlflow", "numpy", "scikit-learn")

#: MLflow's limit on a tag value (``mlflow.utils.validation.MAX_TAG_VAL_LENGTH``); longer values
#: are cut with a warning, or rejected when ``MLFLOW_TRUNCATE_LONG_VALUES=false``.
MAX_TAG_LENGTH = 8000
#: Characters of our digest used as MLflow's dataset digest, whose column holds at most 36
#: (``MAX_DATASET_DIGEST_SIZE``); 16 hex digits (64 bits) tell datasets apart, and the full
#: sha256 of the files is in the dataset's profile.
MLFLOW_DIGEST_CHARS = 16

_GIT_TIMEOUT_S = 5.0
_CHUNK = 1 << 20  # bytes read at a time when hashing, so large files need no large buffer
_CACHE_VERSION = 1
# A file modified less than this long ago is hashed but not cached: on a filesystem with coarse
# timestamps, a rewrite of the same size within the same tick would otherwise keep its stale
# hash (git's "racy clean" problem).
_RACY_NS = 2_000_000_000
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.-]*://)[^/@\s]+@")


def _strip_credentials(text: str) -> str:
    """``https://user:token@host/x`` -> ``https://host/x``: tags are readable by everyone who
    can open the experiment, and remotes and tracking URIs may carry tokens."""
    return _URL_CREDENTIALS.sub(r"\g<scheme>", text)


def _truncate(value: str, limit: int = MAX_TAG_LENGTH) -> str:
    """``value`` cut to ``limit`` characters, saying so, rather than relying on MLflow (which
    cuts silently or rejects, depending on ``MLFLOW_TRUNCATE_LONG_VALUES``)."""
    if len(value) <= limit:
        return value
    note = f" ...[{len(value)} characters, truncated]"
    return value[: limit - len(note)] + note


# ---------------------------------------------------------------------------------------------
# Code: on the driver.


def _git(root: Path, *args: str) -> str:
    """Output of ``git args`` in ``root``; raises OSError (no git) or SubprocessError."""
    # --no-optional-locks: `git status` would otherwise refresh the index and take its lock,
    # racing with whatever the user runs in that checkout meanwhile.
    done = subprocess.run(
        ["git", "--no-optional-locks", *args],
        cwd=root,
        capture_output=True,
        text=True,
        timeout=_GIT_TIMEOUT_S,
        check=True,
    )
    return done.stdout.strip()


def _git_failure(error: Exception) -> str:
    """One line saying why git gave no commit, for the ``vaecam.git.origin`` tag."""
    if isinstance(error, FileNotFoundError):
        return "git is not installed"
    if isinstance(error, subprocess.CalledProcessError):
        lines = (error.stderr or "").strip().splitlines()
        return lines[0] if lines else f"git exited with {error.returncode}"
    return f"{type(error).__name__}: {error}"


def code_provenance(root: Path = PROJECT_ROOT) -> dict[str, str]:
    """The code's git state as MLflow tags. Call on the driver and pass the result to trials.

    Tags: ``mlflow.source.git.commit`` (always: the commit, or ``"unknown"``),
    ``mlflow.source.git.dirty`` (``"true"`` when tracked files differ from the commit or
    untracked, non-ignored files exist, since either changes what runs; ``"unknown"`` without
    git), ``mlflow.source.git.branch`` (omitted on a detached HEAD),
    ``mlflow.source.git.repoURL`` (the ``origin`` remote, else the first one, credentials
    removed), and ``vaecam.git.origin``: where the commit came from (``"git"``, the
    environment variable's name, or ``"unavailable: <why>"``).

    A Docker image is built from a copied tree without ``.git``; the build records the commit in
    ``VAECAM_GIT_COMMIT`` (and optionally ``VAECAM_GIT_DIRTY``), used when git gives nothing.
    Git wins when both exist, because it describes the code actually present.
    """
    root = Path(root)
    try:
        commit = _git(root, "rev-parse", "HEAD")
    except (OSError, subprocess.SubprocessError) as error:
        env_commit = os.environ.get(GIT_COMMIT_ENV, "").strip()
        if env_commit:
            dirty = os.environ.get(GIT_DIRTY_ENV, "unknown").strip().lower() or "unknown"
            return {
                MLFLOW_GIT_COMMIT: env_commit,
                MLFLOW_GIT_DIRTY: dirty,
                GIT_ORIGIN_TAG: GIT_COMMIT_ENV,
            }
        return {
            MLFLOW_GIT_COMMIT: "unknown",
            MLFLOW_GIT_DIRTY: "unknown",
            GIT_ORIGIN_TAG: f"unavailable: {_git_failure(error)}",
        }

    tags = {MLFLOW_GIT_COMMIT: commit, GIT_ORIGIN_TAG: "git"}
    try:
        status = _git(root, "status", "--porcelain", "--untracked-files=normal")
        tags[MLFLOW_GIT_DIRTY] = "true" if status else "false"
    except (OSError, subprocess.SubprocessError):
        tags[MLFLOW_GIT_DIRTY] = "unknown"
    try:  # exits 1 on a detached HEAD (a CI checkout of a commit): no branch then
        tags[MLFLOW_GIT_BRANCH] = _git(root, "symbolic-ref", "--short", "-q", "HEAD")
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        remotes = _git(root, "remote").split()
        if remotes:
            remote = "origin" if "origin" in remotes else remotes[0]
            tags[MLFLOW_GIT_REPO_URL] = _strip_credentials(_git(root, "remote", "get-url", remote))
    except (OSError, subprocess.SubprocessError):
        pass
    return tags


# ---------------------------------------------------------------------------------------------
# Command line: on the driver.


def command_line(argv: Sequence[str] | None = None) -> str:
    """The command as typed, shell-quoted so it can be pasted back, e.g.
    ``python -m orchestrator.sweep mvtec --category 'metal nut'``.

    ``argv`` defaults to ``sys.orig_argv`` (the interpreter as typed, its options, ``-m module``
    and the arguments), which ``sys.argv`` loses: under ``-m`` its first item is the module's
    file path. Credentials in URLs are removed and the result fits an MLflow tag.
    """
    argv = sys.orig_argv if argv is None else argv
    return _truncate(_strip_credentials(shlex.join(argv)))


def _entry_point(argv: Sequence[str]) -> str:
    """What the interpreter ran: the module after ``-m``, ``-c``, or the script (the first
    argument that is not an interpreter option; a console script's own path)."""
    args = iter(argv[1:])
    for arg in args:
        if arg == "-m":
            return next(args, arg)
        if arg in ("-c", "-") or not arg.startswith("-"):
            return arg
        if arg in ("-W", "-X", "--check-hash-based-pycs"):  # options that take a value
            next(args, None)
    return argv[0] if argv else ""


def command_tags(argv: Sequence[str] | None = None) -> dict[str, str]:
    """``vaecam.command`` (see ``command_line``) plus MLflow's ``mlflow.source.name`` (the
    ``-m`` module or the script: the runs table's Source column) and ``mlflow.source.type``
    (``LOCAL``, what ``mlflow.start_run`` sets for a script; ``MlflowClient.create_run`` sets
    neither). Call on the driver and pass the result to trials."""
    argv = list(sys.orig_argv if argv is None else argv)
    return {
        COMMAND_TAG: command_line(argv),
        MLFLOW_SOURCE_NAME: _truncate(_strip_credentials(_entry_point(argv))),
        MLFLOW_SOURCE_TYPE: "LOCAL",
    }


# ---------------------------------------------------------------------------------------------
# Environment: where the code runs (driver and each trial).


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as cpuinfo:
            for line in cpuinfo:
                key, _, value = line.partition(":")
                # x86: "model name"; some ARM kernels only give "Hardware" or "Processor"
                if key.strip() in ("model name", "Hardware", "Processor") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _gpus() -> tuple[str, str]:
    """(the names of the GPUs this process can use, comma-separated, or ``"none"``;
    the CUDA version torch was built with, or ``"none"``).

    Asks torch, so the answer honours ``CUDA_VISIBLE_DEVICES`` (Ray sets it per trial): a trial
    reports the GPU it was given, not every GPU of its node. Where a GPU is visible this
    initialises CUDA in the process (as any CUDA call does); a trial training on it does so
    anyway, and after it the process must not fork workers that use CUDA.
    """
    try:
        import torch
    except ImportError:
        return "none (torch not installed)", "none"
    cuda = torch.version.cuda or "none"
    try:
        if not torch.cuda.is_available():
            return "none", cuda
        names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        return ", ".join(names) or "none", cuda
    except Exception as error:  # a broken driver must not fail the run it describes
        return f"unknown ({type(error).__name__}: {error})", cuda


def environment_provenance() -> dict[str, str]:
    """This process's environment as tags. Call in each trial (nodes differ) and on the driver.

    ``vaecam.version.<package>`` for ``PACKAGES`` and ``python`` (``"not installed"`` when
    absent), ``vaecam.version.cuda`` (torch's build), ``vaecam.image`` (``VAECAM_IMAGE``, only
    when set), ``vaecam.host.name``, ``vaecam.host.cpu`` (model), ``vaecam.host.cpus`` (logical
    CPUs of the machine, not the trial's share), ``vaecam.host.os`` and ``vaecam.host.gpu``.
    Never raises; 10-30 ms here once torch is imported (it is, in a trial).
    """
    tags = {VERSION_TAG + package: _version(package) for package in PACKAGES}
    tags[VERSION_TAG + "python"] = platform.python_version()
    gpu, cuda = _gpus()
    tags[VERSION_TAG + "cuda"] = cuda
    image = os.environ.get(IMAGE_ENV, "").strip()
    if image:
        tags[IMAGE_TAG] = image
    tags[HOST_TAG + "name"] = socket.gethostname()
    tags[HOST_TAG + "cpu"] = _cpu_model()
    tags[HOST_TAG + "cpus"] = str(os.cpu_count() or "unknown")
    tags[HOST_TAG + "os"] = platform.platform()
    tags[HOST_TAG + "gpu"] = gpu
    return {key: _truncate(value) for key, value in tags.items()}


def log_tags(client: MlflowClient, run_id: str, tags: Mapping[str, str]) -> None:
    """Set ``tags`` on the run in one request, values cut to MLflow's tag limit."""
    items = [RunTag(key, _truncate(str(value))) for key, value in tags.items()]
    for start in range(0, len(items), 100):  # MLflow takes at most 100 tags per batch
        client.log_batch(run_id, tags=items[start : start + 100])


# ---------------------------------------------------------------------------------------------
# Datasets: where the data is read (each trial, on its node).


def default_cache_path(root: Path) -> Path:
    """Where ``dataset_digest`` caches the file hashes of ``root``:
    ``$VAECAM_CACHE_DIR`` or ``$XDG_CACHE_HOME/vaecam`` or ``~/.cache/vaecam``, then
    ``digests/<hash of root's path>.json``.

    Not inside the data root: it is often a read-only mount (a cluster's file mounts, NFS),
    and a file there would be part of the data it describes. One cache per machine suits the
    key, since a copy of the data on another node has other modification times anyway.
    """
    key = hashlib.sha256(str(Path(root).expanduser().absolute()).encode()).hexdigest()[:16]
    return cache_dir() / "digests" / f"{key}.json"


def cache_dir() -> Path:
    """This machine's cache of vaecam: ``$VAECAM_CACHE_DIR`` or ``$XDG_CACHE_HOME/vaecam`` or
    ``~/.cache/vaecam``."""
    base = os.environ.get("VAECAM_CACHE_DIR") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache"), "vaecam"
    )
    return Path(base)


def _data_files(root: Path) -> list[Path]:
    """Every file under ``root`` (following links: data folders are often links to a mount),
    except hidden ones (``.DS_Store``, editors' and sync tools' files), which are not data."""
    found = []
    for folder, dirs, files in os.walk(root, followlinks=True):
        dirs[:] = [d for d in dirs if not d.startswith(".")]
        found += [Path(folder, f) for f in files if not f.startswith(".")]
    return found


def _read_cache(path: Path, root: Path) -> dict[str, list]:
    try:
        cached = json.loads(path.read_text())
        if cached.get("version") == _CACHE_VERSION and cached.get("root") == str(root):
            return dict(cached["files"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        pass  # absent or unreadable: hash again, the cache is only an optimisation
    return {}


def _write_cache(path: Path, root: Path, files: dict[str, list]) -> None:
    """Replace the cache atomically: trials on one node may write it at once, and a reader
    must never see half a file (the last writer wins; a lost entry only costs a rehash)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"version": _CACHE_VERSION, "root": str(root), "files": files})
        with tempfile.NamedTemporaryFile("w", dir=path.parent, delete=False, suffix=".tmp") as f:
            f.write(text)
        os.replace(f.name, path)
    except OSError as error:
        _logger.warning("Could not cache dataset digests in %s: %s", path, error)


def _file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def dataset_digest(
    root: Path, files: Iterable[Path] | None = None, cache: Path | None = None
) -> str:
    """sha256 (64 hex digits) of a dataset's files: their paths relative to ``root`` and their
    contents, so the digest is the same wherever the data is mounted and changes when a file is
    added, removed, renamed or changed.

    ``files`` (absolute or relative to ``root``) are the files a trial reads, e.g. the two MNIST
    files of one split; ``None`` means every non-hidden file under ``root``. Each file's own hash
    is cached in ``cache`` (default ``default_cache_path(root)``) under its size and modification
    time, so a second call on unchanged files only stats them and reads no content.

    Raises ValueError when there are no files or one lies outside ``root``, and OSError when a
    file cannot be read: a digest of the wrong data would be worse than none.
    """
    root = Path(root).expanduser().absolute()
    paths = _data_files(root) if files is None else [root / Path(f) for f in files]
    if not paths:
        raise ValueError(f"No data files to digest under {root}")
    entries = {}
    for path in paths:
        try:
            entries[path.relative_to(root).as_posix()] = path
        except ValueError:
            raise ValueError(f"{path} is not under the dataset root {root}") from None

    cache = default_cache_path(root) if cache is None else Path(cache)
    cached = _read_cache(cache, root)
    now = time.time_ns()
    changed = False
    total = hashlib.sha256()
    for rel in sorted(entries):
        stat = entries[rel].stat()
        key = [stat.st_size, stat.st_mtime_ns]
        hit = cached.get(rel)
        if hit is not None and hit[:2] == key:
            file_hash = hit[2]
        else:
            file_hash = _file_sha256(entries[rel])
            if now - stat.st_mtime_ns > _RACY_NS:
                cached[rel] = [*key, file_hash]
                changed = True
        # NUL and newline cannot occur in the hex hash and separate fields unambiguously.
        total.update(f"{rel}\0{stat.st_size}\0{file_hash}\n".encode())
    if changed:
        _write_cache(cache, root, cached)
    return total.hexdigest()


def _source(source: str | Path) -> tuple[str, str]:
    """(MLflow source type, source JSON) in the form MLflow's own dataset sources write, which
    the UI renders: ``local`` with ``{"uri": ...}``, ``http`` with ``{"url": ...}``, else the
    URI's scheme (``s3``, ``gs``, ...) with ``{"uri": ...}``."""
    text = str(source)
    scheme = re.match(r"([A-Za-z][A-Za-z0-9+.-]*)://", text)
    if isinstance(source, Path) or scheme is None:
        return "local", json.dumps({"uri": str(Path(text).expanduser().absolute())})
    text = _strip_credentials(text)
    kind = scheme.group(1).lower()
    if kind in ("http", "https"):
        return "http", json.dumps({"url": text})
    return kind, json.dumps({"uri": text})


def log_dataset_input(
    client: MlflowClient,
    run_id: str,
    *,
    name: str,
    source: str | Path,
    digest: str,
    num_images: int,
    split: str,
    context: str | None = None,
    profile: Mapping[str, object] | None = None,
) -> None:
    """Log a dataset as an input of the run (the runs table's Dataset column and the run page).

    ``digest`` is ``dataset_digest``'s; ``source`` a path (logged absolute) or URL; ``context``
    the input's ``mlflow.data.context`` tag, by default MLflow's word for the split
    (``train`` -> ``training``, ``test`` -> ``testing``, ``val`` -> ``validation``). The
    dataset's profile holds ``num_images``, ``split``, the files' ``sha256`` and any extra
    ``profile`` entries (e.g. ``{"category": "bottle"}``, ``{"normal_class": 3}``).

    MLflow stores one dataset per (experiment, name, digest) and keeps the profile of whichever
    run logged it first, so the MLflow digest is taken over the whole profile, not the files
    alone: the same files used as another split, subset or class get their own dataset instead
    of showing the first one's numbers. Logging the same dataset to a run again (a retried
    trial) adds nothing: MLflow's stores skip an input whose (name, digest) the run already has.
    Trials logging the same dataset at the same moment each get it (one retry, see below).
    """
    info = {"num_images": int(num_images), "split": split, "sha256": digest, **(profile or {})}
    profile_json = json.dumps(info, sort_keys=True, default=str)
    source_type, source_json = _source(source)
    dataset = Dataset(
        name=name,
        digest=hashlib.sha256(profile_json.encode()).hexdigest()[:MLFLOW_DIGEST_CHARS],
        source_type=source_type,
        source=source_json,
        profile=profile_json,
    )
    words = {"train": "training", "test": "testing", "val": "validation"}
    context = context or words.get(split, split)
    tags = [InputTag(key=MLFLOW_DATASET_CONTEXT, value=context)]
    inputs = [DatasetInput(dataset=dataset, tags=tags)]
    try:
        client.log_inputs(run_id, datasets=inputs)
    except MlflowException:
        # MLflow looks for the (experiment, name, digest) row and inserts it without a lock, so
        # trials that start together each insert it and all but one fail on the unique key.
        # The row exists by then: the same call again links it to this run.
        client.log_inputs(run_id, datasets=inputs)
