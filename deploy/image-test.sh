#!/usr/bin/env bash
# make image-test: build ./Dockerfile for real without a Docker engine, then start the image and
# probe it. Needs root (buildah chroot isolation, debootstrap) and Debian/Ubuntu apt.
#
#  1. apt-get install buildah + debootstrap if missing.
#  2. A stand-in for python:3.11-slim, made once with debootstrap (Debian bookworm's Python 3.11)
#     and cached in $KCP_IMAGE_CACHE (default ~/.cache/kafka-connect-probe/image).
#  3. A wheelhouse for uv.lock's runtime dependencies (+ uv and hatchling for the build stage),
#     downloaded on the host: RUN steps inside the chroot cannot reach a package index. The
#     stand-in base sets PIP_NO_INDEX, UV_OFFLINE and PIP_/UV_FIND_LINKS=/wheels and the wheelhouse is bind-mounted
#     there for RUN steps only, so the Dockerfile is built unchanged.
#  4. buildah bud --pull=never --isolation chroot --storage-driver vfs.
#  5. Checks the image metadata (numeric non-root User, Entrypoint, ExposedPorts 18083), that no
#     compiler, curl, wget or uv made it into the final image, runs the image's Entrypoint with
#     buildah run (host network) against a fake Connect on 127.0.0.1 and probes /healthz and
#     /ready (200); then runs it again as the pod does (image UID, read-only root file system,
#     nothing writable) and probes /healthz, /ready (200), and /ready after stopping the fake
#     Connect (503). Everything started here is stopped by PID.
#
# Environment: KCP_IMAGE_CACHE (cache dir), DEBIAN_MIRROR (default: the host's apt source for
# bookworm), PYTHON (host python3 for pip download and the helpers), KEEP_IMAGE=1 (keep the
# built image in the cache storage).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

CACHE=${KCP_IMAGE_CACHE:-$HOME/.cache/kafka-connect-probe/image}
PYTHON=${PYTHON:-python3}
SUITE=bookworm
IMAGE=localhost/kafka-connect-probe:image-test
# Bump when the stand-in recipe below changes (invalidates the cached rootfs).
BASE_RECIPE="v2 minbase python3 python3-venv python3-pip ca-certificates"

t0=$(date +%s.%N)
phase_start=$t0
log() { printf '[image-test] %s\n' "$*" >&2; }
phase() {
    local now
    now=$(date +%s.%N)
    log "$(printf '%-28s %6.1f s' "$1" "$(echo "$now - $phase_start" | bc)")"
    phase_start=$now
}
die() { log "ERROR: $*"; exit 1; }

[ "$(id -u)" -eq 0 ] || die "needs root (buildah --isolation chroot and debootstrap)"

