#!/usr/bin/env bash
# Start the MLflow tracking server that every trial of a cluster sweep logs to. Run it on the
# head node (docker/cluster.yaml and docker/cluster-local.yaml start it after Ray) and pass
# `--tracking-uri http://<head-ip>:PORT` to the sweep. docker/README.md, "Security model",
# explains the defaults below.
#
# Authentication is always on (MLflow's basic-auth app): the server refuses requests without a
# valid user and password. It creates its admin user on the first start from the same account
# the sweep's driver and trials log in with, read as MLflow's client reads it:
# MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD, or else ~/.mlflow/credentials (the
# cluster configs mount that file on every node). Without an account the script refuses to start.
# Changing the password later: MLflow's update-password API (the stored user outlives the file).
#
# Artifacts are proxied (--serve-artifacts --artifacts-destination): trials upload figures,
# configs and weights to this server over HTTP, it stores them in MLFLOW_ARTIFACTS, and no trial
# writes them to its own disk or needs credentials for the artifact store.
#
# Environment (all optional but the account):
#   MLFLOW_HOST           interface to bind. Default: the machine's first private address
#                         (`hostname -I`), which the workers reach; 127.0.0.1 if it has none.
#                         0.0.0.0 opens it on every interface (docker/README.md says when).
#   MLFLOW_PORT           port to listen on. Default: 5000.
#   MLFLOW_BACKEND_URI    runs, params and metrics. Default: sqlite:///$MLFLOW_HOME/mlflow.db.
#                         PostgreSQL: postgresql://USER@HOST:5432/DATABASE (the database must
#                         exist; MLflow creates its tables; psycopg 3 is in the image), with the
#                         password in a libpq password file: $MLFLOW_HOME/.pgpass (mode 600) is
#                         used when it exists, or PGPASSFILE / PGPASSWORD. The URI reaches MLflow
#                         through the environment, never its command line (`ps` shows that).
#   MLFLOW_ARTIFACTS      where the server keeps artifacts: a local folder (default:
#                         $MLFLOW_HOME/artifacts) or s3://BUCKET/PREFIX (credentials from the
#                         head's IAM role or AWS_* variables; gs:// works with google-cloud-storage).
#   MLFLOW_HOME           folder for the default sqlite files, artifacts, the auth configuration
#                         and the pidfile. Default: ~/mlflow.
#   MLFLOW_WORKERS        server worker processes. Default: 4.
#   MLFLOW_ALLOWED_HOSTS  Host headers to accept, comma-separated. Default: MLflow's (localhost
#                         and private IPs: 10.*, 172.16-31.*, 192.168.*); set it when clients use
#                         a public address or a DNS name.
#   MLFLOW_AUTH_CONFIG_PATH  your own basic_auth.ini instead of the one written to $MLFLOW_HOME.
#   MLFLOW_FLASK_SERVER_SECRET_KEY  the auth app's CSRF key. Default: generated once into
#                         $MLFLOW_HOME/flask-secret-key (mode 600).
#
# Usage: mlflow-server.sh         run the server in the foreground (for nohup, systemd or a
#                                 container). When something already answers on the port it says
#                                 so and exits 0, so running it again (`ray up`) is harmless.
#        mlflow-server.sh stop    stop the server this script started (its PID is in
#                                 $MLFLOW_HOME/server.pid), e.g. to restart it with other settings.
set -euo pipefail

MLFLOW_HOME=${MLFLOW_HOME:-$HOME/mlflow}
mkdir -p "$MLFLOW_HOME"
MLFLOW_HOME=$(cd "$MLFLOW_HOME" && pwd)

port=${MLFLOW_PORT:-5000}
host=${MLFLOW_HOST:-}
if [[ -z "$host" ]]; then
    # The private address: workers reach it, the internet does not (the head's security group
    # admits only the cluster's nodes, docker/README.md).
    host=$(hostname -I 2>/dev/null | awk '{print $1}') || true
    host=${host:-127.0.0.1}
fi
probe=$host
if [[ "$probe" == "0.0.0.0" ]]; then
    probe=127.0.0.1
fi
pidfile=$MLFLOW_HOME/server.pid

listening() {
    (exec 3<>"/dev/tcp/$probe/$port") 2>/dev/null
}

# The port of the `mlflow server` that runs as PID; fails when PID is not an `mlflow server`. A
# pidfile outlives a crash or a reboot, and its PID may since belong to an unrelated process,
# which `stop` must not kill.
server_port() {
    local arg previous="" mlflow=0 server=0 on_port=""
    local -a args
    mapfile -d '' -t args 2>/dev/null < "/proc/$1/cmdline" || return 1
    for arg in "${args[@]}"; do
        [[ "${arg##*/}" == mlflow ]] && mlflow=1
        [[ "$arg" == server && "$mlflow" == 1 ]] && server=1
        [[ "$previous" == --port ]] && on_port=$arg
        previous=$arg
    done
    ((mlflow && server)) && [[ -n "$on_port" ]] && echo "$on_port"
}

