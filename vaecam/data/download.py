"""How a dataset is fetched from its official location into the layout its loader reads: each
dataset module says what (its :class:`Download`: where from, the hashes each file must have,
its folder under a data root); ``python -m vaecam.data.fetch`` is the command. A fetch:

1. does nothing when the loader's folders are there (a manifest of file counts per folder,
   written after unpacking, says whether what was unpacked is still complete; data copied in
   by hand is left as it is);
2. otherwise takes an exclusive lock (a file beside the download, so two processes, or two
   nodes on a shared file system, fetch once and the second waits and then finds it done);
3. downloads to ``<name>.part`` (resumed with an HTTP Range request after an interruption,
   retried with backoff on transient failures), checks every published hash of the whole file
   before anything else reads it (a mismatch moves it aside to ``<name>.bad``), renames it;
4. unpacks archives into a hidden staging folder, refusing any member that would land outside
   it (absolute paths, ``..``, links pointing out), then moves each top-level folder into place
   (so a loader never sees a half-unpacked folder), writes the manifest and deletes the archive.

Offline, a fetch that needs the network fails at once (a few seconds at most: one connection
attempt) with a :class:`NetworkUnreachableError` naming the file to copy and where, having
created nothing. An archive copied by hand to the place the download would have gone is
verified and unpacked without the network.

This module is a plain library (no Ray, no MLflow): ``orchestrator.sweep --download`` calls it
on the driver before Ray starts, and ``docker/cluster.yaml`` runs it as each node joins.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import socket
import sys
import tarfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path, PurePosixPath
from typing import Any, Literal, TextIO

from vaecam.data import DataFormatError, DataNotFoundError
from vaecam.data.mnist import load_mnist

__all__ = [
    "ChecksumError",
    "Download",
    "FetchError",
    "NetworkUnreachableError",
    "Source",
    "UnsafeArchiveError",
    "fetch",
]

# --------------------------------------------------------------------------------------------
# What is fetched
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """One published file: its URL, its size in bytes (None: not published) and the hashes it
    must have, as ``(hashlib algorithm, hex digest)`` pairs; every one is checked."""

    url: str
    size: int | None
    digests: tuple[tuple[str, str], ...]

    @property
    def name(self) -> str:
        """The file's name: the URL path's last part."""
        return PurePosixPath(urllib.parse.urlsplit(self.url).path).name


@dataclass(frozen=True)
class Download:
    """How one dataset is fetched and where it goes.

    ``folder`` is its folder under a data root (``sweep all --data-root``); ``loader_root`` says
    what a single sweep's ``--data-root`` is for it: ``"folder"`` (the folder itself: MVTec AD's
    categories, UCSD's scenes are read straight from it) or ``"parent"`` (the folder's parent:
    the loader appends ``folder``). ``parts`` are the paths under ``folder`` the loaders read:
    when all are there, there is nothing to fetch. ``kind`` picks the fetcher
    (:data:`FETCHERS`); ``strip`` is a leading folder of the archive's members dropped when
    unpacking into ``folder``; ``into`` the subfolder of ``folder`` the sources are downloaded
    to (and where a copy made by hand is looked for)."""

    name: str
    title: str
    folder: str
    loader_root: Literal["folder", "parent"]
    parts: tuple[str, ...]
    kind: str  # a key of FETCHERS
    sources: tuple[Source, ...]
    licence: str
    homepage: str
    strip: str = ""
    into: str = ""


def anomalib_archive(url: str, size: int, sha256: str, md5: str) -> tuple[Source]:
    """An archive at ``url`` (``size`` bytes, as recorded beside its hashes by users who verified
    them) whose hashes anomalib publishes: ``sha256`` in its ``DOWNLOAD_INFO.hashsum``, checked
    by its ``check_hash`` with ``hashlib.sha256`` (``src/anomalib/data/utils/download.py``), and
    ``md5``, anomalib < 1.0's ``DownloadInfo.hash``."""
    return (Source(url, size, (("sha256", sha256), ("md5", md5))),)


# --------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------


class FetchError(DataNotFoundError):
    """A dataset could not be fetched (the message says why and what to do instead)."""


class NetworkUnreachableError(FetchError):
    """The network (or the dataset's host) cannot be reached; nothing was created."""


