"""vaecam.data.fetch against an HTTP server on 127.0.0.1 that this module starts: small archives
generated here in each dataset's real archive layout, served with Range support and a count of
the bytes sent."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import io
import json
import os
import socket
import struct
import subprocess
import sys
import tarfile
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from test_dsprites_data import FAKE_SIZES, write_fake_npz

from vaecam.data import download as download_module
from vaecam.data import fetch as fetch_module
from vaecam.data.download import (
    LOCK,
    MANIFEST,
    ChecksumError,
    Download,
    FetchError,
    NetworkUnreachableError,
    Source,
    UnsafeArchiveError,
    fetch,
)
from vaecam.data.dsprites import NPZ_NAME, DSpritesNpz
from vaecam.data.mnist import MNIST_FILES, load_mnist
from vaecam.data.mvtec import load_mvtec
from vaecam.data.synthetic import make_mvtec, make_ucsd
from vaecam.data.ucsd import load_ucsd
from vaecam.experiments.datasets import DATASETS

ROOT = Path(__file__).resolve().parents[1]


# --------------------------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------------------------


class Server(http.server.ThreadingHTTPServer):
    """Serves ``files`` (path -> bytes) with Range support; counts connections, GET requests
    and body bytes sent. ``cut_first`` ends the first GET's body after that many bytes (the
    connection closes); ``hold_first`` makes the first GET wait half-way until it is set."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.files: dict[str, bytes] = {}
        self.bytes_sent = 0
        self.connections = 0
        self.gets: list[tuple[str, str | None]] = []  # (path, Range header)
        self.cut_first: int | None = None
        self.hold_first: threading.Event | None = None
        self.lock = threading.Lock()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.server_port}{path}"

    def serve(self, path: str, data: bytes, digest: str | None = None) -> Source:
        """Publish ``data`` at ``path``: its table entry (SHA-256 ``digest``, default its own)."""
        self.files[path] = data
        return Source(self.url(path), len(data), (("sha256", digest or sha256(data)),))


class Handler(http.server.BaseHTTPRequestHandler):
    server: Server

    def handle(self) -> None:
        with self.server.lock:
            self.server.connections += 1
        super().handle()

    def log_message(self, *args: object) -> None:  # quiet
        pass

    def do_GET(self) -> None:
        data = self.server.files.get(self.path)
        if data is None:
            self.send_error(404)
            return
        header = self.headers.get("Range")
        with self.server.lock:
            first = not self.server.gets
            self.server.gets.append((self.path, header))
        start = int(header.removeprefix("bytes=").split("-")[0]) if header else 0
        if start >= len(data):
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(data)}")
            self.end_headers()
            return
        self.send_response(206 if header else 200)
        if header:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        body = data[start:]
        if first and self.server.cut_first is not None:
            self.send_body(body[: self.server.cut_first])
            self.close_connection = True
            return
        if first and self.server.hold_first is not None:
            half = len(body) // 2
            self.send_body(body[:half])
            self.server.hold_first.wait(timeout=60)
            body = body[half:]
        self.send_body(body)

    def send_body(self, body: bytes) -> None:
        self.wfile.write(body)
        self.wfile.flush()
        with self.server.lock:
            self.server.bytes_sent += len(body)


@pytest.fixture
def server():
    httpd = Server()
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.shutdown()
    httpd.server_close()


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# --------------------------------------------------------------------------------------------
# Archives in the real layouts
# --------------------------------------------------------------------------------------------


def tar_of(folder: Path, mode: str, arcname: str = "") -> bytes:
    """``folder``'s contents as a tar (``mode``: "w:xz", "w:gz"), under ``arcname`` if given,
    else at the archive's top level (as MVTec AD's: ``grid/train/good/000.png``...)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode=mode) as tar:
        if arcname:
            tar.add(folder, arcname=arcname)
        else:
            for entry in sorted(folder.iterdir()):
                tar.add(entry, arcname=entry.name)
    return buffer.getvalue()


def mvtec_archive(tmp_path: Path) -> bytes:
    """mvtec_anomaly_detection.tar.xz's layout: the categories (and licence files) at the top."""
    source = make_mvtec(tmp_path / "mvtec-src", categories=("grid", "bottle"), size=32)
    (source / "license.txt").write_text("CC BY-NC-SA 4.0\n")
    return tar_of(source, "w:xz")


