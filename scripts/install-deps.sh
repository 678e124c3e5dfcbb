#!/usr/bin/env bash
# Installs the Debian 12 packages agentflow needs to build, test and run.
# Only packages that are missing are installed; safe to run repeatedly.
# Usage: scripts/install-deps.sh [--test]   (--test adds what the test suite needs)
set -euo pipefail

pkgs=(
  build-essential cmake ninja-build pkg-config
  nlohmann-json3-dev libspdlog-dev libfmt-dev libcli11-dev
  libboost-dev libboost-system-dev
  libsqlite3-dev libpq-dev librdkafka-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  curl
)
if [[ "${1:-}" == "--test" ]]; then
  # PostgreSQL 15 server: the tests start their own on a loopback port.
  pkgs+=(sqlite3 postgresql-15 postgresql-client-15)
fi

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
