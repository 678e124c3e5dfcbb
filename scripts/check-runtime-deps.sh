#!/usr/bin/env bash
# Keeps `scripts/install-deps.sh --runtime` honest: maps every shared library
# `ldd` reports for the built binary to the Debian package that ships it
# (`dpkg -S`) and fails if
#   - a library is not found at all (ldd: "not found"),
#   - a library's package is not in `install-deps.sh --runtime-libs`
#     (the run stage of the Dockerfile would lack it), or
#   - a package of `--runtime-libs` ships none of the libraries (stale entry).
# Sanitizer runtimes (ASan/UBSan/TSan/LSan builds) are not part of an image
# and are ignored.
#
# Usage: scripts/check-runtime-deps.sh [BINARY] [--packages "PKG PKG ..."]
#   BINARY defaults to build/agentflow; --packages replaces the list read from
#   install-deps.sh (the deploy tests use it to check that a short list fails).
set -euo pipefail

root="$(cd "$(dirname "$0")/.." && pwd)"
binary="$root/build/agentflow"
packages=""
while [[ $# -gt 0 ]]; do
  case "$1" in
    --packages) packages="$2"; shift 2 ;;
    -*) echo "usage: $0 [BINARY] [--packages \"PKG ...\"]" >&2; exit 2 ;;
    *) binary="$1"; shift ;;
  esac
done
if [[ ! -x "$binary" ]]; then
  echo "check-runtime-deps: FAIL: $binary is not an executable; build it first (ninja -C build agentflow)" >&2
  exit 1
fi
if [[ -z "$packages" ]]; then
  packages="$("$root/scripts/install-deps.sh" --runtime-libs --print | tr '\n' ' ')"
fi
declare -A listed=()
for p in $packages; do listed[$p]=1; done

ldd_out="$(ldd "$binary")"
if grep -q "not found" <<<"$ldd_out"; then
  echo "check-runtime-deps: FAIL: ldd cannot resolve libraries of $binary:" >&2
  grep "not found" <<<"$ldd_out" >&2
  exit 1
fi

# The package owning each library. Debian 12 merged /usr, so a path ldd
# prints under /lib may be registered under /usr/lib (or the other way round),
# and a symlink under its target: ask dpkg about every variant, in one call
# (dpkg -S takes ~0.3 s a call).
mapfile -t libs < <(awk '/=>/ {print $3; next} /^[[:space:]]*\// {print $1}' <<<"$ldd_out")
variants() {
  local path="$1" real
  real="$(readlink -f "$path")"
  printf '%s\n' "$path" "/usr$path" "${path#/usr}" "$real" "/usr$real" "${real#/usr}"
}
declare -A owner_of=()  # path -> package
while IFS= read -r line; do
  # "libssl3:amd64: /usr/lib/x86_64-linux-gnu/libssl.so.3" -> libssl3
  [[ "$line" == diversion* || "$line" != *": /"* ]] && continue
  path="/${line#*: /}"
  pkg="${line%%: /*}"
  pkg="${pkg%%,*}"
  owner_of[$path]="${pkg%%:*}"
done < <(for lib in "${libs[@]}"; do variants "$lib"; done | sort -u | xargs dpkg -S 2>/dev/null || true)

declare -A needed=()  # package -> libraries
fail=0
for lib in "${libs[@]}"; do
  [[ -z "$lib" ]] && continue
  case "$(basename "$lib")" in
    libasan.so* | libubsan.so* | libtsan.so* | liblsan.so*) continue ;;
  esac
  pkg=""
  while IFS= read -r v; do
    if [[ -n "${owner_of[$v]:-}" ]]; then
      pkg="${owner_of[$v]}"
      break
    fi
  done < <(variants "$lib")
  if [[ -z "$pkg" ]]; then
    echo "check-runtime-deps: $lib belongs to no Debian package (dpkg -S); an image could not install it" >&2
    fail=1
    continue
  fi
  needed[$pkg]="${needed[$pkg]:-}${needed[$pkg]:+ }$(basename "$lib")"
done

for pkg in $(printf '%s\n' "${!needed[@]}" | sort); do
  if [[ -z "${listed[$pkg]:-}" ]]; then
    echo "check-runtime-deps: $pkg (${needed[$pkg]}) is missing from scripts/install-deps.sh --runtime" >&2
    fail=1
  fi
done
for pkg in $(printf '%s\n' "${!listed[@]}" | sort); do
  if [[ -z "${needed[$pkg]:-}" ]]; then
    echo "check-runtime-deps: $pkg is listed in scripts/install-deps.sh --runtime but ships no library $(basename "$binary") loads" >&2
    fail=1
  fi
done
if [[ $fail -ne 0 ]]; then
  echo "check-runtime-deps: FAIL: make runtime_libs in scripts/install-deps.sh match \`ldd $binary\`" >&2
  exit 1
fi
echo "check-runtime-deps: OK: ${#needed[@]} packages provide the libraries of $binary: $(printf '%s\n' "${!needed[@]}" | sort | tr '\n' ' ')"
