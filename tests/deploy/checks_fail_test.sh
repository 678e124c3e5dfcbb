#!/usr/bin/env bash
# Proves the deployment checks can fail: runs each on a deliberately broken
# copy of its input and expects a non-zero exit naming the problem.
# Usage: tests/deploy/checks_fail_test.sh compose|env|runtime [BINARY]
set -euo pipefail

root="$(cd "$(dirname "$0")/../.." && pwd)"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT

# expect_failure WHAT PATTERN COMMAND...: COMMAND must exit non-zero and
# print PATTERN (a fixed string) on stdout or stderr.
failures=0
expect_failure() {
  local what="$1" pattern="$2"
  shift 2
  if "$@" >"$work/out" 2>&1; then
    echo "FAIL: $what: the check passed"
    cat "$work/out"
    failures=$((failures + 1))
  elif ! grep -qF -- "$pattern" "$work/out"; then
    echo "FAIL: $what: the check failed without naming '$pattern':"
    cat "$work/out"
    failures=$((failures + 1))
  else
    echo "ok: $what: $(grep -F -- "$pattern" "$work/out" | head -1)"
  fi
}

# copy_deploy DIR: the files check-compose.sh reads.
copy_deploy() {
  mkdir -p "$1"
  cp "$root/docker-compose.yml" "$root/Dockerfile" "$root/Dockerfile.consumer" "$1/"
}

case "${1:-}" in
  compose)
    copy_deploy "$work/yaml"
    printf '  broken: [\n' >>"$work/yaml/docker-compose.yml"
    expect_failure "invalid YAML" "config -q rejects" "$root/scripts/check-compose.sh" --root "$work/yaml"

    copy_deploy "$work/health"
    # The api's health check removed (the block after its `healthcheck:` line).
    awk '/^  api:/ {in_api=1} /^  [a-z-]+:$/ && !/^  api:/ {in_api=0}
         in_api && /^    healthcheck:/ {skip=1; next}
         skip && /^      / {next} {skip=0; print}' "$root/docker-compose.yml" >"$work/health/docker-compose.yml"
    expect_failure "service without health check" "api: no health check" \
      "$root/scripts/check-compose.sh" --root "$work/health"

    copy_deploy "$work/env"
    sed -i 's|KAFKA_BROKERS: kafka:29092|KAFKA_BROKERS: localhost:9092|' "$work/env/docker-compose.yml"
    expect_failure "environment other than the seed's" "environment differs from the seed's in ['KAFKA_BROKERS']" \
      "$root/scripts/check-compose.sh" --root "$work/env"

    copy_deploy "$work/topic"
    sed -i '/^ *agentflow\.agent\.replies \\$/d' "$work/topic/docker-compose.yml"
    expect_failure "topic not created" "does not create agentflow.agent.replies" \
      "$root/scripts/check-compose.sh" --root "$work/topic"

    copy_deploy "$work/docker"
    sed -i 's|^FROM debian:12-slim|FROM debian:12|' "$work/docker/Dockerfile.consumer"
    expect_failure "Dockerfile.consumer drifted" "differs from Dockerfile" \
      "$root/scripts/check-compose.sh" --root "$work/docker"
    ;;
  env)
    # Each variable the check finds, removed from a copy of .env.example, and
    # one from a copy of docs/operations.md.
    mapfile -t vars < <("$root/scripts/check-env-docs.sh" | sed -n 's/.*operations.md: //p' | tr ' ' '\n' | grep .)
    if [[ ${#vars[@]} -lt 5 ]]; then
      echo "FAIL: check-env-docs.sh found only ${#vars[@]} variables: ${vars[*]}"
      exit 1
    fi
    for v in "${vars[@]}"; do
      grep -vE "^#?[[:space:]]*${v}=" "$root/.env.example" >"$work/env.$v"
      expect_failure ".env.example without $v" "$v (read in" \
        "$root/scripts/check-env-docs.sh" --env-file "$work/env.$v"
    done
    # A new variable in the code (the call split over two lines) is reported;
    # one read only by a test is not.
    mkdir -p "$work/code/src/cli" "$work/code/tools"
    printf 'cmd->add_option("--new", v)->envname(\n    "AGENTFLOW_NEW_SETTING");\n' >"$work/code/src/cli/new.cc"
    printf 'auto* d = std::getenv("AGENTFLOW_TEST_ONLY");\n' >"$work/code/src/cli/new_test.cc"
    expect_failure "a new variable in the code" "AGENTFLOW_NEW_SETTING (read in src/cli/new.cc) is missing" \
      "$root/scripts/check-env-docs.sh" --root "$work/code" --env-file "$root/.env.example" --doc "$root/docs/operations.md"
    if grep -q AGENTFLOW_TEST_ONLY "$work/out"; then
      echo "FAIL: a variable read only by a test was reported"
      failures=$((failures + 1))
    fi
    sed 's/`KAFKA_AGENT_REPLY_TOPIC`/KAFKA AGENT REPLY TOPIC/g' "$root/docs/operations.md" >"$work/operations.md"
    expect_failure "operations.md without KAFKA_AGENT_REPLY_TOPIC" "missing from: operations.md" \
      "$root/scripts/check-env-docs.sh" --doc "$work/operations.md"
    ;;
  runtime)
    binary="${2:?usage: $0 runtime BINARY}"
    all="$("$root/scripts/install-deps.sh" --runtime-libs --print | tr '\n' ' ')"
    expect_failure "runtime list without libpq5" "libpq5 (libpq.so.5) is missing" \
      "$root/scripts/check-runtime-deps.sh" "$binary" --packages "${all/libpq5/}"
    expect_failure "runtime list with a package the binary does not load" "libxml2 is listed" \
      "$root/scripts/check-runtime-deps.sh" "$binary" --packages "$all libxml2"
    ;;
  *)
    echo "usage: $0 compose|env|runtime [BINARY]" >&2
    exit 2
    ;;
esac
if [[ $failures -ne 0 ]]; then
  echo "$failures check(s) did not fail when they should"
  exit 1
fi
echo "every broken input was rejected"
