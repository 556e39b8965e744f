"""The services a command needs, probed once before it starts: a remote MLflow tracking server
(``--tracking-uri http(s)://...``) and the Ray cluster ``RAY_ADDRESS`` names. MLflow's client
retries an unreachable server for minutes and Ray waits a minute for a cluster; a probe with a
short timeout and no retries turns either into one line naming the address and the likely
cause, and exit status 2.

Light on purpose (``requests`` and the standard library): the commands probe before they import
torch, Ray and MLflow, which take seconds (:func:`probe_argv`).
"""

from __future__ import annotations

import configparser
import os
import socket
import sys
from pathlib import Path
from urllib.parse import urlsplit

import requests

#: Seconds a probe waits for a connection, and then for an answer.
TIMEOUT_S = 4.0

#: A read of every MLflow server: the experiments, at most one (the REST API's GET form).
SEARCH = "/api/2.0/mlflow/experiments/search?max_results=1"

#: Where ``RAY_ADDRESS`` names no port: Ray's client server for ``ray://``, else the GCS.
RAY_PORTS = {"ray": 10001, "http": 8265, "https": 443, "": 6379}


class ServiceError(Exception):
    """A service does not answer as it must; the message is one line."""


def _credentials() -> tuple[tuple[str, str] | None, dict[str, str]]:
    """Basic-auth account and headers as MLflow's client finds them: the ``MLFLOW_TRACKING_*``
    variables, else ``~/.mlflow/credentials``; a bearer token from ``MLFLOW_TRACKING_TOKEN``."""
    user = os.environ.get("MLFLOW_TRACKING_USERNAME")
    password = os.environ.get("MLFLOW_TRACKING_PASSWORD")
    if not (user and password):
        config = configparser.ConfigParser()
        config.read(Path.home() / ".mlflow" / "credentials")
        section = config["mlflow"] if config.has_section("mlflow") else {}
        user = user or section.get("mlflow_tracking_username")
        password = password or section.get("mlflow_tracking_password")
    token = os.environ.get("MLFLOW_TRACKING_TOKEN")
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return ((user, password) if user and password else None), headers


def _verify() -> bool | str:
    """TLS verification as MLflow's client does it."""
    if os.environ.get("MLFLOW_TRACKING_INSECURE_TLS", "").lower() == "true":
        return False
    return os.environ.get("MLFLOW_TRACKING_SERVER_CERT_PATH") or True


def _why_unreachable(error: requests.RequestException, timeout: float) -> str:
    text = str(error)
    if isinstance(error, requests.Timeout):
        return f"no answer within {timeout:g} s (a firewall, or a busy or wrong host)"
    if isinstance(error, requests.exceptions.SSLError):
        return "its TLS certificate was refused (MLFLOW_TRACKING_SERVER_CERT_PATH)"
    for marker, why in (
        ("Connection refused", "connection refused: nothing listens on that port"),
        ("Name or service not known", "unknown host name"),
        ("Failed to resolve", "unknown host name"),
        ("No route to host", "no route to host"),
    ):
        if marker in text:
            return why
    return type(error).__name__


def check_tracking(uri: str, timeout: float = TIMEOUT_S) -> None:
    """An ``http(s)://`` tracking URI must be an MLflow server that accepts this account; one
    request, no retries. Other URIs (a sqlite file) need no probe."""
    if not uri.startswith(("http://", "https://")):
        return
    where = f"--tracking-uri {uri}"
    auth, headers = _credentials()
    try:
        answer = requests.get(
            uri.rstrip("/") + SEARCH,
            auth=auth,
            headers=headers,
            timeout=(timeout, timeout),
            verify=_verify(),
            allow_redirects=False,
        )
    except requests.RequestException as error:
        raise ServiceError(
            f"{where}: cannot reach the MLflow server ({_why_unreachable(error, timeout)}); is it "
            "running, and are the host and port right?"
        ) from None
    if answer.status_code == 401:
        fix = (
            "the user or password is wrong"
            if auth
            else "no account given: set MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, "
            "or write ~/.mlflow/credentials (docker/make-secrets.sh)"
        )
        raise ServiceError(f"{where}: the server refused the login (HTTP 401): {fix}")
    if answer.status_code == 403:
        raise ServiceError(
            f"{where}: the server refused access (HTTP 403): the account may not read "
            "experiments; log in as a user with permission (the server's admin account)"
        )
    try:
        body = answer.json() if answer.status_code == 200 else None
    except ValueError:
        body = None
    if not isinstance(body, dict) or set(body) - {"experiments", "next_page_token"}:
        raise ServiceError(
            f"{where}: not an MLflow tracking server (HTTP {answer.status_code} to "
            f"{SEARCH.split('?')[0]}); check the host, the port and the path"
        )


def check_ray_address(address: str | None = None, timeout: float = TIMEOUT_S) -> None:
    """The cluster ``RAY_ADDRESS`` names (``HOST:PORT``, ``ray://HOST:PORT``) must accept a
    connection; ``auto``, ``local`` or unset need no probe."""
    address = os.environ.get("RAY_ADDRESS", "") if address is None else address
    if address in ("", "auto", "local"):
        return
    parts = urlsplit(address if "://" in address else f"//{address}")
    host = parts.hostname
    try:
        port = parts.port or RAY_PORTS.get(parts.scheme, RAY_PORTS[""])
    except ValueError:
        host = None
    if not host:
        raise ServiceError(
            f"RAY_ADDRESS {address!r}: expected HOST:PORT or ray://HOST:PORT (or auto)"
        )
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as error:
        why = "no answer" if isinstance(error, TimeoutError) else error.strerror or error
        raise ServiceError(
            f"RAY_ADDRESS {address}: no Ray cluster answers at {host}:{port} ({why}); start it "
            "(ray up, or ray start --head), fix the address, or unset RAY_ADDRESS to run locally"
        ) from None


def check_recorded(uri: str) -> None:
    """A store that commands reading a recorded sweep (``report``, ``rescore``) need: a remote
    server that answers (:func:`check_tracking`) or a sqlite file that exists (MLflow would
    create an empty one)."""
    check_tracking(uri)
    path = uri.removeprefix("sqlite:///")
    if uri.startswith("sqlite:///") and not Path(path).exists():
        raise ServiceError(
            f"--tracking-uri {uri}: no MLflow store there (no file {path}); pass the store "
            "the sweep recorded into"
        )


def check_services(tracking_uri: str, ray: bool = True) -> None:
    """The tracking server first (every command needs it), then (``ray``) Ray's cluster."""
    check_tracking(tracking_uri)
    if ray:
        check_ray_address()


def probe_argv(argv: list[str], ray: bool = True) -> None:
    """:func:`check_services` on a command line, before the command imports anything heavy:
    on a failure, one line on stderr and exit 2. Flags are read as argparse would read them
    (``--tracking-uri URI`` or ``--tracking-uri=URI``; the last one wins); the command parses
    them again, properly, afterwards."""
    uri = ""
    for index, arg in enumerate(argv):
        if arg == "--tracking-uri" and index + 1 < len(argv):
            uri = argv[index + 1]
        elif arg.startswith("--tracking-uri="):
            uri = arg.split("=", 1)[1]
    if "-h" in argv or "--help" in argv:
        return
    try:
        check_services(uri, ray)
    except ServiceError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
