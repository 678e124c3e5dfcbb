#!/usr/bin/env bash
# Installs the Debian 12 packages agentflow needs to build, test and run.
# Only packages that are missing are installed; safe to run repeatedly.
# One list for every use, so the images build with what the tests exercise:
#   scripts/install-deps.sh                 build (make run; the Dockerfile's build stage)
#   scripts/install-deps.sh --test          build + what the test suite needs (make test, .ci/run)
#   scripts/install-deps.sh --runtime       only what the built binary needs to run
#                                           (the Dockerfile's run stage)
#   scripts/install-deps.sh --runtime-libs  only the shared libraries of --runtime
# Add --print to print the list, one package a line, and install nothing.
set -euo pipefail

build_pkgs=(
  build-essential cmake ninja-build pkg-config
  nlohmann-json3-dev libspdlog-dev libfmt-dev libcli11-dev
  libboost-dev libboost-system-dev
  libsqlite3-dev libpq-dev librdkafka-dev
  libssl-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  curl
)
# PostgreSQL 15 server: the tests start their own on a loopback port.
# docker-compose (1.29, Debian's): validates docker-compose.yml offline
# (tests/deploy); no container engine is needed for that.
# clang 14 with its runtime libraries (libclang-rt-14-dev: libFuzzer and the
# sanitizer runtimes, not pulled in with --no-install-recommends) and
# llvm-symbolizer (package llvm) for the fuzz targets and readable sanitizer
# stacks: `make test-sanitize` (scripts/sanitize.sh, scripts/fuzz.sh).
# chromium (Debian's) with a font for the web console's browser tests
# (tests/ui, driven by playwright-core from npm: no browser download).
test_pkgs=(sqlite3 postgresql-15 postgresql-client-15 docker-compose clang libclang-rt-14-dev llvm chromium fonts-dejavu-core)
# Every library `ldd agentflow` reports, by Debian package. The first two
# lines are what the binary links directly (libssl3: libcrypto, for API key
# hashing, src/auth); the rest is what those pull in (listed so
# scripts/check-runtime-deps.sh can compare the whole closure with ldd: it
# fails when a library is missing here or listed here but not used).
runtime_libs=(
  libc6 libgcc-s1 libstdc++6 libfmt9 libspdlog1.10 libsqlite3-0 libpq5 librdkafka1 librdkafka++1
  libssl3
  zlib1g liblz4-1 libzstd1 libsasl2-2
  libgssapi-krb5-2 libkrb5-3 libk5crypto3 libkrb5support0 libcom-err2 libkeyutils1
  libldap-2.5-0 libgnutls30 libp11-kit0 libidn2-0 libunistring2 libtasn1-6 libnettle8 libhogweed6 libgmp10 libffi8
)
# Not libraries: curl for the health checks (GET /healthz) in
# docker-compose.yml; CA certificates for TLS to brokers and agents.
runtime_tools=(curl ca-certificates)

mode=build
print=0
for arg in "$@"; do
  case "$arg" in
    --test) mode=test ;;
    --runtime) mode=runtime ;;
    --runtime-libs) mode=runtime-libs ;;
    --print) print=1 ;;
    *) echo "usage: $0 [--test | --runtime | --runtime-libs] [--print]" >&2; exit 2 ;;
  esac
done
case "$mode" in
  build) pkgs=("${build_pkgs[@]}") ;;
  test) pkgs=("${build_pkgs[@]}" "${test_pkgs[@]}") ;;
  runtime) pkgs=("${runtime_libs[@]}" "${runtime_tools[@]}") ;;
  runtime-libs) pkgs=("${runtime_libs[@]}") ;;
esac
if [[ $print -eq 1 ]]; then
  printf '%s\n' "${pkgs[@]}"
  exit 0
fi

missing=()
for p in "${pkgs[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
# Node.js and npm run the console's tests. Machines of this kind come with
# Node.js 20 (and its npm) from NodeSource; only where node is missing do we
# install Debian's (which must not replace NodeSource's: they conflict).
if [[ $mode == test ]] && ! command -v node >/dev/null 2>&1; then
  missing+=(nodejs)
  command -v npm >/dev/null 2>&1 || missing+=(npm)
fi
if [[ ${#missing[@]} -eq 0 ]]; then
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
SUDO=""
if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