# Whether PID runs: it exists and is not a zombie (an exited server whose parent has not
# reaped it yet, as under `nohup` in a container without an init process).
running() {
    local stat
    read -r stat 2>/dev/null < "/proc/$1/stat" || return 1
    stat=${stat##*) }
    [[ "${stat%% *}" != Z ]]
}

stop() {
    local pid running_port
    if [[ ! -s "$pidfile" ]]; then
        echo "mlflow-server.sh: no server started by this script is running (no $pidfile)" >&2
        return 0
    fi
    pid=$(<"$pidfile")
    if [[ ! "$pid" =~ ^[0-9]+$ ]] || ! running "$pid"; then
        rm -f "$pidfile"
        echo "mlflow-server.sh: PID $pid in $pidfile is not running; removed the stale pidfile" >&2
        return 0
    fi
    if ! running_port=$(server_port "$pid"); then
        rm -f "$pidfile"
        echo "mlflow-server.sh: refusing to stop PID $pid: it is not \`mlflow server\` (the" \
            "pidfile $pidfile is stale and now removed; \`ps -ef | grep mlflow\` finds a server)" >&2
        return 1
    fi
    if [[ "$running_port" != "$port" ]]; then
        echo "mlflow-server.sh: refusing to stop PID $pid: it serves port $running_port, not" \
            "$port (set MLFLOW_PORT=$running_port to stop it)" >&2
        return 1
    fi
    # `mlflow server` forwards SIGTERM to its web server and waits for it.
    kill "$pid"
    for _ in {1..30}; do
        if ! running "$pid"; then
            rm -f "$pidfile"
            echo "mlflow-server.sh: stopped" >&2
            return 0
        fi
        sleep 1
    done
    echo "mlflow-server.sh: PID $pid still runs 30 s after SIGTERM" >&2
    return 1
}

case "${1:-}" in
    "") ;;
    stop)
        stop
        exit
        ;;
    *)
        echo "usage: mlflow-server.sh [stop]" >&2
        exit 2
        ;;
esac

if listening; then
    echo "mlflow-server.sh: something already listens on $probe:$port; not starting another" >&2
    exit 0
fi

# The account, as MLflow's client resolves it: the variables first, then the credentials file.
# Read here (not passed as arguments) so that no password is on a command line.
username=${MLFLOW_TRACKING_USERNAME:-}
password=${MLFLOW_TRACKING_PASSWORD:-}
credentials=$HOME/.mlflow/credentials
if [[ (-z "$username" || -z "$password") && -r "$credentials" ]]; then
    file_username="" file_password=""
    {
        read -r file_username || true
        read -r file_password || true
    } < <(python3 - "$credentials" <<'EOF'
import configparser
import sys

config = configparser.ConfigParser()
config.read(sys.argv[1])
section = config["mlflow"] if config.has_section("mlflow") else {}
print(section.get("mlflow_tracking_username", ""))
print(section.get("mlflow_tracking_password", ""))
EOF
    )
    username=${username:-$file_username}
    password=${password:-$file_password}
fi
if [[ -z "$username" || -z "$password" ]]; then
    echo "mlflow-server.sh: no MLflow account: set MLFLOW_TRACKING_USERNAME and" \
        "MLFLOW_TRACKING_PASSWORD or write $credentials (docker/make-secrets.sh makes one);" \
        "not starting a server without authentication" >&2
    exit 1
fi
# Used only when the admin user does not exist yet (the first start against this auth store).
export MLFLOW_AUTH_ADMIN_USERNAME=$username MLFLOW_AUTH_ADMIN_PASSWORD=$password

# The files below and those the server creates (sqlite stores with the users' password hashes,
# artifacts) are the server's own.
umask 077
if [[ -z "${MLFLOW_AUTH_CONFIG_PATH:-}" ]]; then
    # Users and permissions live beside the runs (sqlite on the volume); a user other than the
    # admin sees nothing it was not granted.
    export MLFLOW_AUTH_CONFIG_PATH=$MLFLOW_HOME/basic_auth.ini
    cat > "$MLFLOW_AUTH_CONFIG_PATH" <<EOF
[mlflow]
default_permission = NO_PERMISSIONS
database_uri = sqlite:///$MLFLOW_HOME/basic_auth.db
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
grant_default_workspace_access = false
EOF
fi
if [[ -z "${MLFLOW_FLASK_SERVER_SECRET_KEY:-}" ]]; then
    key_file=$MLFLOW_HOME/flask-secret-key
    if [[ ! -s "$key_file" ]]; then
        python3 -c 'import secrets; print(secrets.token_hex(32))' > "$key_file"
    fi
    MLFLOW_FLASK_SERVER_SECRET_KEY=$(<"$key_file")
    export MLFLOW_FLASK_SERVER_SECRET_KEY
fi
if [[ -z "${PGPASSFILE:-}" && -f "$MLFLOW_HOME/.pgpass" ]]; then
    export PGPASSFILE=$MLFLOW_HOME/.pgpass
fi

# MLflow's job execution (huey consumers for GenAI scorers and periodic tasks) runs code on
# request: this project uses none of it.
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false
# click reads --backend-store-uri from here: a password in the URI stays out of `ps`.
backend=${MLFLOW_BACKEND_URI:-sqlite:///$MLFLOW_HOME/mlflow.db}
export MLFLOW_BACKEND_STORE_URI=$backend
artifacts=${MLFLOW_ARTIFACTS:-$MLFLOW_HOME/artifacts}
workers=${MLFLOW_WORKERS:-4}

if [[ "$artifacts" != *://* ]]; then
    mkdir -p "$artifacts"
fi

args=(
    server
    --app-name basic-auth
    --host "$host"
    --port "$port"
    --workers "$workers"
    --serve-artifacts
    --artifacts-destination "$artifacts"
)
if [[ -n "${MLFLOW_ALLOWED_HOSTS:-}" ]]; then
    args+=(--allowed-hosts "$MLFLOW_ALLOWED_HOSTS")
fi

# The backend URI may hold a password: print it without its credentials.
echo "mlflow-server.sh: http://$host:$port (basic auth, admin $username)," \
    "backend ${backend/\/\/*@/\/\/***@}, artifacts $artifacts" >&2
echo "$$" > "$pidfile"  # exec keeps this PID
exec mlflow "${args[@]}"