class ChecksumError(DataFormatError):
    """A downloaded or copied file does not have its published hash; it was moved aside."""


class UnsafeArchiveError(DataFormatError):
    """An archive member would land outside the dataset's folder; nothing was moved in."""


# --------------------------------------------------------------------------------------------
# Settings
# --------------------------------------------------------------------------------------------

#: Seconds the network check waits for the host's name, then for a connection: offline, its
#: one attempt fails at once (no name resolution, refused) or after this long (no answer).
PROBE_TIMEOUT_S = 5.0
#: Seconds a download waits for the server (to connect, then for each read).
TIMEOUT_S = 60.0
#: Retries of a download that failed part-way, each resuming where it stopped.
RETRIES = 4
#: The first retry's wait in seconds, doubled for each one after it.
BACKOFF_S = 2.0
#: HTTP statuses worth retrying: the server or something between was briefly unwell.
TRANSIENT_STATUS = frozenset({408, 429, 500, 502, 503, 504})
CHUNK_BYTES = 1 << 20
#: Beside the unpacked data: what the archive held (file counts per folder).
MANIFEST = ".vaecam-fetch.json"
LOCK = ".vaecam-fetch.lock"
STAGING = ".vaecam-unpacking"


# --------------------------------------------------------------------------------------------
# Progress
# --------------------------------------------------------------------------------------------


class Progress:
    """Download progress on ``stream``: on a terminal one line redrawn (bytes, rate, time left)
    at most every ``every_s`` seconds; in a log one line per 10 % (of the size, when known)."""

    def __init__(self, what: str, total: int | None, start: int, stream: TextIO):
        self.what, self.total, self.start, self.stream = what, total, start, stream
        self.tty = stream.isatty()
        self.began = time.monotonic()
        self.shown = -1.0
        self.decile = (start * 10 // total) if total else 0

    def __call__(self, done: int) -> None:
        now = time.monotonic()
        if self.tty:
            if now - self.shown >= 0.25 or done == self.total:
                self.shown = now
                self.stream.write(f"\r{self.line(done, now)}\x1b[K")
                self.stream.flush()
        elif self.total and done * 10 // self.total > self.decile:
            self.decile = done * 10 // self.total
            print(self.line(done, now), file=self.stream, flush=True)

    def finish(self) -> None:
        if self.tty:
            self.stream.write("\n")
            self.stream.flush()

    def line(self, done: int, now: float) -> str:
        rate = (done - self.start) / max(now - self.began, 1e-6)
        text = f"{self.what}: {_size(done)}"
        if self.total:
            text += f" of {_size(self.total)} ({100 * done / self.total:.0f}%)"
        text += f", {_size(rate)}/s"
        if self.total and rate > 0:
            left = (self.total - done) / rate
            text += f", {int(left // 60)}:{int(left % 60):02d} left"
        return text


def _size(count: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if count < 1000 or unit == "GB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1000
    raise AssertionError("unreachable")


# --------------------------------------------------------------------------------------------
# Network
# --------------------------------------------------------------------------------------------


def check_reachable(url: str, what: str) -> None:
    """One connection attempt to ``url``'s host (or the proxy urllib would use for it), at most
    :data:`CONNECT_TIMEOUT_S`; raises :class:`NetworkUnreachableError` saying ``what`` to copy
    where instead."""
    parts = urllib.parse.urlsplit(url)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(parts.hostname or ""):
        parts = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        address = _resolve(parts.hostname or "", port)
        socket.create_connection(address, timeout=PROBE_TIMEOUT_S).close()
    except OSError as error:
        reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
        raise NetworkUnreachableError(
            f"network unreachable: cannot connect to {parts.hostname}:{port} ({reason}) to "
            f"download {url}; {what}"
        ) from None


def _resolve(host: str, port: int) -> tuple[str, int]:
    """``(address, port)`` of ``host``, or ``OSError`` after :data:`PROBE_TIMEOUT_S`: name
    resolution has no timeout of its own, and an unreachable DNS server can take a minute. It
    runs in a daemon thread, which a process that gives up on it does not wait for."""
    found: list[tuple[str, int] | OSError] = []

    def resolve() -> None:
        try:
            found.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][4][:2])
        except OSError as error:
            found.append(error)

    thread = threading.Thread(target=resolve, daemon=True)
    thread.start()
    thread.join(PROBE_TIMEOUT_S)
    if not found:
        raise TimeoutError(f"no answer resolving {host} in {PROBE_TIMEOUT_S:.0f} s")
    if isinstance(found[0], OSError):
        raise found[0]
    return found[0]


