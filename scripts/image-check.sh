#!/usr/bin/env bash
# Build both images of the Dockerfile and run them for real, then run docker-compose.yml: buildah
# builds, podman runs, podman-compose (from PyPI, in a throwaway venv) runs the compose file. Prints
# one table; exits 0 when every step passed, 1 naming the step that failed, 77 when the container
# tools are missing and cannot be installed (.ci/run reports that loudly and stays green).
#
#   scripts/image-check.sh
#
# Steps: 1 install buildah/podman/mmdebstrap/runc with apt-get if missing; 2 the base image: pull
# python:<PYTHON_VERSION>-slim, or build a local one with mmdebstrap where no registry answers (its
# tarball is cached in ~/.cache/latentserve); 3 build `serve` and `train`; 4 `train` -> `bootstrap`
# into a fresh volume; 4b a host folder at /models: refused until it belongs to uid 10001; 5 `serve`
# on the volume, read-only, as uid 10001, on a free loopback port; 6 /health/ready, the HEALTHCHECK,
# /anomaly-score in JSON and .npy; 7 no torch and no compiler in the serve image, its size; 8 writing
# /models fails in the container; compose: `up -d` (trainer, then api), /health/ready, `run --rm
# trainer fit`, the api serves the new model without a restart, `down -v`; 9 remove everything.
#
# Everything runs in a private container store under $TMPDIR (storage, networks, volumes), removed
# at the end, so nothing here touches other podman users of the machine. Services listen on
# 127.0.0.1 only. Knobs: IMAGE_CHECK_TORCH_SPEC / IMAGE_CHECK_TORCH_INDEX_URL (the train image's
# torch; default: the CPU wheel pip's find-links provide, else the Dockerfile's defaults when their
# index answers, else torch from PyPI), IMAGE_CHECK_KEEP_LOGS=1.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

PODMAN_COMPOSE="podman-compose==1.6.0"
PACKAGES=(buildah podman mmdebstrap uidmap fuse-overlayfs slirp4netns runc curl)
UNAVAILABLE=77

run_id="lsic-$$"
work="$(mktemp -d "${TMPDIR:-/var/tmp}/latentserve-image-check.XXXXXX")"
logs="$work/logs"
mkdir -p "$logs"
cache="${XDG_CACHE_HOME:-$HOME/.cache}/latentserve"
serve_image="localhost/latentserve:$run_id"
train_image="localhost/latentserve-train:$run_id"
volume="$run_id-models"
project="$run_id-compose"
containers=()   # names of what we start, for the cleanup
images=()       # IDs of what we build or commit
http_pid=""
compose=()      # the podman-compose command, once installed
compose_up=0

# ---- table and failure reporting -----------------------------------------------------------------
rows=()
step_name=""
step_start=0
begin() { step_name="$1"; step_start=$SECONDS; }
pass() { rows+=("$step_name|ok|$((SECONDS - step_start))|$1"); step_name=""; }
fail() { echo "image-check: $step_name: $*" >&2; exit 1; }
unavailable() {
  echo "image-check: UNAVAILABLE: $*" >&2
  rows+=("$step_name|UNAVAILABLE|$((SECONDS - step_start))|$*")
  step_name=""
  exit "$UNAVAILABLE"
}
# run a command with its output in $logs/NAME.log; on failure show the log's tail and fail
logged() {
  local name="$1" rc=0
  shift
  "$@" >>"$logs/$name.log" 2>&1 </dev/null || rc=$?
  if [ "$rc" -ne 0 ]; then
    echo "--- $logs/$name.log (last 40 lines):" >&2
    tail -n 40 "$logs/$name.log" >&2
    fail "'$*' exited with $rc"
  fi
}
table() {
  printf '\n%-44s %-11s %6s  %s\n' "image-check step" "result" "secs" "detail"
  local row name result secs detail
  for row in "${rows[@]}"; do
    IFS='|' read -r name result secs detail <<<"$row"
    printf '%-44s %-11s %6s  %s\n' "$name" "$result" "$secs" "$detail"
  done
}

