#!/usr/bin/env bash
# Edge-device proof (issue 9): emulated ARM roots, little memory, Termux-like constraints.
#
# Not part of the default test run. Needs root, Debian's debootstrap, qemu-user-static and
# binfmt-support (installed with apt-get when missing). Roots are cached outside the checkout under
# $AUTOBYTEUS_EDGE_DIR (default /var/tmp/autobyteus-edge) and reused on the next run.
#
#   scripts/edge/run.sh root ARCH        build (or reuse) the bookworm root for arm64 | armhf
#   scripts/edge/run.sh install ARCH     copy this checkout in, make a venv, pip install . (no sql)
#   scripts/edge/run.sh emulated ARCH    root + install + smoke/measure on lmdb and file, default and
#                                        low-power, vs a bare Falcon app; LMDB map growth; the same
#                                        in a 512 MB memory cgroup
#   scripts/edge/run.sh memory           smoke on lmdb and file natively under a 512 MB address-space
#                                        limit and a 512 MB memory cgroup (memory-native), and
#                                        whether such a limit reaches an emulated process
#                                        (memory-emulated: qemu-user keeps RLIMIT_AS from it)
#   scripts/edge/run.sh termux           no hard links; flock failing -> exit 2, no traceback
#   scripts/edge/run.sh all              emulated arm64, emulated armhf, memory, termux
#
# Results (JSON lines) go to $AUTOBYTEUS_EDGE_DIR/results/; scripts/edge/report.py tabulates them.
# See docs/edge.md.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO="$(cd "$HERE/../.." && pwd)"
EDGE_DIR="${AUTOBYTEUS_EDGE_DIR:-/var/tmp/autobyteus-edge}"
SUITE="${AUTOBYTEUS_EDGE_SUITE:-bookworm}"
RESULTS="$EDGE_DIR/results"
# The limit of a 512 MB board, as an address-space limit (prlimit --as) for the native runs.
MEM_LIMIT_BYTES="${AUTOBYTEUS_EDGE_MEM_LIMIT:-$((512 * 1024 * 1024))}"
mkdir -p "$EDGE_DIR" "$RESULTS"

log() { printf '[edge %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

need_root() { [ "$(id -u)" = 0 ] || die "run as root (debootstrap, chroot, mounts)"; }

mirror() {
    # The Debian mirror from the host's apt sources (deb822 or one-line format).
    local m
    m="$(grep -hoE '^URIs: *http[^ ]+' /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | grep -v security | head -n1 | sed 's/^URIs: *//')" || true
    if [ -z "$m" ]; then
        m="$(grep -hoE '^deb +http[^ ]+' /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
            2>/dev/null | grep -v security | head -n1 | awk '{print $2}')" || true
    fi
    echo "${m:-http://deb.debian.org/debian}"
}

host_tools() {
    local missing=()
    command -v debootstrap >/dev/null || missing+=(debootstrap)
    [ -x /usr/bin/qemu-aarch64-static ] || missing+=(qemu-user-static)
    command -v update-binfmts >/dev/null || missing+=(binfmt-support)
    if [ "${#missing[@]}" -gt 0 ]; then
        log "installing ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
    fi
    if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    fi
    update-binfmts --enable qemu-aarch64 >/dev/null 2>&1 || true
    update-binfmts --enable qemu-arm >/dev/null 2>&1 || true
}

qemu_name() { case "$1" in arm64) echo aarch64 ;; armhf) echo arm ;; *) die "unknown arch $1" ;; esac; }

root_dir() { echo "$EDGE_DIR/$SUITE-$1"; }

build_root() {
    need_root
    local arch="$1" root include
    root="$(root_dir "$arch")"
    host_tools
    [ -e "/proc/sys/fs/binfmt_misc/qemu-$(qemu_name "$arch")" ] \
        || die "binfmt interpreter qemu-$(qemu_name "$arch") is not registered"
    if [ -f "$root/.edge-root-complete" ]; then
        log "reusing $root"
        return 0
    fi
    include="python3,python3-venv,python3-pip"
    # No lmdb wheel for armv7: pip builds it from source, as on a 32-bit board.
    [ "$arch" = armhf ] && include="$include,gcc,python3-dev,libffi-dev,patch"
    rm -rf "$root"
    log "debootstrap $arch $SUITE into $root (about ten minutes under emulation)"
    local t0=$SECONDS
    debootstrap --arch="$arch" --variant=minbase --include="$include" "$SUITE" "$root" "$(mirror)"
    touch "$root/.edge-root-complete"
    log "root $arch built in $((SECONDS - t0)) s"
}