def _request(url: str, start: int) -> urllib.request.Request:
    headers = {"User-Agent": "vaecam-fetch"}
    if start:
        headers["Range"] = f"bytes={start}-"
    return urllib.request.Request(url, headers=headers)


def _total_size(response: object, start: int) -> int | None:
    """The whole file's size from a 200's Content-Length or a 206's Content-Range."""
    headers = response.headers  # type: ignore[attr-defined]
    content_range = headers.get("Content-Range", "")
    if "/" in content_range and content_range.rsplit("/", 1)[1].strip().isdigit():
        return int(content_range.rsplit("/", 1)[1])
    length = headers.get("Content-Length")
    return int(length) + start if length and length.isdigit() else None


def download(
    source: Source,
    part: Path,
    *,
    retries: int = RETRIES,
    backoff_s: float = BACKOFF_S,
    stream: TextIO | None = None,
) -> None:
    """Download ``source`` into ``part``, resuming from what ``part`` already holds (HTTP Range;
    a server that ignores it sends the whole file, which then replaces ``part``). A failure
    part-way (a reset connection, a timeout, a transient HTTP status) is retried ``retries``
    times, after ``backoff_s``, twice that, ...; what was received is kept for the next try, or
    the next run. Raises :class:`FetchError` when the tries are used up. Progress and retries
    are told on ``stream`` (default: stderr)."""
    stream = stream or sys.stderr
    attempt = 0
    while True:
        have = part.stat().st_size if part.exists() else 0
        if source.size is not None and have >= source.size:
            if have == source.size:
                return
            part.unlink()  # longer than the file: not this file; start over
            have = 0
        try:
            _download_once(source, part, have, stream)
            return
        except FetchError:
            raise
        except urllib.error.HTTPError as error:
            if error.code == 416 and have:  # nothing left to send: complete (hashes will tell)
                return
            if error.code not in TRANSIENT_STATUS:
                raise FetchError(f"{source.url}: HTTP {error.code} {error.reason}") from None
            failure = f"HTTP {error.code} {error.reason}"
        except (urllib.error.URLError, HTTPException, OSError) as error:
            failure = str(getattr(error, "reason", None) or error) or type(error).__name__
        if attempt >= retries:
            received = part.stat().st_size if part.exists() else 0
            raise FetchError(
                f"{source.url}: download failed after {attempt + 1} tries ({failure}); the "
                f"{_size(received)} received are kept in {part}: run again to resume"
            )
        wait = backoff_s * 2**attempt
        attempt += 1
        print(
            f"{source.name}: {failure}; retrying in {wait:.0f} s ({attempt} of {retries})",
            file=stream,
            flush=True,
        )
        time.sleep(wait)


def _download_once(source: Source, part: Path, have: int, stream: TextIO) -> None:
    """One request: append to ``part`` from byte ``have`` to the end, or raise."""
    with urllib.request.urlopen(_request(source.url, have), timeout=TIMEOUT_S) as response:
        if have and response.status != 206:  # the server ignored the Range: start over
            have = 0
        total = _total_size(response, have) or source.size
        if source.size is not None and total is not None and total != source.size:
            raise FetchError(
                f"{source.url}: the server offers {total} bytes, but the file published is "
                f"{source.size} bytes; not downloading it"
            )
        progress = Progress(source.name, total, have, stream)
        done = have
        with open(part, "ab" if have else "wb") as sink:
            while chunk := response.read(CHUNK_BYTES):
                sink.write(chunk)
                done += len(chunk)
                progress(done)
        progress.finish()
        if total is not None and done < total:
            raise ConnectionError(f"connection closed after {done} of {total} bytes")


# --------------------------------------------------------------------------------------------
# Hashes
# --------------------------------------------------------------------------------------------