# ---- cleanup: everything started here, by name or ID, then the private store ----------------------
cleanup() {
  local left
  if [ "$compose_up" = 1 ]; then
    "${compose[@]}" down -v -t 5 >>"$logs/cleanup.log" 2>&1 </dev/null || true
  fi
  if [ "${#containers[@]}" -gt 0 ]; then
    podman rm -f -t 0 --ignore "${containers[@]}" >>"$logs/cleanup.log" 2>&1 || true
  fi
  podman volume rm -f "$volume" >>"$logs/cleanup.log" 2>&1 || true
  if [ "${#images[@]}" -gt 0 ]; then
    podman rmi -f "${images[@]}" >>"$logs/cleanup.log" 2>&1 || true
  fi
  if [ -n "$http_pid" ]; then kill "$http_pid" 2>/dev/null || true; fi
  left="$(podman ps -aq 2>/dev/null | wc -l) containers, $(podman volume ls -q 2>/dev/null | wc -l) volumes, $(podman images -q 2>/dev/null | wc -l) images"
  # whatever a failed step left behind goes with the store; mounts under it first
  findmnt -rn -o TARGET | grep -F "$work/" | sort -r | xargs -r umount -l 2>/dev/null || true
  echo "$left" >"$work/left"
}
on_exit() {
  local rc=$? left kept="" failed=""
  trap - EXIT
  if [ -n "$step_name" ]; then
    rows+=("$step_name|FAILED|$((SECONDS - step_start))|see above")
    failed="$step_name"
  fi
  step_name="9 stop and remove what it started"
  step_start=$SECONDS
  if command -v podman >/dev/null 2>&1 && [ -n "${CONTAINERS_CONF:-}" ]; then
    cleanup
    left="left: $(cat "$work/left")"
  else
    left="nothing was started"
  fi
  if [ "$rc" -ne 0 ] || [ "${IMAGE_CHECK_KEEP_LOGS:-0}" = 1 ]; then
    kept="${TMPDIR:-/var/tmp}/latentserve-image-check-logs-$$"
    rm -rf "$kept" && cp -r "$logs" "$kept" && kept=", logs in $kept"
  fi
  rm -rf "$work"
  case "$left" in
    "left: 0 containers, 0 volumes, 0 images"|"nothing was started") rows+=("$step_name|ok|$((SECONDS - step_start))|$left$kept") ;;
    *) rows+=("$step_name|FAILED|$((SECONDS - step_start))|$left$kept"); [ "$rc" -ne 0 ] || rc=1 ;;
  esac
  table
  if [ "$rc" = "$UNAVAILABLE" ]; then
    echo "image-check: the container tools are not available here; nothing was built" >&2
  elif [ "$rc" -ne 0 ]; then
    echo "image-check: FAILED at step '${failed:-9 stop and remove what it started}' (exit $rc)" >&2
  else
    echo "image-check: all steps passed"
  fi
  exit "$rc"
}
trap on_exit EXIT
trap 'exit 130' INT TERM

free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
now() { date +%s.%N; }
# seconds from $1 to $2 (default: now), epoch seconds, one decimal
since() { awk -v a="$1" -v b="${2:-$(now)}" 'BEGIN { printf "%.1f", b - a }'; }
# a container's start or finish time (`podman inspect` format) as epoch seconds
state_time() { date -d "$(podman inspect --format "{{.State.$2}}" "$1" | sed 's/ UTC$//')" +%s.%N; }
mb() { podman image inspect --format '{{.Size}}' "$1" | awk '{ printf "%d MB", $1 / 1e6 }'; }
# wait until URL/health/ready answers 200 while container $2 runs; prints the body
wait_ready() {
  local url="$1" name="$2" deadline=$((SECONDS + 180))
  until curl -fsS --max-time 2 "$url/health/ready" 2>/dev/null; do
    [ "$(podman inspect --format '{{.State.Running}}' "$name" 2>/dev/null)" = true ] \
      || { podman logs "$name" 2>&1 | tail -n 30 >&2; fail "container $name stopped before it was ready"; }
    [ "$SECONDS" -lt "$deadline" ] \
      || { podman logs "$name" 2>&1 | tail -n 30 >&2; fail "$url/health/ready did not answer 200 within 180 s"; }
    sleep 0.2
  done
}