# --- 1. tools ------------------------------------------------------------------------------------
missing=()
command -v buildah >/dev/null 2>&1 || missing+=(buildah)
command -v debootstrap >/dev/null 2>&1 || missing+=(debootstrap)
command -v bc >/dev/null 2>&1 || missing+=(bc)
if [ ${#missing[@]} -gt 0 ]; then
    command -v apt-get >/dev/null 2>&1 || die "missing ${missing[*]} and no apt-get to install them"
    log "installing ${missing[*]} with apt-get"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
phase "tools"

mkdir -p "$CACHE"
exec 9>"$CACHE/.lock"
flock 9   # one image-test per cache at a time

B=(buildah --root "$CACHE/storage" --runroot "$CACHE/run" --storage-driver vfs)
WORK=$(mktemp -d)
FAKE_PID=""
RUN_PID=""
CTR=""

descendants() {  # every descendant PID of $1, deepest first
    local child
    for child in $(ps -o pid= --ppid "$1" 2>/dev/null); do
        descendants "$child"
        echo "$child"
    done
}
stop_tree() {  # SIGTERM the process $1 and its descendants, by PID; SIGKILL after 10 s
    local pid=$1 p
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
    local pids
    pids="$(descendants "$pid") $pid"
    for p in $pids; do kill -TERM "$p" 2>/dev/null || true; done
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    for p in $pids; do kill -KILL "$p" 2>/dev/null || true; done
    wait "$pid" 2>/dev/null || true
}
cleanup() {
    local rc=$?
    stop_tree "$RUN_PID"
    stop_tree "$FAKE_PID"
    if [ -n "$CTR" ]; then "${B[@]}" rm "$CTR" >/dev/null 2>&1 || true; fi
    if [ "${KEEP_IMAGE:-0}" != 1 ]; then "${B[@]}" rmi -f "$IMAGE" >/dev/null 2>&1 || true; fi
    rm -rf "$WORK"
    exit "$rc"
}
trap cleanup EXIT INT TERM
trap 'log "ERROR: command failed (exit $?) at line $LINENO: $BASH_COMMAND"' ERR

# --- 2. the stand-in base --------------------------------------------------------------------------
host_mirror() {  # the host's apt URI for $SUITE (deb822 .sources or one-line sources.list)
    "$PYTHON" - "$SUITE" <<'PY'
import glob, re, sys
suite = sys.argv[1]
for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
    for block in open(path, encoding="utf-8").read().split("\n\n"):
        fields = dict(
            (k.strip().lower(), v.strip())
            for k, _, v in (line.partition(":") for line in block.splitlines())
            if not k.startswith("#") and v
        )
        if "deb" in fields.get("types", "").split() and suite in fields.get("suites", "").split():
            print(fields["uris"].split()[0]); sys.exit(0)
for path in ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*.list"))]:
    try:
        lines = open(path, encoding="utf-8").read().splitlines()
    except OSError:
        continue
    for line in lines:
        m = re.match(r"\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", line)
        if m and m.group(2) == suite:
            print(m.group(1)); sys.exit(0)
sys.exit(1)
PY
}

ROOTFS_TAR="$CACHE/standin-rootfs-$SUITE.tar"
if [ ! -s "$ROOTFS_TAR" ] || [ "$(cat "$ROOTFS_TAR.recipe" 2>/dev/null)" != "$BASE_RECIPE" ]; then
    mirror=${DEBIAN_MIRROR:-$(host_mirror)} || die "no apt source for $SUITE found; set DEBIAN_MIRROR"
    log "debootstrap $SUITE (minbase + python3) into the cache; takes about a minute"
    rootfs="$WORK/rootfs"
    debootstrap --variant=minbase --include=python3,python3-venv,python3-pip,ca-certificates \
        "$SUITE" "$rootfs" "$mirror" >"$WORK/debootstrap.log" 2>&1 \
        || { tail -20 "$WORK/debootstrap.log" >&2; die "debootstrap failed"; }
    chroot "$rootfs" apt-get clean
    rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/cache/apt/*.bin "$rootfs"/var/log/*.log
    # Look like python:3.11-slim: python, python3 and pip on /usr/local/bin; pip may install
    # system-wide (the official image has no EXTERNALLY-MANAGED marker).
    for name in python python3 python3.11 pip pip3; do
        target=/usr/bin/$name
        [ "$name" = python ] && target=/usr/bin/python3
        [ "$name" = pip ] && target=/usr/bin/pip3
        ln -sf "$target" "$rootfs/usr/local/bin/$name"
    done
    rm -f "$rootfs"/usr/lib/python3*/EXTERNALLY-MANAGED
    tar -C "$rootfs" --numeric-owner -cf "$ROOTFS_TAR.tmp" .
    mv "$ROOTFS_TAR.tmp" "$ROOTFS_TAR"
    echo "$BASE_RECIPE" >"$ROOTFS_TAR.recipe"
    rm -rf "$rootfs"
    phase "debootstrap stand-in"
fi


STANDIN_CONTAINERFILE='FROM scratch
ADD rootfs.tar /
ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin \
    LANG=C.UTF-8 \
    PIP_NO_INDEX=1 PIP_FIND_LINKS=/wheels UV_OFFLINE=1 UV_FIND_LINKS=/wheels
CMD ["python3"]
'
standin_key=$(printf '%s\n%s' "$BASE_RECIPE" "$STANDIN_CONTAINERFILE" | sha256sum | cut -c1-12)
STANDIN=localhost/kafka-connect-probe-base:standin-$standin_key
if ! "${B[@]}" inspect --type image "$STANDIN" >/dev/null 2>&1; then
    ctx="$WORK/standin"
    mkdir -p "$ctx"
    ln "$ROOTFS_TAR" "$ctx/rootfs.tar" 2>/dev/null || cp "$ROOTFS_TAR" "$ctx/rootfs.tar"
    printf '%s' "$STANDIN_CONTAINERFILE" >"$ctx/Containerfile"
    # Older stand-ins are no longer needed.
    for old in $("${B[@]}" images --format '{{.Name}}:{{.Tag}}'); do
        case $old in
            localhost/kafka-connect-probe-base:*) "${B[@]}" rmi -f "$old" >/dev/null 2>&1 || true ;;
        esac
    done
    "${B[@]}" bud --quiet --isolation chroot -t "$STANDIN" -f "$ctx/Containerfile" "$ctx" >/dev/null
    rm -rf "$ctx"
    phase "import stand-in base"
fi

# --- 3. wheelhouse -----------------------------------------------------------------------------------
UV_VERSION=$(sed -n 's/^ARG UV_VERSION=//p' Dockerfile)
[ -n "$UV_VERSION" ] || die "Dockerfile has no 'ARG UV_VERSION=' line"
UV=${UV:-$(command -v uv || echo "$HOME/.local/bin/uv")}
"$UV" export --frozen --no-dev --no-emit-project --no-header --output-file "$WORK/requirements.txt" >/dev/null
key=$( (cat "$WORK/requirements.txt"; echo "uv==$UV_VERSION hatchling") | sha256sum | cut -c1-16)
WHEELS="$CACHE/wheels-$key"
if [ ! -d "$WHEELS" ]; then
    log "downloading wheels for uv.lock into the cache"
    tmpw="$WHEELS.tmp"
    rm -rf "$tmpw"
    {
        "$PYTHON" -m pip download --quiet --disable-pip-version-check --no-deps \
            --only-binary=:all: --require-hashes -r "$WORK/requirements.txt" -d "$tmpw" \
        && "$PYTHON" -m pip download --quiet --disable-pip-version-check --only-binary=:all: \
            "uv==$UV_VERSION" hatchling -d "$tmpw"
    } >"$WORK/pip.log" 2>&1 || { cat "$WORK/pip.log" >&2; die "pip download failed"; }
    mv "$tmpw" "$WHEELS"
    for stale in "$CACHE"/wheels-*; do  # wheelhouses of older locks
        [ "$stale" = "$WHEELS" ] || rm -rf "$stale"
    done
    phase "download wheels"
fi

# --- 4. build ----------------------------------------------------------------------------------------
log "buildah bud ./Dockerfile (base: stand-in for python:3.11-slim)"
"${B[@]}" bud --pull=never --isolation chroot \
    --volume "$WHEELS:/wheels:ro" \
    --build-arg "PYTHON_IMAGE=$STANDIN" \
    -t "$IMAGE" -f Dockerfile . >"$WORK/build.log" 2>&1 \
    || { tail -40 "$WORK/build.log" >&2; die "buildah bud failed"; }
phase "buildah bud"

# --- 5. checks ---------------------------------------------------------------------------------------
"${B[@]}" inspect --type image "$IMAGE" >"$WORK/inspect.json"
"$PYTHON" - "$WORK/inspect.json" "$WORK/entrypoint" <<'PY2'
import json, sys
config = json.load(open(sys.argv[1]))["OCIv1"]["config"]
user = config.get("User", "")
uid = user.split(":")[0]
problems = []
if not uid.isdigit() or int(uid) == 0:
    problems.append(f"User must be a numeric non-root UID, got {user!r}")
if config.get("Entrypoint") != ["connect-probe"]:
    problems.append(f"Entrypoint must be ['connect-probe'], got {config.get('Entrypoint')!r}")
if "18083/tcp" not in (config.get("ExposedPorts") or {}):
    problems.append(f"ExposedPorts must include 18083/tcp, got {config.get('ExposedPorts')!r}")
if "PYTHONUNBUFFERED=1" not in config.get("Env", []):
    problems.append("Env must set PYTHONUNBUFFERED=1")
if problems:
    sys.exit("image metadata: " + "; ".join(problems))
with open(sys.argv[2], "w") as out:
    out.write("\n".join(config["Entrypoint"]) + "\n")
print(f"[image-test] metadata ok: User={user} Entrypoint={config['Entrypoint']} "
      f"ExposedPorts={sorted(config['ExposedPorts'])}", file=sys.stderr)
PY2
mapfile -t ENTRYPOINT <"$WORK/entrypoint"

CTR=$("${B[@]}" from --pull=never "$IMAGE")
"${B[@]}" run --isolation chroot "$CTR" -- python -c '
import importlib.util, os, shutil, sys
bad = [n for n in ("gcc", "cc", "c++", "make", "curl", "wget", "uv") if shutil.which(n)]
bad += [m for m in ("pip", "hatchling") if importlib.util.find_spec(m)]
if os.getuid() == 0:
    bad.append("uid 0")
if bad:
    sys.exit("final image contains: " + ", ".join(bad))
' || die "final image is not minimal"
mnt=$("${B[@]}" mount "$CTR")
venv_kib=$(du -sk "$mnt/opt/venv" | cut -f1)
venv_gz=$(tar -C "$mnt" -cf - opt/venv | gzip -6 | wc -c)
"${B[@]}" umount "$CTR" >/dev/null
image_size=$("${B[@]}" images --format '{{.Size}}' "$IMAGE" | head -1)
base_size=$("${B[@]}" images --format '{{.Size}}' "$STANDIN" | head -1)
log "image $image_size (stand-in base $base_size); /opt/venv layer $((venv_kib / 1024)) MiB, $((venv_gz / 1024 / 1024)) MiB gzipped"
phase "inspect"

free_port() { "$PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
FAKE_PORT=$(free_port)
PROBE_PORT=$(free_port)
SIDECAR_ENV=(
    CONNECT_PROBE_CONNECT_URL="http://127.0.0.1:$FAKE_PORT"
    CONNECT_PROBE_HOST=127.0.0.1
    CONNECT_PROBE_PORT="$PROBE_PORT"
    CONNECT_PROBE_POLL_INTERVAL=0.5
    CONNECT_PROBE_TIMEOUT=2
    CONNECT_PROBE_MAX_AGE=3
    POD_IP=127.0.0.1
)
"$PYTHON" -m tools.fakeconnect.fast --port "$FAKE_PORT" >"$WORK/fake.log" 2>&1 &
FAKE_PID=$!

probe() {  # probe PATH EXPECTED_STATUS DEADLINE_S: kubelet-style GET until it answers EXPECTED
    "$PYTHON" -m tools.deploycheck.kubeprobe --expect "$2" --until "$3" "http://127.0.0.1:$PROBE_PORT$1"
}
report_rss() {  # the image's Python process under $1, as the host sees it
    local pid
    for pid in "$1" $(descendants "$1"); do
        if tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q '^[^ ]*python[^ ]* [^ ]*connect-probe'; then
            log "sidecar process in the image: uid $(awk '/^Uid/ {print $2}' "/proc/$pid/status"), $(awk '/^VmRSS/ {printf "%d MiB RSS", $2 / 1024}' "/proc/$pid/status")"
        fi
    done
}

# (a) buildah run: the image's own Entrypoint, User and Env.
env_flags=()
for assignment in "${SIDECAR_ENV[@]}"; do env_flags+=(--env "$assignment"); done
"${B[@]}" run --isolation chroot "${env_flags[@]}" "$CTR" -- "${ENTRYPOINT[@]}" \
    >"$WORK/sidecar.log" 2>&1 &
RUN_PID=$!
probe /healthz 200 60 || { cat "$WORK/sidecar.log" >&2; die "/healthz never answered 200"; }
phase "start (to /healthz 200)"
probe /ready 200 30 || { cat "$WORK/sidecar.log" >&2; die "/ready never answered 200"; }
probe /live 200 5 || die "/live did not answer 200"
report_rss "$RUN_PID"
stop_tree "$RUN_PID"
RUN_PID=""
phase "buildah run probes"

# (b) As Kubernetes runs it here: read-only root file system, the image's UID:GID, nothing
# writable at all (not even /tmp), image Env only. A private mount namespace holds a read-only
# bind mount of the image's root file system.
mnt=$("${B[@]}" mount "$CTR")
user=$("$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))["OCIv1"]["config"]["User"])' "$WORK/inspect.json")
mapfile -t IMAGE_ENV < <("$PYTHON" -c 'import json,sys; print("\n".join(json.load(open(sys.argv[1]))["OCIv1"]["config"]["Env"]))' "$WORK/inspect.json")
mkdir -p "$WORK/ro"
# shellcheck disable=SC2016 # the inner script expands its own positional parameters
unshare --mount --propagation private -- sh -ec '
    mount --bind "$1" "$2"
    mount -o remount,bind,ro "$2"
    mount -t proc proc "$2/proc"
    root=$2; user=$3; shift 3
    exec chroot --userspec="$user" "$root" "$@"
' sh "$mnt" "$WORK/ro" "$user" /usr/bin/env -i "${IMAGE_ENV[@]}" "${SIDECAR_ENV[@]}" \
    "${ENTRYPOINT[@]}" >"$WORK/sidecar-ro.log" 2>&1 &
RUN_PID=$!
probe /healthz 200 60 || { cat "$WORK/sidecar-ro.log" >&2; die "read-only root: /healthz never 200"; }
probe /ready 200 30 || { cat "$WORK/sidecar-ro.log" >&2; die "read-only root: /ready never 200"; }
report_rss "$RUN_PID"
stop_tree "$FAKE_PID"
FAKE_PID=""
probe /ready 503 30 || { cat "$WORK/sidecar-ro.log" >&2; die "/ready did not turn 503 with Connect gone"; }
probe /live 200 5 || die "/live failed within STARTUP_GRACE"
probe /healthz 200 5 || die "/healthz failed after Connect went away"
stop_tree "$RUN_PID"
RUN_PID=""
if grep -qiE 'read-only file system|permission denied' "$WORK/sidecar-ro.log"; then
    cat "$WORK/sidecar-ro.log" >&2
    die "the sidecar tried to write with a read-only root"
fi
"${B[@]}" umount "$CTR" >/dev/null
phase "read-only root probes"

total=$(echo "$(date +%s.%N) - $t0" | bc)
log "$(printf 'OK in %.1f s' "$total")"