def ucsd_archive(tmp_path: Path) -> bytes:
    """UCSD_Anomaly_Dataset.tar.gz's layout: UCSD_Anomaly_Dataset.v1p2/{UCSDped1,UCSDped2}."""
    source = tmp_path / "ucsd-src"
    make_ucsd(source, scene="UCSDped1")
    make_ucsd(source, scene="UCSDped2")
    return tar_of(source, "w:gz", arcname="UCSD_Anomaly_Dataset.v1p2")


def mvtec_entry(source: Source):
    return replace(DATASETS["mvtec"].download, parts=("grid", "bottle"), sources=(source,))


def evil_tar(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> bytes:
    """An MVTec-like archive with one harmless member, then ``name`` (a file, or a link)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for member_name, payload in (("grid/train/good/000.png", b"png"), (name, b"evil")):
            info = tarfile.TarInfo(member_name)
            if member_name == name and kind != tarfile.REGTYPE:
                info.type, info.linkname = kind, link
                tar.addfile(info)
            else:
                info.size = len(payload)
                tar.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


# --------------------------------------------------------------------------------------------
# Each dataset, fetched, then read by its loader
# --------------------------------------------------------------------------------------------


def test_mvtec_fetched_into_the_layout_the_loader_reads(server, tmp_path):
    source = server.serve("/mvtec_anomaly_detection.tar.xz", mvtec_archive(tmp_path))
    folder = tmp_path / "data" / "mvtec_ad"
    assert fetch(mvtec_entry(source), folder, stream=io.StringIO())
    data = load_mvtec(folder, "grid", image_size=32)
    assert data.train.shape == (6, 3, 32, 32) and len(data.test_paths) == 6
    assert (folder / "license.txt").is_file() and (folder / MANIFEST).is_file()
    assert not (folder / source.name).exists()  # the archive goes once unpacked
    # Complete: a second fetch sends no request and leaves everything as it was.
    before = (len(server.gets), server.bytes_sent)
    assert not fetch(mvtec_entry(source), folder, stream=io.StringIO())
    assert (len(server.gets), server.bytes_sent) == before


def test_ucsd_fetched_without_its_top_folder_where_the_loader_reads(server, tmp_path):
    source = server.serve("/UCSD_Anomaly_Dataset.tar.gz", ucsd_archive(tmp_path))
    folder = tmp_path / "data" / "UCSD_Anomaly_Dataset.v1p2"
    assert fetch(
        replace(DATASETS["ucsd"].download, sources=(source,)), folder, stream=io.StringIO()
    )
    assert (folder / "UCSDped1" / "Train").is_dir() and (folder / "UCSDped2" / "Test").is_dir()
    assert not (folder / "UCSD_Anomaly_Dataset.v1p2").exists()
    data = load_ucsd(folder, image_size=(24, 36), val_clips=1, scene="UCSDped1")
    assert data.train.shape[1:] == (1, 24, 36) and bool(data.has_mask.any())


def test_dsprites_fetched_as_the_file_the_loader_reads(server, tmp_path):
    write_fake_npz(tmp_path / NPZ_NAME)
    source = server.serve(f"/{NPZ_NAME}", (tmp_path / NPZ_NAME).read_bytes())
    root = tmp_path / "data"
    entry = replace(DATASETS["dsprites"].download, sources=(source,))
    assert fetch(entry, root / "dsprites", stream=io.StringIO())
    assert DSpritesNpz.from_root(root).num_images == int(np.prod(FAKE_SIZES))
    assert sorted(p.name for p in (root / "dsprites").iterdir()) == [LOCK, NPZ_NAME]


def idx_files(n: int) -> dict[str, bytes]:
    """MNIST's four files (gzipped IDX) with ``n`` images each."""
    rng = np.random.default_rng(0)
    images = (
        struct.pack(">IIII", 2051, n, 28, 28) + rng.integers(0, 256, n * 784, np.uint8).tobytes()
    )
    labels = struct.pack(">II", 2049, n) + (np.arange(n) % 10).astype(np.uint8).tobytes()
    raw = dict(zip(MNIST_FILES, (images, labels, images, labels), strict=True))
    return {f"{name}.gz": gzip.compress(data) for name, data in raw.items()}


def test_mnist_fetched_through_torchvision(server, tmp_path, monkeypatch):
    from torchvision.datasets import MNIST

    files = idx_files(20)
    for name, data in files.items():
        server.serve(f"/mnist/{name}", data)
    monkeypatch.setattr(MNIST, "mirrors", [server.url("/mnist/")])
    resources = [(name, hashlib.md5(data).hexdigest()) for name, data in files.items()]
    monkeypatch.setattr(MNIST, "resources", resources)
    sources = tuple(
        Source(server.url(f"/mnist/{name}"), len(files[name]), (("md5", md5),))
        for name, md5 in resources
    )
    root = tmp_path / "data"
    assert fetch(
        replace(DATASETS["mnist"].download, sources=sources), root / "MNIST", stream=io.StringIO()
    )
    data = load_mnist(root)
    assert data.train_images.shape == (20, 1, 28, 28) and data.test_labels.tolist()[:3] == [0, 1, 2]


# --------------------------------------------------------------------------------------------
# Refusals
# --------------------------------------------------------------------------------------------


def test_wrong_hash_is_refused_moved_aside_and_nothing_unpacked(server, tmp_path):
    data = mvtec_archive(tmp_path)
    wrong = "0" * 64
    source = server.serve("/mvtec_anomaly_detection.tar.xz", data, digest=wrong)
    folder = tmp_path / "mvtec_ad"
    with pytest.raises(ChecksumError) as error:
        fetch(mvtec_entry(source), folder, stream=io.StringIO())
    message = str(error.value)
    assert source.name in message and wrong in message and sha256(data) in message
    bad = folder / f"{source.name}.bad"
    assert bad.read_bytes() == data
    assert sorted(p.name for p in folder.iterdir()) == sorted([bad.name, LOCK])


@pytest.mark.parametrize(
    ("name", "kind", "link"),
    [
        ("../evil", tarfile.REGTYPE, ""),
        ("grid/../../evil", tarfile.REGTYPE, ""),
        ("/tmp/evil", tarfile.REGTYPE, ""),
        ("grid/escape", tarfile.SYMTYPE, "../../outside"),
        ("grid/absolute", tarfile.SYMTYPE, "/etc/passwd"),
        ("grid/hard", tarfile.LNKTYPE, "../outside"),
    ],
)
def test_unsafe_archive_member_is_refused_by_name(server, tmp_path, name, kind, link):
    source = server.serve("/mvtec_anomaly_detection.tar.xz", evil_tar(name, kind, link))
    folder = tmp_path / "data" / "mvtec_ad"
    with pytest.raises(UnsafeArchiveError, match=repr(name).replace("/", "/")):
        fetch(mvtec_entry(source), folder, stream=io.StringIO())
    assert not (folder / "grid").exists() and not (tmp_path / "data" / "evil").exists()
    assert not (tmp_path / "evil").exists() and not Path("/tmp/evil").exists()


def test_offline_fails_at_once_creating_nothing(tmp_path):
    source = Source(
        f"http://127.0.0.1:{closed_port()}/mvtec_anomaly_detection.tar.xz", 5, (("md5", "x"),)
    )
    folder = tmp_path / "data" / "mvtec_ad"
    started = time.monotonic()
    with pytest.raises(NetworkUnreachableError) as error:
        fetch(mvtec_entry(source), folder, stream=io.StringIO())
    assert time.monotonic() - started < 5
    message = str(error.value)
    assert "\n" not in message and "network unreachable" in message
    assert f"copy {source.name} (md5 x" in message and f"into {folder} and" in message
    assert not (tmp_path / "data").exists()


def closed_port() -> int:
    """A port on 127.0.0.1 nothing listens on: a connection there is refused."""
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        return unused.getsockname()[1]


def unreachable(monkeypatch) -> None:
    """Every dataset there is to fetch published on a host that refuses connections."""
    port = closed_port()
    for name, download in fetch_module.downloads().items():
        sources = tuple(
            replace(s, url=f"http://127.0.0.1:{port}/{s.name}") for s in download.sources
        )
        published(monkeypatch, name, replace(download, sources=sources))


def published(monkeypatch, name: str, download: Download) -> None:
    """The dataset ``name`` fetched as ``download`` says, for the test."""
    monkeypatch.setitem(DATASETS, name, replace(DATASETS[name], download=download))


@pytest.mark.parametrize(
    "argv",
    [
        ["mvtec", "--quick", "--categories", "grid"],
        ["all", "--quick"],
    ],
)
def test_sweep_download_offline_is_one_line_exit_2_and_creates_nothing(
    argv, tmp_path, monkeypatch, capsys
):
    from orchestrator import sweep

    unreachable(monkeypatch)
    monkeypatch.chdir(tmp_path)
    data_root = tmp_path / "x"
    started = time.monotonic()
    assert sweep.main([*argv, "--download", "--data-root", str(data_root)]) == 2
    assert time.monotonic() - started < 15
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: network unreachable: ")
    assert "copy " in err and str(data_root) in err
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # no data root, no mlflow.db


def test_archive_copied_by_hand_is_verified_and_unpacked_offline(tmp_path):
    data = mvtec_archive(tmp_path)
    source = Source(
        "http://127.0.0.1:9/mvtec_anomaly_detection.tar.xz", len(data), (("sha256", sha256(data)),)
    )
    folder = tmp_path / "mvtec_ad"
    folder.mkdir()
    (folder / source.name).write_bytes(data)
    assert fetch(mvtec_entry(source), folder, stream=io.StringIO())
    assert load_mvtec(folder, "bottle", image_size=32).train.shape[0] == 6


def test_files_removed_after_unpacking_are_reported_not_refetched(server, tmp_path):
    source = server.serve("/mvtec_anomaly_detection.tar.xz", mvtec_archive(tmp_path))
    folder = tmp_path / "mvtec_ad"
    fetch(mvtec_entry(source), folder, stream=io.StringIO())
    (folder / "grid" / "train" / "good" / "000.png").unlink()
    with pytest.raises(FetchError, match="incomplete.*grid/train/good has 5 files, 6"):
        fetch(mvtec_entry(source), folder, stream=io.StringIO())
    assert len(server.gets) == 1


# --------------------------------------------------------------------------------------------
# Resuming, retrying, locking
# --------------------------------------------------------------------------------------------


def test_interrupted_download_resumes_where_it_stopped(server, tmp_path):
    data = mvtec_archive(tmp_path)
    source = server.serve("/mvtec_anomaly_detection.tar.xz", data)
    server.cut_first = len(data) // 2
    folder = tmp_path / "mvtec_ad"
    with pytest.raises(FetchError, match="run again to resume"):
        fetch(mvtec_entry(source), folder, retries=0, stream=io.StringIO())
    part = folder / f"{source.name}.part"
    assert part.stat().st_size == len(data) // 2 and not (folder / "grid").exists()
    assert fetch(mvtec_entry(source), folder, stream=io.StringIO())
    assert server.bytes_sent == len(data)  # nothing sent twice
    assert server.gets[1][1] == f"bytes={len(data) // 2}-"
    assert load_mvtec(folder, "grid", image_size=32).train.shape[0] == 6


def test_cut_connection_is_retried_within_one_fetch(server, tmp_path):
    data = mvtec_archive(tmp_path)
    source = server.serve("/mvtec_anomaly_detection.tar.xz", data)
    server.cut_first = len(data) // 3
    log = io.StringIO()
    assert fetch(mvtec_entry(source), tmp_path / "mvtec_ad", backoff_s=0.0, stream=log)
    assert server.bytes_sent == len(data) and len(server.gets) == 2
    assert "retrying in 0 s (1 of 4)" in log.getvalue()


FETCH_ONE = """
import json, sys
from dataclasses import replace
from pathlib import Path
from vaecam.data import download as f
from vaecam.experiments.datasets import DATASETS
spec = json.loads(sys.argv[1])
entry = replace(DATASETS["mvtec"].download, parts=("grid", "bottle"), sources=(
    f.Source(spec["url"], spec["size"], (("sha256", spec["sha256"]),)),))
print("FETCHED" if f.fetch(entry, Path(spec["folder"])) else "PRESENT", flush=True)
"""


@pytest.mark.slow
def test_two_processes_fetching_at_once_download_once(server, tmp_path):
    data = mvtec_archive(tmp_path)
    source = server.serve("/mvtec_anomaly_detection.tar.xz", data)
    server.hold_first = threading.Event()
    folder = tmp_path / "shared" / "mvtec_ad"
    spec = json.dumps(
        {"url": source.url, "size": len(data), "sha256": sha256(data), "folder": str(folder)}
    )
    env = os.environ | {"PYTHONPATH": str(ROOT)}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", FETCH_ONE, spec],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    # The first download is held half-way until the other process says it waits for the lock.
    errors: list[list[str]] = [[], []]

    def read_errors(process: subprocess.Popen, lines: list[str]) -> None:
        for line in process.stderr:
            lines.append(line)
            if "another process is fetching it" in line:
                server.hold_first.set()

    readers = [
        threading.Thread(target=read_errors, args=(p, lines), daemon=True)
        for p, lines in zip(processes, errors, strict=True)
    ]
    for reader in readers:
        reader.start()
    outputs = [p.stdout.read().strip() for p in processes]
    for process, reader in zip(processes, readers, strict=True):
        process.wait(timeout=120)
        reader.join(timeout=10)
    assert [p.returncode for p in processes] == [0, 0], errors
    assert sorted(outputs) == ["FETCHED", "PRESENT"]
    waited = "".join(errors[outputs.index("PRESENT")])
    assert "MVTec AD: another process is fetching it" in waited
    assert len(server.gets) == 1 and server.bytes_sent == len(data)
    assert load_mvtec(folder, "grid", image_size=32).train.shape[0] == 6


# --------------------------------------------------------------------------------------------
# The table and the command
# --------------------------------------------------------------------------------------------


def test_table_has_every_dataset_with_checkable_hashes():
    from torchvision.datasets import MNIST

    downloads = fetch_module.downloads()
    assert sorted(downloads) == ["dsprites", "mnist", "mvtec", "ucsd"]
    for dataset in downloads.values():
        for source in dataset.sources:
            assert source.url.startswith(("http://", "https://")) and source.digests
            for algorithm, digest in source.digests:
                assert len(digest) == hashlib.new(algorithm).digest_size * 2
                int(digest, 16)
    assert downloads["mvtec"].sources[0].digests[0][0] == "sha256"
    assert downloads["ucsd"].sources[0].digests[0][0] == "sha256"
    hashes = [(s.name, s.digests[0][1]) for s in downloads["mnist"].sources]
    assert hashes == [tuple(r) for r in MNIST.resources]  # torchvision checks these


def test_command_fetches_into_the_campaign_layout(server, tmp_path, monkeypatch, capsys):
    write_fake_npz(tmp_path / NPZ_NAME)
    source = server.serve(f"/{NPZ_NAME}", (tmp_path / NPZ_NAME).read_bytes())
    published(monkeypatch, "dsprites", replace(DATASETS["dsprites"].download, sources=(source,)))
    root = tmp_path / "data"
    assert fetch_module.main(["dsprites", "--data-root", str(root)]) == 0
    assert (root / "dsprites" / NPZ_NAME).is_file()
    out, err = capsys.readouterr()
    assert "licence Apache License 2.0" in err and f"fetched into {root / 'dsprites'}" in out
    assert fetch_module.main(["dsprites", "--data-root", str(root)]) == 0
    out, err = capsys.readouterr()
    assert "already in" in out and "licence" not in err  # the licence: on the first download


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_one_line_per_tenth_in_a_log_and_a_redrawn_line_on_a_terminal(monkeypatch):
    log = io.StringIO()
    progress = download_module.Progress("file.tar", 1000, 0, log)
    for done in range(0, 1001, 25):
        progress(done)
    lines = log.getvalue().splitlines()
    assert len(lines) == 10 and lines[-1].startswith("file.tar: 1.0 kB of 1.0 kB (100%)")
    assert all("/s" in line and "left" in line for line in lines)
    terminal = Terminal()
    progress = download_module.Progress("file.tar", 1000, 500, terminal)
    monkeypatch.setattr(time, "monotonic", lambda: progress.began + 2.0)
    progress(750)
    progress.finish()
    assert terminal.getvalue() == "\rfile.tar: 750 B of 1.0 kB (75%), 125 B/s, 0:02 left\x1b[K\n"


@pytest.mark.parametrize("config", ["cluster.yaml", "cluster-local.yaml"])
def test_cluster_nodes_fetch_the_data_as_they_join(config):
    import shlex

    import yaml

    setup = yaml.safe_load((ROOT / "docker" / config).read_text())["setup_commands"]
    fetches = [shlex.split(c) for c in setup if "vaecam.data.fetch" in c]
    assert fetches, f"{config}: no node fetches the datasets"
    for command in fetches:
        assert command[:3] == ["python", "-m", "vaecam.data.fetch"]
        args = fetch_module.build_parser().parse_args(command[3:])
        assert args.data_root == Path("/home/ray/data")


def test_folders_already_there_are_left_as_they_are(server, tmp_path):
    source = server.serve("/mvtec_anomaly_detection.tar.xz", mvtec_archive(tmp_path))
    folder = tmp_path / "mvtec_ad"
    (folder / "grid").mkdir(parents=True)
    (folder / "grid" / "mine.txt").write_text("copied by hand")
    log = io.StringIO()
    assert fetch(mvtec_entry(source), folder, stream=log)
    assert [p.name for p in (folder / "grid").iterdir()] == ["mine.txt"]
    assert load_mvtec(folder, "bottle", image_size=32).train.shape[0] == 6
    assert f"{folder}: left as they were: grid" in log.getvalue()


@pytest.mark.parametrize("name", ["../evil", "/tmp/evil", "C:/evil", "grid/../../evil"])
def test_unsafe_zip_member_is_refused_by_name(tmp_path, name):
    import zipfile

    archive = tmp_path / "data.zip"
    with zipfile.ZipFile(archive, "w") as zip_file:
        zip_file.writestr("grid/train/good/000.png", b"png")
        zip_file.writestr(zipfile.ZipInfo(name), b"evil")
    staging = tmp_path / "staging"
    staging.mkdir()
    with pytest.raises(UnsafeArchiveError, match=repr(name)):
        download_module.unpack_zip(archive, staging, "")
    assert not any(staging.iterdir())


def test_sweep_download_fetches_on_the_driver_before_ray_starts(
    server, tmp_path, monkeypatch, capsys
):
    from orchestrator import sweep

    source = server.serve("/mvtec_anomaly_detection.tar.xz", mvtec_archive(tmp_path))
    published(monkeypatch, "mvtec", mvtec_entry(source))
    data_root = tmp_path / "x"
    seen = {}

    def run(args, *rest):  # where Ray would start
        seen["data"] = sorted(p.name for p in data_root.iterdir() if not p.name.startswith("."))
        return 0

    monkeypatch.setattr(sweep, "run", run)
    argv = ["mvtec", "--quick", "--categories", "grid", "--download", "--data-root", str(data_root)]
    argv += ["--tracking-uri", f"sqlite:///{tmp_path}/mlflow.db"]
    assert sweep.main([*argv, "--storage-path", str(tmp_path / "ray_results")]) == 0
    assert seen["data"] == ["VAECAM_SYNTHETIC.txt", "bottle", "grid", "license.txt"]
    assert "licence CC BY-NC-SA 4.0" in capsys.readouterr().err