# ---- 1 tools ---------------------------------------------------------------------------------------
begin "1 container tools"
missing=()
for tool in buildah podman mmdebstrap runc curl; do
  command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
python3 -c 'import ensurepip' 2>/dev/null || PACKAGES+=(python3-venv)
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    unavailable "${missing[*]} missing, and installing them needs root and apt-get"
  fi
  apt-get -o DPkg::Lock::Timeout=600 update -q >>"$logs/apt.log" 2>&1 </dev/null \
    || unavailable "apt-get update failed (see $logs/apt.log)"
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q "${PACKAGES[@]}" \
    >>"$logs/apt.log" 2>&1 </dev/null || unavailable "apt-get install ${PACKAGES[*]} failed (see $logs/apt.log)"
  installed="installed ${missing[*]}"
else
  installed="present"
fi
# a private store: storage, runtime state, networks and volumes all under $work; overlay where the
# kernel and $work's file system allow it (a container then starts at once), vfs otherwise (every
# container a full copy of its image)
store() {
  cat >"$work/storage.conf" <<EOF
[storage]
driver = "$1"
graphroot = "$work/storage"
runroot = "$work/run"
EOF
}
# runc and cgroupfs: crun and systemd cgroups fail in this kind of VM; rlimits no higher than this
# shell's (podman's defaults are above them, and raising needs CAP_SYS_RESOURCE); pid_max caps nproc
nofile="$(ulimit -Hn)"
nproc="$(ulimit -Hu)"
pid_max="$(cat /proc/sys/kernel/pid_max 2>/dev/null || echo 32768)"
if [ "$nproc" = unlimited ] || [ "$nproc" -gt "$pid_max" ]; then nproc="$pid_max"; fi
if [ "$nofile" = unlimited ]; then nofile=1048576; fi
cat >"$work/containers.conf" <<EOF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "$work/libpod"
[network]
network_config_dir = "$work/networks"
EOF
export CONTAINERS_STORAGE_CONF="$work/storage.conf" CONTAINERS_CONF="$work/containers.conf"
driver="${IMAGE_CHECK_STORAGE_DRIVER:-overlay}"
store "$driver"
if ! podman info >>"$logs/tools.log" 2>&1 && [ "$driver" = overlay ]; then
  rm -rf "$work/storage" "$work/run"
  driver=vfs
  store vfs
fi
logged tools podman info
pass "$installed: storage $driver, buildah $(buildah --version | awk '{print $3}'), podman $(podman --version | awk '{print $3}')"

# ---- 2 base image ----------------------------------------------------------------------------------
begin "2 base image"
python_version="$(sed -n 's/^ARG PYTHON_VERSION=//p' Dockerfile)"
base="python:$python_version-slim"
if timeout 300 podman pull -q "docker.io/library/$base" >>"$logs/base.log" 2>&1; then
  images+=("$(podman image inspect --format '{{.Id}}' "docker.io/library/$base")")
  base_detail="pulled docker.io/library/$base"
else
  # no registry: a Debian bookworm root with python3 and pip stands in (see docs/deploy.md)
  tarball="$cache/base-bookworm-python3.tar"
  if [ -f "$tarball" ] && [ -n "$(find "$tarball" -mtime -7)" ]; then
    base_detail="local $base from the cached $tarball"
  else
    mkdir -p "$cache"
    # shellcheck disable=SC2016  # "$1" is mmdebstrap's, expanded by its hook
    logged base mmdebstrap --variant=minbase \
      --include=python3,python3-pip,python3-venv,python-is-python3,ca-certificates \
      --customize-hook='rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED' bookworm "$cache/partial.tar"
    mv "$cache/partial.tar" "$tarball"   # mmdebstrap picks the format by the name: keep .tar last
    base_detail="local $base built by mmdebstrap (cached in $cache)"
  fi
  ctr="$(buildah from scratch)"
  logged base buildah add "$ctr" "$tarball" /
  logged base buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --cmd python3 "$ctr"
  images+=("$(buildah commit -q --rm "$ctr" "localhost/$base")")