def file_digests(path: Path, algorithms: list[str]) -> dict[str, str]:
    """``algorithm -> hex digest`` of the file, all in one read."""
    hashers = {name: hashlib.new(name) for name in algorithms}
    with open(path, "rb") as stream:
        while block := stream.read(CHUNK_BYTES):
            for hasher in hashers.values():
                hasher.update(block)
    return {name: hasher.hexdigest() for name, hasher in hashers.items()}


def verify(path: Path, source: Source, name: str) -> None:
    """Check ``path`` against every published hash of ``source``; on a mismatch, move it to
    ``<name>.bad`` beside it (never used, and out of the way of a resumed download) and raise
    one :class:`ChecksumError` naming the file, the expected and the actual hash."""
    actual = file_digests(path, [algorithm for algorithm, _ in source.digests])
    for algorithm, expected in source.digests:
        if actual[algorithm] != expected.lower():
            bad = path.with_name(f"{name}.bad")
            path.replace(bad)
            raise ChecksumError(
                f"{name} (from {source.url}) has {algorithm} {actual[algorithm]}, expected "
                f"{expected}; it was moved aside to {bad} and not used"
            )


# --------------------------------------------------------------------------------------------
# Unpacking
# --------------------------------------------------------------------------------------------


def _member_path(name: str, strip: str, archive: Path) -> PurePosixPath | None:
    """Where member ``name`` goes, relative to the dataset's folder: None for a member outside
    ``strip`` (not the dataset's); :class:`UnsafeArchiveError` for one that would leave it."""
    path = PurePosixPath(name.replace("\\", "/"))
    if path.is_absolute() or (path.parts and path.parts[0].endswith(":")):
        raise UnsafeArchiveError(f"{archive}: member {name!r} has an absolute path; refused")
    if ".." in path.parts:
        raise UnsafeArchiveError(f"{archive}: member {name!r} leads out of the folder; refused")
    parts = [part for part in path.parts if part != "."]
    if strip:
        if not parts or parts[0] != strip:
            return None
        parts = parts[1:]
    return PurePosixPath(*parts) if parts else None


def _inside(target: PurePosixPath) -> bool:
    """Whether a relative path, ``..`` resolved, stays inside its root."""
    depth = 0
    for part in target.parts:
        depth += -1 if part == ".." else (0 if part == "." else 1)
        if depth < 0:
            return False
    return not target.is_absolute()


def _link_problem(member: tarfile.TarInfo, relative: PurePosixPath, strip: str) -> str | None:
    """Why a link member would reach outside the dataset's folder (None: it stays inside).
    A symlink's target is relative to its own folder; a hard link's names another member."""
    target = PurePosixPath(member.linkname.replace("\\", "/"))
    if target.is_absolute():
        return "is an absolute path"
    if member.issym():
        return None if _inside(relative.parent / target) else "leads out of the folder"
    if ".." in target.parts or (strip and target.parts[:1] != (strip,)):
        return "leads out of the folder"
    member.linkname = str(PurePosixPath(*target.parts[1 if strip else 0 :]))
    return None


def _checked_members(tar: tarfile.TarFile, archive: Path, strip: str) -> list[tarfile.TarInfo]:
    """The tar's members that belong to the dataset, renamed relative to its folder, every one
    checked before any is extracted."""
    members = []
    for member in tar.getmembers():
        relative = _member_path(member.name, strip, archive)
        if relative is None:
            continue
        if member.issym() or member.islnk():
            problem = _link_problem(member, relative, strip)
            if problem:
                raise UnsafeArchiveError(
                    f"{archive}: member {member.name!r} links to {member.linkname!r}, which "
                    f"{problem}; refused"
                )
        elif not (member.isfile() or member.isdir()):
            raise UnsafeArchiveError(f"{archive}: member {member.name!r} is a device or pipe")
        member.name = str(relative)
        members.append(member)
    return members


