#!/usr/bin/env bash
# Validates the deployment files offline (no container engine needed):
#  1. `docker-compose config -q` (Debian's docker-compose 1.29) accepts
#     docker-compose.yml with no profile and with every profile;
#  2. the rules the issue and the seed set, on the resolved file:
#     - the services and their profiles: kafka, postgres, migrate,
#       create-topics, agent-registry, demo-agents always; api (api),
#       execution-consumer (consumer, built from Dockerfile.consumer),
#       bridge (bridge);
#     - every long-running service has a health check and
#       `restart: unless-stopped`; the one-shots (migrate, create-topics)
#       are what the agentflow services wait for
#       (condition: service_completed_successfully);
#     - the agentflow services get exactly the seed's environment and bind
#       --host 0.0.0.0;
#     - create-topics creates the topics the code uses by default and the
#       request topic of every agent the bridge serves;
#  3. Dockerfile.consumer is Dockerfile from the first FROM on, except its CMD,
#     and both install packages with scripts/install-deps.sh.
#
# Usage: scripts/check-compose.sh [--root DIR]
#   DIR holds docker-compose.yml, Dockerfile and Dockerfile.consumer
#   (default: the repository; tests/deploy points it at broken copies).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
if [[ "${1:-}" == "--root" && -n "${2:-}" ]]; then
  root="$(cd "$2" && pwd)"