fi
have="$(podman run --rm --pull=never --network host --entrypoint python3 "$base" -c \
  'import sys; print("%d.%d" % sys.version_info[:2])')"
[ "$have" = "$python_version" ] || fail "$base holds Python $have; the Dockerfile asks for $python_version"
pass "$base_detail, Python $have"

# ---- 3 builds --------------------------------------------------------------------------------------
build=(buildah bud --isolation chroot --pull=never --format docker --layers=false)
# pip inside the build trusts what the host trusts (HTTPS may pass a proxy with its own CA)
if [ -f /etc/ssl/certs/ca-certificates.crt ]; then
  build+=(--volume /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt:ro)
fi

begin "3a build serve"
logged build-serve "${build[@]}" --target serve -t "$serve_image" .
images+=("$(podman image inspect --format '{{.Id}}' "$serve_image")")
pass "$(mb "$serve_image")"

begin "3b build train"
torch_pin="$(sed -n 's/^ARG TORCH_SPEC=//p' Dockerfile)"
torch_index="$(sed -n 's/^ARG TORCH_INDEX_URL=//p' Dockerfile)"
torch_spec="${IMAGE_CHECK_TORCH_SPEC:-}"
torch_detail="torch from IMAGE_CHECK_TORCH_SPEC"
if [ -z "$torch_spec" ]; then
  # the CPU wheel of the pinned version where pip's find-links hold one, served to the build on loopback
  tag="cp${python_version/./}"
  wheel=""
  for dir in ${PIP_FIND_LINKS:-} $(python3 -m pip config list 2>/dev/null | sed -n "s/.*find-links='\(.*\)'$/\1/p"); do
    dir="${dir#file://}"
    for candidate in "$dir/torch-${torch_pin#torch==}+cpu-$tag-$tag-"*"linux"*"_$(uname -m).whl"; do
      [ -f "$candidate" ] && wheel="$candidate" && break 2
    done
  done
  if [ -n "$wheel" ]; then
    port="$(free_port)"
    python3 -m http.server --bind 127.0.0.1 --directory "$(dirname "$wheel")" "$port" >>"$logs/wheel-server.log" 2>&1 &
    http_pid=$!
    for _ in $(seq 50); do curl -fsS -o /dev/null -I "http://127.0.0.1:$port/" 2>/dev/null && break; sleep 0.1; done
    torch_spec="http://127.0.0.1:$port/$(basename "$wheel")"
    torch_index="https://pypi.org/simple"   # torch's own dependencies
    torch_detail="torch: $wheel"
  elif curl -fsS -o /dev/null --max-time 10 "$torch_index/"; then
    torch_spec="$torch_pin"
    torch_detail="torch: $torch_pin from $torch_index"
  else
    torch_spec="$torch_pin"
    torch_index="https://pypi.org/simple"
    torch_detail="torch: $torch_pin from PyPI ($(sed -n 's/^ARG TORCH_INDEX_URL=//p' Dockerfile) unreachable)"
  fi
fi
torch_index="${IMAGE_CHECK_TORCH_INDEX_URL:-$torch_index}"
logged build-train "${build[@]}" --target train -t "$train_image" \
  --build-arg "TORCH_SPEC=$torch_spec" --build-arg "TORCH_INDEX_URL=$torch_index" .
images+=("$(podman image inspect --format '{{.Id}}' "$train_image")")
if [ -n "$http_pid" ]; then
  kill "$http_pid"
  wait "$http_pid" 2>/dev/null || true
  http_pid=""
fi
pass "$(mb "$train_image"), $torch_detail"

run=(podman run --pull=never --network host)