# -- the checkout, copied (tracked and new files, nothing ignored: no build/, no .venv) -------------
stage_source() {
    local dest="$1"
    rm -rf "$dest"
    mkdir -p "$dest"
    (cd "$REPO" && git ls-files -z --cached --others --exclude-standard \
        | xargs -0 -I{} sh -c 'test -e "{}" && printf "%s\0" "{}"' \
        | tar --null -T - -cf -) | tar -xf - -C "$dest"
}

# -- inside a root ---------------------------------------------------------------------------------
MOUNTED=()
mount_root() {
    local root="$1"
    if ! mountpoint -q "$root/proc"; then mount -t proc proc "$root/proc"; MOUNTED+=("$root/proc"); fi
    if ! mountpoint -q "$root/dev"; then mount --bind /dev "$root/dev"; MOUNTED+=("$root/dev"); fi
}
unmount_all() {
    local i
    for ((i = ${#MOUNTED[@]} - 1; i >= 0; i--)); do
        umount "${MOUNTED[$i]}" 2>/dev/null || umount -l "${MOUNTED[$i]}" 2>/dev/null || true
    done
    MOUNTED=()
    if [ -d "$CGROUP" ]; then rmdir "$CGROUP" 2>/dev/null || true; fi
}
trap unmount_all EXIT

in_root() {
    local root="$1"
    shift
    chroot "$root" /usr/bin/env -i PATH=/opt/autobyteus/venv/bin:/usr/sbin:/usr/bin:/sbin:/bin \
        HOME=/root LANG=C.UTF-8 PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
        PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=180 "$@"
}

# Verifies that no SQL library is installed or imported (prints a JSON line).
NO_SQL_CHECK='
import importlib.util, json, sys, tempfile, os
absent = {m: importlib.util.find_spec(m) is None for m in ("sqlalchemy", "psycopg", "psycopg2")}
os.environ.update(AUTOBYTEUS_DATA_DIR=tempfile.mkdtemp())
from web.settings import Settings
from web.runtime import Runtime
for provider in ("lmdb", "file"):
    os.environ["PERSISTENCE_PROVIDER"] = provider
    Runtime.start(Settings.from_env()).stop()
imported = sorted(m for m in sys.modules if m.split(".")[0] in ("sqlalchemy", "psycopg"))
import platform, lmdb, falcon, waitress
print(json.dumps({"sql_absent": absent, "sql_imported": imported, "machine": platform.machine(),
                  "python": platform.python_version(), "pointer_bits": 64 if sys.maxsize > 2**32 else 32,
                  "lmdb": lmdb.__version__, "falcon": falcon.__version__,
                  "ok": all(absent.values()) and not imported}))
sys.exit(0 if all(absent.values()) and not imported else 1)
'

install_root() {
    local arch="$1" root t0
    root="$(root_dir "$arch")"
    build_root "$arch"
    mount_root "$root"
    # pip reaches the package registry with the host's CA bundle and resolver configuration.
    cp /etc/resolv.conf "$root/etc/resolv.conf"
    mkdir -p "$root/etc/ssl/certs"
    cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/ca-certificates.crt"
    stage_source "$root/opt/autobyteus/src"
    t0=$SECONDS
    [ -x "$root/opt/autobyteus/venv/bin/python" ] || in_root "$root" python3 -m venv /opt/autobyteus/venv
    in_root "$root" pip uninstall -q -y autobyteus-persistence >/dev/null 2>&1 || true
    log "$arch: pip install /opt/autobyteus/src (no extras) under emulation"
    in_root "$root" pip install -q /opt/autobyteus/src
    log "$arch: installed in $((SECONDS - t0)) s"
    in_root "$root" pip list --format=freeze > "$RESULTS/pip-freeze-$arch.txt"
    (cd /tmp && in_root "$root" python -c "$NO_SQL_CHECK") | tee "$RESULTS/no-sql-$arch.json"
}

native_install() {
    local venv="$EDGE_DIR/native-venv" src="$EDGE_DIR/native-src"
    stage_source "$src"
    [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
    "$venv/bin/pip" uninstall -q -y autobyteus-persistence >/dev/null 2>&1 || true
    "$venv/bin/pip" install -q "$src" 2>&1 | grep -v "is ignored" >&2 || true
    (cd /tmp && "$venv/bin/python" -c "$NO_SQL_CHECK") | tee "$RESULTS/no-sql-native.json"
}

# A cgroup v1 (or v2) memory group limited like a 512 MB board; echo its directory.
CGROUP=""
make_cgroup() {
    local base
    if [ -f /sys/fs/cgroup/memory/memory.limit_in_bytes ]; then
        base=/sys/fs/cgroup/memory
        CGROUP="$base/autobyteus-edge-$$"
        mkdir -p "$CGROUP"
        echo "$MEM_LIMIT_BYTES" > "$CGROUP/memory.limit_in_bytes"
        # no swap on top of the limit, when the kernel accounts swap
        echo "$MEM_LIMIT_BYTES" > "$CGROUP/memory.memsw.limit_in_bytes" 2>/dev/null || true
    elif [ -f /sys/fs/cgroup/cgroup.controllers ]; then
        CGROUP="/sys/fs/cgroup/autobyteus-edge-$$"
        mkdir -p "$CGROUP"
        echo "$MEM_LIMIT_BYTES" > "$CGROUP/memory.max"
        echo 0 > "$CGROUP/memory.swap.max" 2>/dev/null || true
    else
        return 1
    fi
}
reset_cgroup_peak() { echo 0 > "$CGROUP/memory.max_usage_in_bytes" 2>/dev/null || true; }

record() { # record RESULTFILE COMMAND...: run a measure, keep its JSON line, log a summary
    local file="$1" line rc=0
    shift
    line="$("$@")" || rc=$?
    [ -n "$line" ] || line="{\"ok\": false, \"error\": \"no output (exit $rc)\"}"
    printf '%s\n' "$line" >> "$file"
    printf '%s\n' "$line" | python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); print("[edge] %-34s ok=%s startup=%ss private=%skB rps(health/read/bare)=%s/%s/%s rel=%s" % (d.get("label"), d.get("ok"), d.get("startup_s"), (d.get("mem_after_load") or d.get("mem_after_startup") or {}).get("private_kb"), (d.get("load_health") or {}).get("rps"), (d.get("load_read") or {}).get("rps"), ((d.get("bare") or {}).get("load") or {}).get("rps"), d.get("relative_rps")))' >&2 || true
    return 0
}

emulated() {
    need_root
    local arch="$1" root out py=/opt/autobyteus/venv/bin/python m=/opt/autobyteus/src/scripts/edge/measure.py
    root="$(root_dir "$arch")"
    install_root "$arch"
    out="$RESULTS/emulated-$arch.jsonl"
    : > "$out"
    local load="${AUTOBYTEUS_EDGE_LOAD_SECONDS:-3}" grow="${AUTOBYTEUS_EDGE_GROW_MB:-40}"
    local rounds="${AUTOBYTEUS_EDGE_ROUNDS:-5}"
    # Default settings: lmdb (on armhf, the 32-bit 16 MiB map grows under 40 MB), file.
    local grow_default=0
    [ "$arch" = armhf ] && grow_default="$grow"
    record "$out" in_root "$root" python "$m" --label "$arch lmdb default" --provider lmdb \
        --cwd /var/tmp --callback stub --bare --load-seconds "$load" --rounds "$rounds" \
        --grow-mb "$grow_default"
    record "$out" in_root "$root" python "$m" --label "$arch file default" --provider file \
        --cwd /var/tmp --bare --load-seconds "$load" --rounds "$rounds"
    # The low-power preset: its 8 MiB map grows under 40 MB on either architecture.
    record "$out" in_root "$root" python "$m" --label "$arch lmdb low-power" --provider lmdb \
        --preset low-power --cwd /var/tmp --callback stub --bare --load-seconds "$load" \
        --rounds "$rounds" --grow-mb "$grow"
    record "$out" in_root "$root" python "$m" --label "$arch file low-power" --provider file \
        --preset low-power --cwd /var/tmp --bare --load-seconds "$load" --rounds "$rounds"
    # A 512 MB memory cgroup around the emulated server (the emulator's memory counts too).
    if make_cgroup; then
        mkdir -p "$root/mnt/edge-cgroup"
        mount --bind "$CGROUP" "$root/mnt/edge-cgroup"
        MOUNTED+=("$root/mnt/edge-cgroup")
        local join="sh -c 'echo \$\$ > /mnt/edge-cgroup/cgroup.procs && exec \"\$@\"' sh"
        for provider in lmdb file; do
            for preset in default low-power; do
                reset_cgroup_peak
                record "$out" in_root "$root" python "$m" \
                    --label "$arch $provider $preset cgroup-512M" --provider "$provider" \
                    --preset "$preset" --cwd /var/tmp --load-seconds 3 --rounds 1 --prefix "$join" \
                    --cgroup /mnt/edge-cgroup
            done
        done
        umount "$root/mnt/edge-cgroup"
        rmdir "$CGROUP" 2>/dev/null || true
    fi
    log "$arch results: $out"
}

memory() {
    need_root
    native_install
    local py="$EDGE_DIR/native-venv/bin/python" m="$HERE/measure.py" out="$RESULTS/memory-native.jsonl"
    : > "$out"
    for provider in lmdb file; do
        for preset in default low-power; do
            record "$out" python3 "$m" --python "$py" --cwd /tmp \
                --label "native $provider $preset as-512M" --provider "$provider" \
                --preset "$preset" --load-seconds 3 --bare --prefix "prlimit --as=$MEM_LIMIT_BYTES --"
        done
    done
    if make_cgroup; then
        local join="sh -c 'echo \$\$ > $CGROUP/cgroup.procs && exec \"\$@\"' sh"
        for provider in lmdb file; do
            for preset in default low-power; do
                reset_cgroup_peak
                record "$out" python3 "$m" --python "$py" --cwd /tmp \
                    --label "native $provider $preset cgroup-512M" --provider "$provider" \
                    --preset "$preset" --load-seconds 3 --rounds 1 --prefix "$join" --cgroup "$CGROUP"
            done
        done
        rmdir "$CGROUP" 2>/dev/null || true
    fi
    log "memory results: $out"
}

# Does an address-space limit reach an emulated process? qemu-user keeps RLIMIT_AS (and
# RLIMIT_DATA, RLIMIT_STACK) from the host, since they would apply to the emulator itself: the guest's
# prlimit then limits nothing. This probe shows it (a 1 GiB mapping under a 512 MB limit); under
# emulation the memory limit that holds is the cgroup one (see `emulated`).
AS_PROBE='
import json, mmap, platform, resource, sys
limit = resource.getrlimit(resource.RLIMIT_AS)
try:
    m = mmap.mmap(-1, 1 << 30)
    m.close()
    mapped = True
except (OSError, ValueError, OverflowError) as exc:
    mapped = str(exc)
print(json.dumps({"machine": platform.machine(), "rlimit_as_seen": limit,
                  "mmap_1GiB_under_limit": mapped}))
'

memory_emulated() {
    need_root
    local arch root out="$RESULTS/memory-emulated.jsonl" probe native
    : > "$out"
    native="$(cd /tmp && prlimit --as="$MEM_LIMIT_BYTES" -- python3 -c "$AS_PROBE")"
    printf '{"label": "native as-limit probe", "probe": %s}\n' "$native" | tee -a "$out"
    for arch in arm64 armhf; do
        root="$(root_dir "$arch")"
        [ -x "$root/opt/autobyteus/venv/bin/python" ] || continue
        mount_root "$root"
        probe="$(in_root "$root" prlimit --as="$MEM_LIMIT_BYTES" -- python -c "$AS_PROBE")"
        printf '{"label": "%s as-limit probe (emulated)", "probe": %s}\n' "$arch" "$probe" \
            | tee -a "$out"
    done
    log "emulated address-space probe: $out"
}

main() {
    local cmd="${1:-all}"
    shift || true
    case "$cmd" in
        root) build_root "$@" ;;
        install) install_root "$@" ;;
        emulated) emulated "$@" ;;
        memory) memory; memory_emulated ;;
        memory-native) memory ;;
        memory-emulated) memory_emulated ;;
        termux) "$HERE/termux.sh" ;;
        all)
            emulated arm64
            emulated armhf
            memory
            memory_emulated
            "$HERE/termux.sh"
            ;;
        *) die "unknown command $cmd" ;;
    esac
}

main "$@"
