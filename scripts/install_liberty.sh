#!/bin/sh
# Install the OSU 0.18 um standard-cell liberty (Debian package qflow-tech-osu018) where fames finds it:
# $PREFIX/osu018/osu018_stdcells.lib, PREFIX=/usr/local/share/fames (or ~/.cache/fames when not writable).
# Usage: scripts/install_liberty.sh [PREFIX]      (fames also honours FAMES_LIBERTY=/path/to/lib)
set -eu
LIB=osu018_stdcells.lib
if [ -f /usr/share/qflow/tech/osu018/$LIB ]; then
    echo "liberty already installed: /usr/share/qflow/tech/osu018/$LIB"; exit 0
fi
PREFIX=${1:-/usr/local/share/fames}
if ! mkdir -p "$PREFIX/osu018" 2>/dev/null || [ ! -w "$PREFIX/osu018" ]; then
    PREFIX="${HOME}/.cache/fames"; mkdir -p "$PREFIX/osu018"
fi
if [ -f "$PREFIX/osu018/$LIB" ]; then echo "liberty already installed: $PREFIX/osu018/$LIB"; exit 0; fi
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
DEB=$(ls /tmp/qflow-tech-osu018_*_all.deb 2>/dev/null | head -n1 || true)
if [ -z "$DEB" ]; then
    (cd "$TMP" && apt-get download qflow-tech-osu018) || {
        echo "error: cannot download qflow-tech-osu018 (apt-get download failed); install it with" \
             "'apt-get install qflow-tech-osu018' or set FAMES_LIBERTY" >&2; exit 1; }
    DEB=$(ls "$TMP"/qflow-tech-osu018_*.deb | head -n1)
fi
dpkg-deb -x "$DEB" "$TMP/root"
cp "$TMP/root/usr/share/qflow/tech/osu018/$LIB" "$PREFIX/osu018/$LIB.tmp"
mv "$PREFIX/osu018/$LIB.tmp" "$PREFIX/osu018/$LIB"
echo "installed $PREFIX/osu018/$LIB"
