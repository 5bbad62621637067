#!/bin/sh
# Install the server on Termux: a virtual environment, the start script, a termux-services
# service and a Termux:Boot entry. Run from the repository:  sh deploy/termux/install.sh
# Options (environment): AUTOBYTEUS_HOME (default ~/.local/share/autobyteus), SKIP_PIP=1 (files
# only; the virtual environment must exist).
set -eu
: "${PREFIX:=/data/data/com.termux/files/usr}"
: "${AUTOBYTEUS_HOME:=$HOME/.local/share/autobyteus}"
SRC=$(cd "$(dirname "$0")/../.." && pwd)
VENV="$AUTOBYTEUS_HOME/venv"
if [ "${SKIP_PIP:-0}" != 1 ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "$SRC"
fi
mkdir -p "$AUTOBYTEUS_HOME/data" "$HOME/.config/autobyteus" "$HOME/bin"
START="$HOME/bin/autobyteus-start"
# The start script, with this installation's home as its default.
sed -e "1s|.*|#!$PREFIX/bin/sh|" \
    -e "s|^: \"\${AUTOBYTEUS_HOME:=.*|: \"\${AUTOBYTEUS_HOME:=$AUTOBYTEUS_HOME}\"|" \
    "$SRC/deploy/termux/autobyteus-start" > "$START"
chmod 0755 "$START"
if [ ! -e "$HOME/.config/autobyteus/env" ]; then
  printf '# AUTOBYTEUS_* settings, one per line (README, "Configuration")\n' \
    > "$HOME/.config/autobyteus/env"
  chmod 0600 "$HOME/.config/autobyteus/env"
fi
# termux-services (runit): sv up autobyteus / sv down autobyteus; logs via svlogd.
SERVICE="$PREFIX/var/service/autobyteus"
mkdir -p "$SERVICE/log"
printf '#!%s/bin/sh\nexec 2>&1\nexec %s\n' "$PREFIX" "$START" > "$SERVICE/run"
printf '#!%s/bin/sh\nmkdir -p "%s/log"\nexec svlogd -tt "%s/log"\n' \
  "$PREFIX" "$AUTOBYTEUS_HOME" "$AUTOBYTEUS_HOME" > "$SERVICE/log/run"
chmod 0755 "$SERVICE/run" "$SERVICE/log/run"
# Termux:Boot starts it when the phone boots.
mkdir -p "$HOME/.termux/boot"
printf '#!%s/bin/sh\nif command -v sv >/dev/null 2>&1; then sv up autobyteus; else exec %s; fi\n' \
  "$PREFIX" "$START" > "$HOME/.termux/boot/autobyteus"
chmod 0755 "$HOME/.termux/boot/autobyteus"
echo "installed: $START; start it with 'sv up autobyteus' (pkg install termux-services) or run it"