def unpack_tar(archive: Path, staging: Path, strip: str) -> None:
    """Extract the dataset's members of a tar (any compression) into ``staging``: every member
    is checked first (:func:`_checked_members`), then extracted with tarfile's ``data`` filter
    (regular files, folders and links inside, no special permissions)."""
    try:
        with tarfile.open(archive) as tar:
            members = _checked_members(tar, archive, strip)
            if not members:
                raise DataFormatError(f"{archive}: no member under {strip or 'its root'}")
            tar.extractall(staging, members=members, filter="data")
    except tarfile.FilterError as error:  # a second line of defence behind the checks above
        raise UnsafeArchiveError(f"{archive}: {error}; refused") from None
    except (tarfile.ReadError, EOFError, OSError) as error:
        raise DataFormatError(f"{archive}: not a readable tar archive ({error})") from None


def unpack_zip(archive: Path, staging: Path, strip: str) -> None:
    """Extract the dataset's members of a zip into ``staging``, every name checked first."""
    with zipfile.ZipFile(archive) as zip_file:
        chosen = []
        for info in zip_file.infolist():
            relative = _member_path(info.filename, strip, archive)
            if relative is not None:
                chosen.append((info, relative))
        for info, relative in chosen:
            target = staging / relative
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zip_file.open(info) as source, open(target, "wb") as sink:
                shutil.copyfileobj(source, sink)


#: Archive unpackers by the archive's name.
UNPACKERS: dict[str, Callable[[Path, Path, str], None]] = {
    ".zip": unpack_zip,
    ".tar": unpack_tar,
    ".tar.gz": unpack_tar,
    ".tgz": unpack_tar,
    ".tar.xz": unpack_tar,
    ".tar.bz2": unpack_tar,
}


def _unpacker(name: str) -> Callable[[Path, Path, str], None]:
    for suffix, unpacker in UNPACKERS.items():
        if name.endswith(suffix):
            return unpacker
    raise DataFormatError(f"{name}: not an archive this module unpacks ({', '.join(UNPACKERS)})")


# --------------------------------------------------------------------------------------------
# The manifest
# --------------------------------------------------------------------------------------------

_OURS = (MANIFEST, LOCK, STAGING)


def file_counts(folder: Path) -> dict[str, int]:
    """Files per folder under ``folder`` (relative POSIX paths, ``.`` for itself), leaving out
    this module's own files."""
    counts = {}
    for here, folders, files in os.walk(folder):
        relative = Path(here).relative_to(folder)
        if relative == Path("."):
            folders[:] = [name for name in folders if name not in _OURS]
            files = [name for name in files if name not in _OURS]
        counts[relative.as_posix()] = len(files)
    return counts


def manifest_problem(folder: Path) -> str | None:
    """What differs from the manifest the last unpacking wrote (None: complete, or none)."""
    path = folder / MANIFEST
    if not path.is_file():
        return None
    recorded = json.loads(path.read_text())["counts"]
    for relative, count in recorded.items():
        here = folder / relative
        found = sum(1 for entry in here.iterdir() if entry.is_file()) if here.is_dir() else 0
        if relative == ".":
            found -= sum((folder / name).is_file() for name in _OURS)
        if found != count:
            return f"{here} has {found} files, {count} when it was unpacked"
    return None


# --------------------------------------------------------------------------------------------
# Fetching
# --------------------------------------------------------------------------------------------


def missing_parts(dataset: Download, folder: Path) -> list[str]:
    """The loaders' paths under ``folder`` that are not there."""
    return [part for part in dataset.parts if not (folder / part).exists()]


def _copy_hint(dataset: Download, folder: Path) -> str:
    """What to copy where instead of downloading."""
    names = [
        f"{s.name} ({s.digests[0][0]} {s.digests[0][1]}{f', {_size(s.size)}' if s.size else ''})"
        for s in dataset.sources
    ]
    hint = f"copy {', '.join(names)} into {folder / dataset.into} and run again"
    if dataset.kind == "archive":
        hint += (
            f" (it is verified and unpacked there), or unpack it yourself so that {folder} "
            f"holds {', '.join(dataset.parts[:2])}..."
        )
    return hint


def _announce(dataset: Download, stream: TextIO) -> None:
    print(
        f"{dataset.title}: licence {dataset.licence}; source {dataset.homepage}. Downloading it "
        "means accepting its terms.",
        file=stream,
        flush=True,
    )


