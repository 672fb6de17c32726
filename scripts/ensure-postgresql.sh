#!/usr/bin/env bash
# Install Debian's postgresql for the corrections tests when its server binaries are missing
# (the tests start their own throwaway server in a temp dir: nothing is configured or started
# here, and the package's own cluster is not used).
set -euo pipefail
if compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null; then exit 0; fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "installing Debian's postgresql for the corrections tests…"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq postgresql >/dev/null
