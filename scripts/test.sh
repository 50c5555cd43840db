#!/usr/bin/env bash
# Installs everything the tests need (apt and pip) on a fresh Debian/Ubuntu machine, then runs
# them: the eBPF object rebuilt from source and checked against the committed one, ruff, mypy,
# the import contracts, and pytest (real kernel tests included; run as root).
#   MEMWATCH_REQUIRE_BPF=1   an eBPF test that cannot run fails instead of skipping (CI sets it)
set -euo pipefail
cd "$(dirname "$0")/.."

as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }

# htop, sqlite3, curl and iproute2 (ip): tests/test_readme.py runs the commands the docs show with them
APT_PACKAGES=(clang llvm bpftool libbpf1 libbpf-dev gcc libc6-dev make prometheus util-linux htop btop sqlite3 curl
              iproute2)
missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ! python3 -m venv --help >/dev/null 2>&1; then missing+=(python3-venv); fi
if [ ${#missing[@]} -gt 0 ]; then
  echo "== apt: installing ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

echo "== python: .venv with memwatch[test]"
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'

echo "== bpf: rebuild from source, compare with the committed object"
make -s -C bpf clean
make -s -C bpf check

echo "== lint and types"
.venv/bin/ruff check src tests bench
.venv/bin/mypy
.venv/bin/lint-imports

echo "== tests"
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
