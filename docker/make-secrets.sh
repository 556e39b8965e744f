#!/usr/bin/env bash
# Create the cluster's two secrets on the machine you run `ray up` from, outside the repository
# (so that neither git nor the image's `COPY . .` can pick them up), readable only by you:
#
#   ~/.vaecam/ray/auth_token      Ray's token: every Ray process and client must present it
#   ~/.vaecam/mlflow/credentials  the MLflow account (user `vaecam`, a random password) that the
#                                 tracking server creates and the sweep's driver and trials use
#
# docker/cluster*.yaml's file_mounts copy the two folders to ~/.ray and ~/.mlflow in every node's
# container, where Ray and MLflow's client look by default. An existing file is kept, so running
# this again is harmless; delete a file (and restart the cluster) to make a new one.
#
# Usage: docker/make-secrets.sh [FOLDER]     (default: ~/.vaecam; the configs name ~/.vaecam)
set -euo pipefail

folder=${1:-$HOME/.vaecam}
umask 077
mkdir -p "$folder/ray" "$folder/mlflow"

token=$folder/ray/auth_token
if [[ ! -s "$token" ]]; then
    # As `ray get-auth-token --generate` makes them: 256 random bits, hex.
    python3 -c 'import secrets; print(secrets.token_hex(32), end="")' > "$token"
    echo "make-secrets.sh: wrote $token" >&2
fi

credentials=$folder/mlflow/credentials
if [[ ! -s "$credentials" ]]; then
    password=$(python3 -c 'import secrets; print(secrets.token_urlsafe(24))')
    # MLflow's credentials file (mlflow.utils.credentials reads ~/.mlflow/credentials).
    printf '[mlflow]\nmlflow_tracking_username = vaecam\nmlflow_tracking_password = %s\n' \
        "$password" > "$credentials"
    echo "make-secrets.sh: wrote $credentials" >&2
fi