def _obtain(dataset: Download, source: Source, target: Path, options: dict[str, Any]) -> None:
    """``target`` holding ``source``, verified: a copy already there, or downloaded (through
    ``<name>.part``, renamed once its hashes are right)."""
    if target.is_file():
        verify(target, source, source.name)
        return
    part = target.with_name(f"{source.name}.part")
    _announce(dataset, options["stream"])
    download(source, part, **options)
    verify(part, source, source.name)
    part.replace(target)


def _fetch_file(dataset: Download, folder: Path, options: dict[str, Any]) -> None:
    """A single published file, verified, as ``folder/<name>``."""
    (source,) = dataset.sources
    _obtain(dataset, source, folder / source.name, options)


def _fetch_archive(dataset: Download, folder: Path, options: dict[str, Any]) -> None:
    """An archive, downloaded (unless it was copied in), verified, unpacked into ``folder``;
    top-level folders already there are left as they are."""
    (source,) = dataset.sources
    archive = folder / source.name
    _obtain(dataset, source, archive, options)
    staging = folder / STAGING
    shutil.rmtree(staging, ignore_errors=True)  # what an interrupted unpacking left
    staging.mkdir()
    try:
        _unpacker(source.name)(archive, staging, dataset.strip)
        kept = []
        for entry in sorted(staging.iterdir()):
            if (folder / entry.name).exists():
                kept.append(entry.name)
            else:
                entry.replace(folder / entry.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    if kept:
        print(f"{folder}: left as they were: {', '.join(kept)}", file=options["stream"])
    archive.unlink()
    (folder / MANIFEST).write_text(
        json.dumps({"dataset": dataset.name, "url": source.url, "counts": file_counts(folder)})
    )


def _fetch_torchvision(dataset: Download, folder: Path, options: dict[str, Any]) -> None:
    """MNIST, through torchvision (its mirrors, its MD5 checks), into ``folder/raw``."""
    _announce(dataset, options["stream"])
    load_mnist(folder.parent, download=True)


#: Fetchers by :attr:`Download.kind`: ``(dataset, its folder, download options)``.
FETCHERS: dict[str, Callable[[Download, Path, dict[str, Any]], None]] = {
    "file": _fetch_file,
    "archive": _fetch_archive,
    "torchvision": _fetch_torchvision,
}


def fetch(
    dataset: Download,
    folder: Path,
    *,
    retries: int = RETRIES,
    backoff_s: float = BACKOFF_S,
    stream: TextIO | None = None,
) -> bool:
    """Make ``folder`` hold ``dataset`` as its loader reads it; returns whether anything was
    fetched. Nothing happens when its parts are there (and, after an unpacking, still all
    there by the manifest: otherwise :class:`FetchError` says what is missing). Offline, raises
    :class:`NetworkUnreachableError` having created nothing; a bad hash, a
    :class:`ChecksumError`; an unsafe archive, an :class:`UnsafeArchiveError`."""
    folder = Path(folder).expanduser().absolute()
    options = {"retries": retries, "backoff_s": backoff_s, "stream": stream or sys.stderr}
    if not missing_parts(dataset, folder):
        problem = manifest_problem(folder)
        if problem:
            raise FetchError(
                f"{dataset.title} in {folder} is incomplete: {problem}; delete {folder} and "
                "fetch it again"
            )
        return False
    copied = [s for s in dataset.sources if (folder / dataset.into / s.name).is_file()]
    if not copied:  # the network is needed: fail now, before anything is created
        check_reachable(dataset.sources[0].url, _copy_hint(dataset, folder))
    folder.mkdir(parents=True, exist_ok=True)
    with _exclusive(folder / LOCK, dataset.title, options["stream"]):
        if not missing_parts(dataset, folder):  # another process fetched it meanwhile
            return False
        FETCHERS[dataset.kind](dataset, folder, options)
    missing = missing_parts(dataset, folder)
    if missing:
        raise FetchError(
            f"{dataset.title}: fetched into {folder}, but {', '.join(missing)} is not there"
        )
    return True


@contextmanager
def _exclusive(path: Path, what: str, stream: TextIO) -> Iterator[None]:
    """Held by one process at a time (an advisory lock on the file ``path``, which also works
    between nodes on NFSv4 and EFS); says so when it has to wait for another."""
    with open(path, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(
                f"{what}: another process is fetching it ({path}); waiting", file=stream, flush=True
            )
            fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
