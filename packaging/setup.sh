#!/usr/bin/env bash
# Idempotent machine + venv setup for TwinPlan on Debian 12 (run as root or with sudo).
# A second run only checks and returns in seconds.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  python3-dolfinx-real python3-venv python3-dev
  xvfb xauth libgl1 libegl1 libglu1-mesa libxrender1 libxi6 libdbus-1-3 libfontconfig1
  libxkbcommon0 libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1
  libxcb-shape0 libxcb-xinerama0 libxcb-randr0 libxcb-render-util0 libxcb-image0 libxcb-xkb1
  libusb-1.0-0 invesalius-examples orthanc poppler-utils
)

missing=()
for p in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup: installing system packages: ${missing[*]}"
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if [ ! -x .venv/bin/python ]; then
  echo "setup: creating .venv (system site packages, for Debian's dolfinx)"
  /usr/bin/python3 -m venv --system-site-packages .venv
fi

stamp=.venv/.twinplan-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "setup: installing TwinPlan and its Python dependencies into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q "numpy<2" -e ".[dev]"
  touch "$stamp"
fi
