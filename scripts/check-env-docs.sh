#!/usr/bin/env bash
# Fails, naming them, if the code reads an environment variable that
# .env.example or docs/operations.md does not document.
#
# "Reads" means a string literal passed to getenv(...) (std::getenv,
# secure_getenv), EnvOr(...) or CLI11's ->envname(...) in src/ and tools/;
# test and benchmark sources (*_test.cc, *_pgtest.cc, *_kafkatest.cc,
# *_benchmark.cc) are left out: their variables are not for operators.
# "Documented" means a line `NAME=...` or `# NAME=...` in the env file, and
# `NAME` in backquotes in the doc.
#
# Usage: scripts/check-env-docs.sh [--root DIR] [--env-file FILE] [--doc FILE]
#   defaults: the repository, DIR/.env.example, DIR/docs/operations.md
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
env_file=""
doc=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --root) root="$2"; shift 2 ;;
    --env-file) env_file="$2"; shift 2 ;;
    --doc) doc="$2"; shift 2 ;;
    *) echo "usage: $0 [--root DIR] [--env-file FILE] [--doc FILE]" >&2; exit 2 ;;
  esac
done
env_file="${env_file:-$root/.env.example}"
doc="${doc:-$root/docs/operations.md}"

for f in "$env_file" "$doc"; do
  if [[ ! -f "$f" ]]; then
    echo "check-env-docs: FAIL: $f does not exist" >&2
    exit 1
  fi
done

# Source files, tests left out. A call may be split over lines
# (`->envname(\n "X")`), so perl reads each file whole (-0777).
mapfile -t sources < <(find "$root/src" "$root/tools" -type f \
  \( -name '*.cc' -o -name '*.h' -o -name '*.cpp' -o -name '*.hpp' \) \
  ! -name '*test.cc' ! -name '*_benchmark.cc' | sort)
if [[ ${#sources[@]} -eq 0 ]]; then
  echo "check-env-docs: FAIL: no sources under $root/src and $root/tools" >&2
  exit 1
fi

mapfile -t vars < <(
  perl -0777 -ne 'print "$1\n" while /(?:getenv|EnvOr|envname)\s*\(\s*"([A-Za-z_][A-Za-z0-9_]*)"/g' "${sources[@]}" |
    sort -u)
if [[ ${#vars[@]} -eq 0 ]]; then
  # The patterns above no longer match how the code reads its settings.
  echo "check-env-docs: FAIL: found no environment variables in the code; fix this script" >&2
  exit 1
fi

missing=0
for v in "${vars[@]}"; do
  where=()
  grep -qE "^#?[[:space:]]*${v}=" "$env_file" || where+=("$(basename "$env_file")")
  grep -qF "\`${v}\`" "$doc" || where+=("$(basename "$doc") (as \`${v}\`)")
  if [[ ${#where[@]} -gt 0 ]]; then
    missing=1
    readers=$(grep -lF "\"${v}\"" "${sources[@]}" | sed "s|^$root/||" | tr '\n' ' ' || true)
    readers="${readers% }"
    echo "check-env-docs: $v (read in ${readers:-src/}) is missing from: ${where[*]}" >&2
  fi
done
if [[ $missing -ne 0 ]]; then
  echo "check-env-docs: FAIL: document every variable above with its default in $env_file and in the configuration reference of $doc" >&2
  exit 1
fi
echo "check-env-docs: OK: ${#vars[@]} variables documented in $(basename "$env_file") and $(basename "$doc"): ${vars[*]}"
