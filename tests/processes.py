"""Finding and ending the processes a test started, however deep or reparented: from /proc."""

from __future__ import annotations

import os
import socket
import subprocess
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    """A TCP port free on 127.0.0.1 now (tests only ever listen on loopback)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, server: subprocess.Popen, log: Path, timeout: float) -> None:
    """Until the server at ``url`` answers ``/health``; its ``log`` in the error when it ends
    first or takes longer than ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            urllib.request.urlopen(f"{url}/health", timeout=2)
            return
        except OSError:
            if server.poll() is not None or time.monotonic() > deadline:
                raise AssertionError(f"{url} did not start:\n{log.read_text()}") from None
            time.sleep(0.3)


def proc_table() -> dict[int, int]:
    """pid -> parent pid of every live process, from /proc."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as file:
                fields = file.read().rsplit(")", 1)[1].split()
        except OSError:  # gone meanwhile
            continue
        if fields[0] != "Z":  # a zombie is dead already
            table[int(entry)] = int(fields[1])
    return table


def descendants(root: int) -> set[int]:
    """``root`` and every live process below it (Ray's workers get process groups of their
    own, so the process group of ``root`` does not find them all)."""
    table = proc_table()
    found, frontier = set(), {root} & set(table)
    while frontier:
        found |= frontier
        frontier = {pid for pid, parent in table.items() if parent in frontier} - found
    return found


def _read(pid: int, name: str) -> bytes:
    try:
        with open(f"/proc/{pid}/{name}", "rb") as file:
            return file.read()
    except OSError:
        return b""


def _link(pid: int, name: str) -> str:
    try:
        return os.readlink(f"/proc/{pid}/{name}")
    except OSError:
        return ""


def command_line(pid: int) -> str:
    return _read(pid, "cmdline").replace(b"\0", b" ").decode(errors="replace")[:300]


def using(folders: list[str], marker: bytes | None = None) -> set[int]:
    """Live processes whose working directory or an open file is in ``folders``, or whose
    environment holds ``marker`` (a Ray agent's process title overwrites its environment:
    the marker alone misses it; its log files in the node's temp dir find it)."""

    def inside(path: str) -> bool:
        return any(path == folder or path.startswith(f"{folder}/") for folder in folders)

    def files(pid: int) -> list[str]:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            return []
        return [_link(pid, "cwd")] + [_link(pid, f"fd/{fd}") for fd in fds]

    return {
        pid
        for pid in proc_table()
        if pid != os.getpid()
        and ((marker and marker in _read(pid, "environ")) or any(map(inside, files(pid))))
    }


def kill(pids: set[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass
