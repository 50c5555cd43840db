#!/usr/bin/env bash
# Installs memwatch into .venv (with the system's libbpf) and opens the dashboard as root.
# Arguments go to memwatch, e.g. ./scripts/run.sh --once --json
set -euo pipefail
cd "$(dirname "$0")/.."
as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
need=()
dpkg-query -W -f='${Status}' libbpf1 2>/dev/null | grep -q "install ok installed" || need+=(libbpf1)
python3 -m venv --help >/dev/null 2>&1 || need+=(python3-venv)
if [ ${#need[@]} -gt 0 ]; then
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/python -m pip install -q --disable-pip-version-check .
exec env PATH="$PWD/.venv/bin:$PATH" bash -c 'if [ "$(id -u)" -eq 0 ]; then exec memwatch "$@"; else exec sudo "$(command -v memwatch)" "$@"; fi' memwatch "$@"
