#!/usr/bin/env bash
# Termux-like constraints (issue 9): no hard links; a data directory where flock() fails.
#
# 1. The code never makes hard links (a static check and a test with os.link refused).
# 2. flock() failing with ENOLCK, three ways: an LD_PRELOAD shim (noflock.c), a sitecustomize that
#    replaces fcntl.flock (noflock_py/, also run inside the emulated roots), and, when /dev/fuse and
#    python3-fusepy are available, a real FUSE filesystem whose flock answers ENOLCK
#    (fuse_noflock.py). The file backend must refuse: exit 2, a message naming flock, no
#    traceback. lmdb (fcntl/mutex locking, no flock) must still serve on the same setup.
# Results (JSON lines) go to $AUTOBYTEUS_EDGE_DIR/results/termux.jsonl.
set -uo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
EDGE_DIR="${AUTOBYTEUS_EDGE_DIR:-/var/tmp/autobyteus-edge}"
RESULTS="$EDGE_DIR/results"
OUT="$RESULTS/termux.jsonl"
PY="${AUTOBYTEUS_EDGE_PYTHON:-$EDGE_DIR/native-venv/bin/python}"
[ -x "$PY" ] || PY=python3
mkdir -p "$RESULTS"
: > "$OUT"
FAILED=0

log() { printf '[termux %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
emit() { # emit NAME OK DETAIL
    python3 -c 'import json,sys; print(json.dumps({"check": sys.argv[1], "ok": sys.argv[2] == "1", "detail": sys.argv[3]}))' \
        "$1" "$2" "$3" | tee -a "$OUT"
    [ "$2" = 1 ] || FAILED=1
}

# expect_refusal NAME DATA_DIR [ENV...] -- [PREFIX...]: the file server must exit 2 with a flock
# message and no traceback.
expect_refusal() {
    local name="$1" data="$2" err rc
    shift 2
    err="$(mktemp)"
    (cd /tmp && env "$@" PERSISTENCE_PROVIDER=file AUTOBYTEUS_DATA_DIR="$data" \
        timeout 120 "$PY" -m web --port 0 2>"$err" >/dev/null)
    rc=$?
    local msg
    msg="$(grep -v '^$' "$err" | tail -n 3 | tr '\n' ' ')"
    if [ "$rc" = 2 ] && grep -q "flock" "$err" && ! grep -q Traceback "$err"; then
        emit "$name" 1 "exit 2: $msg"
    else
        emit "$name" 0 "exit $rc: $(tail -c 1500 "$err")"
    fi
    rm -f "$err"
}

# expect_tool_refusal NAME DATA_DIR [ENV...]: the store tool on the same directory, exit 2.
expect_tool_refusal() {
    local name="$1" data="$2" err rc
    shift 2
    err="$(mktemp)"
    (cd /tmp && env "$@" PERSISTENCE_PROVIDER=file AUTOBYTEUS_DATA_DIR="$data" \
        timeout 120 "$PY" -m tools stats 2>"$err" >/dev/null)
    rc=$?
    if [ "$rc" = 2 ] && ! grep -q Traceback "$err"; then
        emit "$name" 1 "exit 2: $(tail -n 2 "$err" | tr '\n' ' ')"
    else
        emit "$name" 0 "exit $rc: $(tail -c 1500 "$err")"
    fi
    rm -f "$err"
}

# lmdb_serves NAME DATA_DIR PREFIX: lmdb passes the smoke test under the same constraint.
lmdb_serves() {
    local name="$1" data="$2" prefix="$3" line
    line="$(cd /tmp && python3 "$HERE/measure.py" --python "$PY" --provider lmdb \
        --data-dir "$data" --load-seconds 0 --label "$name" --prefix "$prefix")"
    if printf '%s' "$line" | grep -q '"ok": true'; then
        emit "$name" 1 "lmdb smoke ok ($(printf '%s' "$line" | python3 -c 'import json,sys; print(json.load(sys.stdin)["smoke"]["checks"])') checks)"
    else
        emit "$name" 0 "$line"
    fi
}

# -- 1. no hard links ------------------------------------------------------------------------------
hits="$(cd "$REPO" && grep -rnE '\bos\.link\(|[^_a-z]link\(|hardlink_to|os\.linkat' \
    --include='*.py' engine domains web tools || true)"
if [ -z "$hits" ]; then emit "no-hard-links-static" 1 "no os.link/hardlink_to in engine, domains, web, tools"
else emit "no-hard-links-static" 0 "$hits"; fi
if (cd "$REPO" && python3 -m pytest -q -p no:cacheprovider tests/web/test_low_power_preset.py \
        -k "hard_link" >/tmp/termux-pytest.log 2>&1); then
    emit "no-hard-links-test" 1 "$(tail -n 1 /tmp/termux-pytest.log)"
else
    emit "no-hard-links-test" 0 "$(tail -n 20 /tmp/termux-pytest.log)"
fi

# -- 2a. LD_PRELOAD shim ---------------------------------------------------------------------------
if command -v cc >/dev/null 2>&1; then
    cc -shared -fPIC -O2 -o "$EDGE_DIR/noflock.so" "$HERE/noflock.c"
    d="$(mktemp -d)"
    expect_refusal "file-refuses-flock-ENOLCK (LD_PRELOAD)" "$d" LD_PRELOAD="$EDGE_DIR/noflock.so"
    # The tools on an existing file store (made here without the shim) refuse the same way.
    d="$(mktemp -d)"
    (cd /tmp && "$PY" -c 'import sys; from engine import open_store; open_store("file", data_dir=sys.argv[1]).close()' "$d")
    expect_tool_refusal "store-tool-refuses-flock-ENOLCK (LD_PRELOAD)" "$d" \
        LD_PRELOAD="$EDGE_DIR/noflock.so"
    lmdb_serves "lmdb-serves-without-flock (LD_PRELOAD)" "$(mktemp -d)" \
        "env LD_PRELOAD=$EDGE_DIR/noflock.so"
else
    emit "file-refuses-flock-ENOLCK (LD_PRELOAD)" 0 "no C compiler here"
fi

# -- 2b. Python-level: fcntl.flock raising ENOLCK, natively and inside the emulated roots -----------
expect_refusal "file-refuses-flock-ENOLCK (sitecustomize)" "$(mktemp -d)" \
    PYTHONPATH="$HERE/noflock_py"
for arch in arm64 armhf; do
    root="$EDGE_DIR/bookworm-$arch"
    [ -x "$root/opt/autobyteus/venv/bin/python" ] || continue
    mountpoint -q "$root/proc" || { mount -t proc proc "$root/proc"; UMOUNT_PROC="$root/proc"; }
    err="$(mktemp)"
    chroot "$root" /usr/bin/env -i PATH=/opt/autobyteus/venv/bin:/usr/bin:/bin LANG=C.UTF-8 \
        PYTHONPATH=/opt/autobyteus/src/scripts/edge/noflock_py PERSISTENCE_PROVIDER=file \
        AUTOBYTEUS_DATA_DIR=/var/tmp/edge-noflock sh -c 'cd /var/tmp && timeout 300 python -m web --port 0' \
        >/dev/null 2>"$err"
    rc=$?
    if [ "$rc" = 2 ] && grep -q flock "$err" && ! grep -q Traceback "$err"; then
        emit "$arch: file-refuses-flock-ENOLCK (sitecustomize, emulated)" 1 \
            "exit 2: $(tail -n 1 "$err")"
    else
        emit "$arch: file-refuses-flock-ENOLCK (sitecustomize, emulated)" 0 \
            "exit $rc: $(tail -c 1500 "$err")"
    fi
    rm -f "$err"
    [ -n "${UMOUNT_PROC:-}" ] && umount "$UMOUNT_PROC" && UMOUNT_PROC=""
done

# -- 2c. a real filesystem where flock fails: FUSE ----------------------------------------------------
if [ -e /dev/fuse ]; then
    if ! /usr/bin/python3 -c 'import fusepy' 2>/dev/null; then
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-fusepy fuse >/dev/null 2>&1 || true
    fi
    if /usr/bin/python3 -c 'import fusepy' 2>/dev/null; then
        backing="$(mktemp -d)"
        mnt="$(mktemp -d)"
        /usr/bin/python3 "$HERE/fuse_noflock.py" "$backing" "$mnt" &
        fuse_pid=$!
        for _ in $(seq 50); do mountpoint -q "$mnt" && break; sleep 0.1; done
        if mountpoint -q "$mnt"; then
            probe="$(/usr/bin/python3 -c '
import fcntl, os, sys
fd = os.open(sys.argv[1] + "/probe", os.O_CREAT | os.O_RDWR)
try:
    fcntl.flock(fd, fcntl.LOCK_EX)
    print("flock works")
except OSError as exc:
    print("flock fails:", exc)
' "$mnt" 2>&1)"
            emit "fuse-mount-flock-probe" 1 "$(findmnt -n -o FSTYPE "$mnt"): $probe"
            if printf '%s' "$probe" | grep -q "flock fails"; then
                expect_refusal "file-refuses-flock-ENOLCK (real FUSE mount)" "$mnt/data"
            fi
            fusermount -u "$mnt" 2>/dev/null || umount "$mnt" 2>/dev/null || true
        else
            emit "fuse-mount" 0 "the FUSE filesystem did not mount"
        fi
        kill "$fuse_pid" 2>/dev/null || true
        wait "$fuse_pid" 2>/dev/null || true
    else
        emit "fuse-mount" 0 "python3-fusepy is not installable here"
    fi
else
    emit "fuse-mount" 0 "no /dev/fuse"
fi

log "results: $OUT"
exit "$FAILED"