elif [[ $# -gt 0 ]]; then
  echo "usage: $0 [--root DIR]" >&2
  exit 2
fi
file="$root/docker-compose.yml"
if ! command -v docker-compose >/dev/null 2>&1; then
  echo "check-compose: FAIL: docker-compose is not installed. Hint: scripts/install-deps.sh --test" >&2
  exit 1
fi
# docker-compose's own interpreter has PyYAML (a dependency of the package).
python="$(sed -n '1s/^#! *//p' "$(command -v docker-compose)" | awk '{print $1}')"
[[ -x "$python" ]] || python=/usr/bin/python3

# Variables from the caller's environment or a local .env must not change
# what is checked: use the file's own defaults.
unset API_PORT REGISTRY_PORT POSTGRES_PORT KAFKA_PORT TOPIC_PARTITIONS
workdir="$(mktemp -d)"
trap 'rm -rf "$workdir"' EXIT
: >"$workdir/empty.env"
project=(--project-directory "$(dirname "$file")" --env-file "$workdir/empty.env" -f "$file")

fail=0
for profiles in "" "--profile api" "--profile consumer" "--profile bridge" \
                "--profile api --profile consumer --profile bridge"; do
  # shellcheck disable=SC2086
  if ! docker-compose "${project[@]}" $profiles config -q 2>"$workdir/err"; then
    echo "check-compose: docker-compose ${profiles:+$profiles }config -q rejects $file:" >&2
    cat "$workdir/err" >&2
    fail=1
  fi
done
if [[ $fail -ne 0 ]]; then
  echo "check-compose: FAIL" >&2
  exit 1
fi
docker-compose "${project[@]}" --profile api --profile consumer --profile bridge config >"$workdir/resolved.yml"

if ! "$python" - "$workdir/resolved.yml" "$root" <<'PY'
import re
import sys

import yaml

resolved, root = sys.argv[1], sys.argv[2]
with open(resolved) as f:
    services = yaml.safe_load(f)["services"]
problems = []

def problem(msg):
    problems.append(msg)

# The seed's environment (../shared/seed/INTEGRATION_SUMMARY.md).
SEED_ENV = {
    "KAFKA_BROKERS": "kafka:29092",
    "DATABASE_URL": "postgresql://workflow_user:workflow_pass@postgres:5432/workflow_db",
    "AGENT_REGISTRY_URL": "http://agent-registry:8080",
    "KAFKA_GROUP_ID": "execution-consumer-group",
    "KAFKA_EXECUTION_TOPIC": "workflow.execution.requests",
    "KAFKA_CANCELLATION_TOPIC": "workflow.cancellation.requests",
    "LOG_LEVEL": "INFO",
    "LOG_FORMAT": "json",
}
EXPECTED = {  # service -> profile (None: always on)
    "kafka": None, "postgres": None, "migrate": None, "create-topics": None,
    "agent-registry": None, "demo-agents": None,
    "api": "api", "execution-consumer": "consumer", "bridge": "bridge",
}
ONE_SHOT = {"migrate", "create-topics"}
AGENTFLOW = {"migrate", "agent-registry", "demo-agents", "api", "execution-consumer", "bridge"}
SEED_ENV_SERVICES = AGENTFLOW
# Topics the code uses by default (src/queue/queue.h, src/agent/kafka/agent_messages.h)
# plus the seed's dead-letter topic.
CORE_TOPICS = {"workflow.execution.requests", "workflow.cancellation.requests",
               "workflow.execution.requests.dlq", "agentflow.agent.replies"}

for name, profile in EXPECTED.items():
    svc = services.get(name)
    if svc is None:
        problem(f"service {name} is missing")
        continue
    got = svc.get("profiles") or []
    want = [profile] if profile else []
    if sorted(got) != want:
        problem(f"service {name}: profiles {got}, expected {want}")
for name in services:
    if name not in EXPECTED:
        problem(f"service {name} is not expected; add it to scripts/check-compose.sh if it belongs")

def cmd(svc):
    c = svc.get("command") or []
    return c.split() if isinstance(c, str) else [str(x) for x in c]

for name, svc in services.items():
    if name not in EXPECTED:
        continue
    if name in ONE_SHOT:
        if svc.get("restart", "no") not in ("no", '"no"'):
            problem(f"{name}: a one-shot service must not restart (restart: \"no\")")
    else:
        if svc.get("restart") != "unless-stopped":
            problem(f"{name}: restart is {svc.get('restart')!r}, expected unless-stopped")
        hc = svc.get("healthcheck") or {}
        if not hc.get("test") or hc.get("disable"):
            problem(f"{name}: no health check")
    if name in AGENTFLOW:
        image = svc.get("image", "")
        if not image.startswith("agentflow") or "build" not in svc:
            problem(f"{name}: must be built from this repository (image agentflow*, build:)")
        c = cmd(svc)
        if name not in ONE_SHOT and ("--host" not in c or c[c.index("--host") + 1] != "0.0.0.0"):
            problem(f"{name}: must bind --host 0.0.0.0 (command {c})")
        if name in SEED_ENV_SERVICES and (svc.get("environment") or {}) != SEED_ENV:
            env = svc.get("environment") or {}
            diff = sorted(k for k in set(env) | set(SEED_ENV) if env.get(k) != SEED_ENV.get(k))
            problem(f"{name}: environment differs from the seed's in {diff}")
        if name not in ONE_SHOT and name not in ("agent-registry", "demo-agents"):
            deps = svc.get("depends_on") or {}
            for one_shot in ONE_SHOT:
                cond = (deps.get(one_shot) or {}).get("condition") if isinstance(deps, dict) else None
                if cond != "service_completed_successfully":
                    problem(f"{name}: must depend on {one_shot} with condition service_completed_successfully")

reg = services.get("agent-registry", {})
for one_shot in ONE_SHOT:
    if ((reg.get("depends_on") or {}).get(one_shot) or {}).get("condition") != "service_completed_successfully":
        problem(f"agent-registry: must depend on {one_shot} with condition service_completed_successfully")

consumer = services.get("execution-consumer", {})
if (consumer.get("build") or {}).get("dockerfile") != "Dockerfile.consumer":
    problem("execution-consumer: must be built from Dockerfile.consumer (the seed's image)")
if cmd(consumer)[:1] != ["consumer"]:
    problem(f"execution-consumer: command must run `consumer`, is {cmd(consumer)}")
if cmd(services.get("migrate", {}))[:1] != ["migrate"]:
    problem("migrate: command must be `migrate`")

# Topics: what create-topics creates vs what the code and the bridge use.
script = " ".join(cmd(services.get("create-topics", {})))
if "--if-not-exists" not in script:
    problem("create-topics: must create with --if-not-exists (it runs on every start)")
created = set(re.findall(r"(?<![\w.-])((?:workflow|agentflow|agent)\.[\w.-]+)", script))
bridge_cmd = cmd(services.get("bridge", {}))
bridge_topics = {}
for i, arg in enumerate(bridge_cmd):
    if arg == "--agent" and i + 1 < len(bridge_cmd):
        agent = bridge_cmd[i + 1].split("=", 1)[0]
        bridge_topics[agent] = f"agent.{agent}.requests"
for i, arg in enumerate(bridge_cmd):
    if arg == "--topic" and i + 1 < len(bridge_cmd):
        agent, _, topic = bridge_cmd[i + 1].partition("=")
        bridge_topics[agent] = topic
if not bridge_topics:
    problem("bridge: serves no --agent NAME=URL")
for topic in sorted(CORE_TOPICS | set(bridge_topics.values())):
    if topic not in created:
        problem(f"create-topics: does not create {topic}")

for p in problems:
    print(f"check-compose: {p}", file=sys.stderr)
sys.exit(1 if problems else 0)
PY
then
  fail=1
fi

# Dockerfile.consumer = Dockerfile from the first FROM on, but the CMD.
body() { sed -n '/^FROM /,$p' "$1" | grep -v '^CMD '; }
for f in Dockerfile Dockerfile.consumer; do
  if [[ ! -f "$root/$f" ]]; then
    echo "check-compose: $f is missing" >&2
    fail=1
  elif ! grep -q 'install-deps.sh' "$root/$f" || ! grep -q 'install-deps.sh --runtime' "$root/$f"; then
    echo "check-compose: $f must install packages with scripts/install-deps.sh (build) and --runtime (run stage)" >&2
    fail=1
  fi
done
if [[ -f "$root/Dockerfile" && -f "$root/Dockerfile.consumer" ]]; then
  if ! diff <(body "$root/Dockerfile") <(body "$root/Dockerfile.consumer") >"$workdir/diff"; then
    echo "check-compose: Dockerfile.consumer differs from Dockerfile other than in its CMD:" >&2
    cat "$workdir/diff" >&2
    fail=1
  fi
  if ! grep -qE '^CMD \["consumer"' "$root/Dockerfile.consumer"; then
    echo "check-compose: Dockerfile.consumer's CMD must run consumer" >&2
    fail=1
  fi
fi

if [[ $fail -ne 0 ]]; then
  echo "check-compose: FAIL" >&2
  exit 1
fi
echo "check-compose: OK: $(basename "$file") valid with every profile; services, health checks, restart policies, seed environment, topics and Dockerfiles as required"
