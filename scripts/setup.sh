#!/usr/bin/env bash
# One-command, idempotent set-up of splitbed on Debian 12 / Ubuntu 22.04 / 24.04, run as root.
# Installs the system packages the emulator needs, a virtual environment at .venv and the project
# in it. A second run only checks and returns (a stamp holds the hash of pyproject.toml).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

if [ "$(id -u)" -ne 0 ]; then
    echo "setup needs root (it installs apt packages): run 'sudo make setup'" >&2
    exit 2
fi

APT_PACKAGES=(
    mininet iperf3 iputils-ping ethtool bridge-utils iproute2 iptables tcpdump kmod
    dataset-fashion-mnist libnetfilter-queue-dev python3-venv python3-dev gcc make
    qemu-system-x86 busybox-static cpio  # the guest kernel of 'make guest-test' (netem, cgroup v2)
    debootstrap  # 'make image': the container node image from Debian's packages
)
# Container nodes need a Docker daemon: Debian's docker.io, unless one (e.g. docker-ce) is installed.
command -v dockerd >/dev/null || APT_PACKAGES+=(docker.io)
missing=()
for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "== apt: installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # Mininet without recommends: the recommended openvswitch-switch needs a kernel datapath.
    apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
    echo "== venv: creating .venv with $($PY --version)"
    "$PY" -m venv .venv
fi

stamp=.venv/.splitbed-installed
want=$(cat pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "== pip: installing splitbed and its pinned dependencies into .venv"
    # torch first and pinned, so that nothing resolves it to a CUDA build.
    .venv/bin/pip install -q torch==2.13.0
    .venv/bin/pip install -q -e "$repo"
    # foolbox ships 20 labelled ImageNet photos; we only read its data folder, so no dependencies.
    .venv/bin/pip install -q --no-deps foolbox==3.3.4
    echo "$want" > "$stamp"
fi
# The photo evaluation set (DISC's accuracy, AGLOP's profile): photographs from two Debian packages,
# extracted into ~/.cache/splitbed/photos with a manifest; skipped when the manifest is there.
if [ ! -f "${SPLITBED_CACHE:-$HOME/.cache/splitbed}/photos/manifest.jsonl" ]; then
    echo "== photos: fetching the evaluation photos from Debian's packages"
    (cd "$repo" && .venv/bin/python -m splitbed.models.photos fetch)
fi
echo "== setup done: $repo/.venv"