# ---- 4 bootstrap -----------------------------------------------------------------------------------
begin "4 train: bootstrap into a fresh volume"
logged bootstrap podman volume create "$volume"
containers+=("$run_id-bootstrap")
logged bootstrap "${run[@]}" --name "$run_id-bootstrap" -v "$volume:/models" "$train_image"
boot_s="$(since "$(state_time "$run_id-bootstrap" StartedAt)" "$(state_time "$run_id-bootstrap" FinishedAt)")"
logged bootstrap podman rm "$run_id-bootstrap"
mountpoint="$(podman volume inspect --format '{{.Mountpoint}}' "$volume")"
n_models="$(find "$mountpoint" -name manifest.json -not -path '*/.staging/*' | wc -l)"
[ "$n_models" -gt 0 ] || fail "bootstrap published no model"
pass "$n_models models in ${boot_s} s (container start to exit), volume owned by $(stat -c %u:%g "$mountpoint")"

# ---- 4b a host folder as /models -------------------------------------------------------------------
begin "4b train: host folder at /models (uid 10001)"
host_dir="$work/host-models"
mkdir -m 755 "$host_dir"
fit_small=(fit --model pca --dataset digits --name host-pca --n-components 8 --models-dir /models)
containers+=("$run_id-host-fit")
if "${run[@]}" --rm --name "$run_id-host-fit" -v "$host_dir:/models" "$train_image" "${fit_small[@]}" \
  >"$logs/host-fit.log" 2>&1 </dev/null; then
  fail "the trainer wrote into a root-owned host folder; expected a refusal"
fi
grep -q "chown" "$logs/host-fit.log" || { tail -n 20 "$logs/host-fit.log" >&2; fail "the refusal does not say how to fix the ownership"; }
chown 10001:10001 "$host_dir"
logged host-fit "${run[@]}" --rm --name "$run_id-host-fit" -v "$host_dir:/models" "$train_image" "${fit_small[@]}"
[ -f "$host_dir/host-pca/1/manifest.json" ] || fail "no host-pca/1/manifest.json in the host folder"
pass "root-owned: refused with a chown hint; chown 10001:10001: published"

# ---- 5 serve ---------------------------------------------------------------------------------------
begin "5 serve: read-only, non-root, loopback"
serve_port="$(free_port)"
url="http://127.0.0.1:$serve_port"
containers+=("$run_id-serve")
logged serve "${run[@]}" -d --name "$run_id-serve" --read-only -v "$volume:/models:ro" \
  -e LATENTSERVE_HOST=127.0.0.1 -e "LATENTSERVE_PORT=$serve_port" -e LATENTSERVE_ALLOW_PICKLE=true "$serve_image"
user="$(podman exec "$run_id-serve" id -u)"
[ "$user" = 10001 ] || fail "the service runs as uid $user, not 10001"
pass "uid $user, $url, rootfs and /models read-only"

# ---- 6 ready, healthcheck, scores ------------------------------------------------------------------
begin "6 ready, HEALTHCHECK, /anomaly-score"
ready="$(wait_ready "$url" "$run_id-serve")"
ready_s="$(since "$(state_time "$run_id-serve" StartedAt)")"
case "$ready" in *"\"models\":$n_models"*) ;; *) fail "/health/ready answered $ready; expected $n_models models" ;; esac
logged healthcheck podman healthcheck run "$run_id-serve"
containers+=("$run_id-probe")
# the serve image ships the server only: the client (its own distribution) is mounted beside the probe
scored="$("${run[@]}" --rm --no-healthcheck --name "$run_id-probe" -v "$root/tests/deploy/image_probe.py:/probe/probe.py:ro" \
  -v "$root/client/latentserve_client:/probe/latentserve_client:ro" \
  --entrypoint python "$serve_image" /probe/probe.py "$url" breast-cancer-pca 2>&1 </dev/null)" \
  || fail "probe: $scored"
pass "ready ${ready_s} s after start ($ready); healthy; $scored"

# ---- 7 serve image contents ------------------------------------------------------------------------
begin "7 serve image: no torch, no compiler"
"${run[@]}" --rm --no-healthcheck --entrypoint python "$serve_image" -c \
  'import importlib.util, sys; sys.exit(importlib.util.find_spec("torch") is not None)' </dev/null \
  || fail "torch is importable in the serve image"
