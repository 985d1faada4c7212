#!/usr/bin/env bash
# Debian packages fames needs: the EDA flow (yosys, OpenSTA, iverilog), Fashion-MNIST, and the
# OSU 0.18 um standard-cell liberty (extracted from qflow-tech-osu018 without installing qflow's GUI).
set -euo pipefail
SUDO=""
[ "$(id -u)" = 0 ] || SUDO="sudo"
PACKAGES="yosys opensta iverilog dataset-fashion-mnist"
missing=""
for p in $PACKAGES; do dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"; done
if [ -n "$missing" ]; then
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing
fi
bash "$(dirname "$0")/install_liberty.sh"
