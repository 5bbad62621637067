#!/usr/bin/env bash
# Install the server as a systemd service (run as root, from the repository):
#
#   sudo deploy/install.sh            # user autobyteus, /opt/autobyteus/venv, /var/lib/autobyteus
#
# It creates the system user, a virtual environment with the package, the settings file
# /etc/autobyteus/env (mode 0640, for AUTOBYTEUS_API_TOKEN and the rest), and the unit
# autobyteus-persistence.service, then enables and starts it. Options:
#   --user NAME --venv DIR --data-dir DIR --env-file FILE
#   --root DIR     write every file under DIR instead of / (packaging, tests)
#   --no-user      do not create the user      --no-venv   use the --venv that exists
#   --no-start     do not run systemctl
set -euo pipefail

SRC=$(cd "$(dirname "$0")/.." && pwd)
USER_NAME=autobyteus
VENV=/opt/autobyteus/venv
DATA_DIR=/var/lib/autobyteus
ENV_FILE=/etc/autobyteus/env
ROOT=
MAKE_USER=1
MAKE_VENV=1
START=1
UNIT=autobyteus-persistence.service

while [ $# -gt 0 ]; do
  case "$1" in
    --user) USER_NAME=$2; shift 2 ;;
    --venv) VENV=$2; shift 2 ;;
    --data-dir) DATA_DIR=$2; shift 2 ;;
    --env-file) ENV_FILE=$2; shift 2 ;;
    --root) ROOT=${2%/}; shift 2 ;;
    --no-user) MAKE_USER=0; shift ;;
    --no-venv) MAKE_VENV=0; shift ;;
    --no-start) START=0; shift ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) echo "install.sh: unknown option $1" >&2; exit 2 ;;
  esac
done
case "$DATA_DIR" in
  /var/lib/*) ;;
  *) echo "install.sh: --data-dir must be under /var/lib (the unit's StateDirectory)" >&2
     exit 2 ;;
esac
STATE_NAME=${DATA_DIR#/var/lib/}

if [ "$MAKE_USER" = 1 ] && ! id "$USER_NAME" >/dev/null 2>&1; then
  useradd --system --home-dir "$DATA_DIR" --no-create-home --shell /usr/sbin/nologin \
    "$USER_NAME"
fi
if [ "$MAKE_VENV" = 1 ]; then
  python3 -m venv "$ROOT$VENV"
  "$ROOT$VENV/bin/pip" install -q --disable-pip-version-check "$SRC"
fi

install -d -m 0755 "$ROOT/etc/systemd/system" "$ROOT$(dirname "$ENV_FILE")"
if [ ! -e "$ROOT$ENV_FILE" ]; then
  install -m 0640 /dev/null "$ROOT$ENV_FILE"
  cat > "$ROOT$ENV_FILE" <<'SETTINGS'
# Settings of the autobyteus persistence server (README, "Configuration"), one per line:
# AUTOBYTEUS_API_TOKEN=...
# AUTOBYTEUS_HOST=127.0.0.1
# AUTOBYTEUS_PORT=8000
# AUTOBYTEUS_LOG_FORMAT=json
SETTINGS
  if [ "$MAKE_USER" = 1 ]; then chgrp "$USER_NAME" "$ROOT$ENV_FILE"; fi
fi
sed -e "s|@USER@|$USER_NAME|g" -e "s|@VENV@|$VENV|g" -e "s|@DATA_DIR@|$DATA_DIR|g" \
    -e "s|@ENV_FILE@|$ENV_FILE|g" -e "s|^StateDirectory=.*|StateDirectory=$STATE_NAME|" \
    "$SRC/deploy/systemd/$UNIT" > "$ROOT/etc/systemd/system/$UNIT"
chmod 0644 "$ROOT/etc/systemd/system/$UNIT"

if [ "$START" = 1 ]; then
  systemctl daemon-reload
  systemctl enable --now "$UNIT"
  echo "started: systemctl status $UNIT; journalctl -u $UNIT"
else
  echo "installed $ROOT/etc/systemd/system/$UNIT"
fi