# shellcheck disable=SC2016  # expanded by the container's shell
compilers="$("${run[@]}" --rm --no-healthcheck --entrypoint sh "$serve_image" -c \
  'for c in gcc cc c++ g++ clang x86_64-linux-gnu-gcc make; do command -v $c; done; true' </dev/null)"
[ -z "$compilers" ] || fail "compilers in the serve image: $compilers"
pass "$(mb "$serve_image")"

# ---- 8 /models is read-only ------------------------------------------------------------------------
begin "8 writing /models fails in the container"
if podman exec "$run_id-serve" sh -c ': > /models/write-test' >"$logs/write.log" 2>&1; then
  fail "the serve container could write /models/write-test"
fi
grep -q "Read-only file system" "$logs/write.log" || fail "unexpected error: $(cat "$logs/write.log")"
pass "$(tr -d '\n' <"$logs/write.log")"
podman rm -f -t 5 "$run_id-serve" >>"$logs/serve.log" 2>&1

# ---- compose ---------------------------------------------------------------------------------------
begin "compose: podman-compose up -d"
logged compose python3 -m venv "$work/compose-venv"
logged compose "$work/compose-venv/bin/pip" install -q "$PODMAN_COMPOSE"
compose=("$work/compose-venv/bin/podman-compose" -p "$project" -f docker-compose.yml)
# every profile's file parses, gpu and lb included (they are not run: no GPU, no nginx image here)
logged compose "${compose[@]}" --profile gpu --profile lb config
# the images built above under the names the compose file gives, so `up` builds nothing
podman tag "$serve_image" localhost/latentserve:latest
podman tag "$train_image" localhost/latentserve-train:latest
compose_port="$(free_port)"
export LATENTSERVE_API_PUBLISH="127.0.0.1:$compose_port:8000"
compose_up=1
started="$(now)"
logged compose "${compose[@]}" up -d
trainer="${project}_trainer_1"
api="${project}_api_1"
ready="$(wait_ready "http://127.0.0.1:$compose_port" "$api")"
ready_s="$(since "$started")"
# podman-compose waits for the trainer to stop, not for exit code 0, and the api's --requires starts
# the exited trainer once more: every run of it must have exited 0
logged compose podman wait "$trainer"
codes="$(podman events --stream=false --filter "container=$trainer" --filter event=died \
  --format '{{.ContainerExitCode}}' | tr '\n' ' ')"
if [ -z "$codes" ] || [ -n "${codes//0 /}" ]; then fail "trainer exit codes: ${codes:-none recorded}"; fi
pass "api ready ${ready_s} s after \`up -d\` ($ready); trainer ran $(wc -w <<<"$codes") times, exit codes: ${codes% }"

begin "compose: run trainer fit, api picks it up"
api_started="$(podman inspect --format '{{.Id}} {{.State.StartedAt}} {{.RestartCount}}' "$api")"
logged compose "${compose[@]}" run --rm trainer fit --model pca --dataset digits --name compose-pca \
  --n-components 8 --models-dir /models
fitted="$(now)"
deadline=$((SECONDS + 60))
until curl -fsS --max-time 2 "http://127.0.0.1:$compose_port/models" | grep -q '"compose-pca"'; do
  [ "$SECONDS" -lt "$deadline" ] || fail "the api did not list compose-pca within 60 s of the fit"
  sleep 0.5
done
seen_s="$(since "$fitted")"
[ "$(podman inspect --format '{{.Id}} {{.State.StartedAt}} {{.RestartCount}}' "$api")" = "$api_started" ] \
  || fail "the api container was restarted or replaced"
pass "compose-pca listed by the api ${seen_s} s after \`run --rm\` returned; same api container, 0 restarts"

begin "compose: down -v"
logged compose "${compose[@]}" down -v -t 5
compose_up=0
left="$(podman ps -aq --filter "label=io.podman.compose.project=$project" | wc -l)"
[ "$left" = 0 ] || fail "$left containers of $project left after down"
if podman volume ls -q | grep -qx "${project}_models"; then fail "volume ${project}_models left after down -v"; fi
pass "containers, volume and network removed"
