#!/usr/bin/env bash
# Start the MLflow tracking server that every trial of a cluster sweep logs to. Run it on the
# head node (docker/cluster.yaml and docker/cluster-local.yaml start it after Ray) and pass
# `--tracking-uri http://<head-ip>:PORT` to the sweep.
#
# Artifacts are proxied (--serve-artifacts --artifacts-destination): trials upload figures,
# configs and weights to this server over HTTP, it stores them in MLFLOW_ARTIFACTS, and no trial
# writes them to its own disk or needs credentials for the artifact store.
#
# Environment (all optional):
#   MLFLOW_BACKEND_URI    runs, params and metrics. Default: sqlite:///$MLFLOW_HOME/mlflow.db.
#                         PostgreSQL: postgresql://USER:PASSWORD@HOST:5432/DATABASE (the database
#                         must exist; MLflow creates its tables; psycopg2 is in the image).
#   MLFLOW_ARTIFACTS      where the server keeps artifacts: a local folder (default:
#                         $MLFLOW_HOME/artifacts) or s3://BUCKET/PREFIX (credentials from the
#                         head's IAM role or AWS_* variables; gs:// works with google-cloud-storage).
#   MLFLOW_PORT           port to listen on. Default: 5000.
#   MLFLOW_HOST           interface to bind. Default: 0.0.0.0 (workers must reach it).
#   MLFLOW_HOME           folder for the default sqlite file and artifacts. Default: ~/mlflow.
#   MLFLOW_WORKERS        server worker processes. Default: 4.
#   MLFLOW_ALLOWED_HOSTS  Host headers to accept, comma-separated. Default: MLflow's (localhost
#                         and private IPs: 10.*, 172.16-31.*, 192.168.*); set it when clients use
#                         a public address or a DNS name.
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

backend=${MLFLOW_BACKEND_URI:-sqlite:///$MLFLOW_HOME/mlflow.db}
artifacts=${MLFLOW_ARTIFACTS:-$MLFLOW_HOME/artifacts}
port=${MLFLOW_PORT:-5000}
host=${MLFLOW_HOST:-0.0.0.0}
workers=${MLFLOW_WORKERS:-4}

probe=$host
if [[ "$probe" == "0.0.0.0" ]]; then
    probe=127.0.0.1
fi
pidfile=$MLFLOW_HOME/server.pid

listening() {
    (exec 3<>"/dev/tcp/$probe/$port") 2>/dev/null
}

case "${1:-}" in
    "") ;;
    stop)
        # `mlflow server` forwards SIGTERM to its web server and waits for it.
        if [[ -s "$pidfile" ]] && kill "$(<"$pidfile")" 2>/dev/null; then
            for _ in {1..30}; do
                if ! listening; then
                    rm -f "$pidfile"
                    echo "mlflow-server.sh: stopped" >&2
                    exit 0
                fi
                sleep 1
            done
            echo "mlflow-server.sh: $probe:$port still answers 30 s after SIGTERM" >&2
            exit 1
        fi
        echo "mlflow-server.sh: no server started by this script is running" >&2
        exit 0
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

if [[ "$artifacts" != *://* ]]; then
    mkdir -p "$artifacts"
fi

args=(
    server
    --host "$host"
    --port "$port"
    --workers "$workers"
    --backend-store-uri "$backend"
    --serve-artifacts
    --artifacts-destination "$artifacts"
)
if [[ -n "${MLFLOW_ALLOWED_HOSTS:-}" ]]; then
    args+=(--allowed-hosts "$MLFLOW_ALLOWED_HOSTS")
fi

# The backend URI may hold a password: print it without its credentials.
echo "mlflow-server.sh: http://$host:$port, backend ${backend/\/\/*@/\/\/***@}, artifacts $artifacts" >&2
echo "$$" > "$pidfile"  # exec keeps this PID
exec mlflow "${args[@]}"
