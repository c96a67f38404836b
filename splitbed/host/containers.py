"""Docker containers as nodes: the daemon and image checks, and containers started and removed by name.

A container node starts with no network of its own (`--network none`); the node's link end is moved into
its network namespace (network/topology.py), as Containernet does. Programs enter the container with
nsenter (its filesystem, network, hostname and IPC, not its PID namespace), started by the node's own
cgroup, so the calibrated, governed quota and memory limit hold exactly as for a host node, and the
run's processes keep host PIDs that a cleanup can stop by PID. Only the Docker CLI is used.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from splitbed.errors import UserError
from splitbed.host.state import RunState

DEFAULT_IMAGE = "splitbed-node"
SOURCE_LABEL = "splitbed.source"  # the digest of the project sources an image was built from (host/images.py)
# A Docker image reference: [registry/]name[:tag][@digest], lower-case path components.
IMAGE_PATTERN = re.compile(r"^[a-z0-9]+(?:[._-][a-z0-9]+)*(?::[0-9]+)?(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*"
                           r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@sha256:[0-9a-f]{64})?$")
START_HINT = ("start the Docker daemon: 'sudo systemctl start docker', or without systemd "
              "'sudo dockerd --iptables=false --bridge=none &' (install it with 'sudo apt install docker.io')")
# What an image must import to serve as a node: both programs (and so torch and the codecs).
PROBE = ("import json, sys, splitbed, splitbed.app.edge, splitbed.app.server; "
         "print(json.dumps({'python': sys.executable, 'splitbed': splitbed.__version__}))")


def docker(*args: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and done.returncode != 0:
        raise OSError(f"docker {' '.join(args[:2])} failed: {(done.stderr or done.stdout).strip()}")
    return done


def ask_daemon() -> tuple[str | None, str]:
    """(the daemon's version, None when it does not answer; what the client said otherwise)."""
    if shutil.which("docker") is None:
        return None, "the docker command is not installed"
    try:
        done = docker("version", "--format", "{{.Server.Version}}", timeout=20, check=False)
    except subprocess.TimeoutExpired:
        return None, "no answer within 20 s"
    if done.returncode == 0:
        return done.stdout.strip(), ""
    said = (done.stderr or done.stdout).strip().splitlines()
    return None, said[-1] if said else "no output"


def daemon_version() -> str | None:
    return ask_daemon()[0]


def check_daemon() -> str:
    """The daemon's version, or a UserError saying how to start it."""
    version, said = ask_daemon()
    if version is None:
        raise UserError(f"a node names an image, but the Docker daemon does not answer ({said})", fix=START_HINT)
    return version


def check_image_name(image, where: str) -> None:
    if not isinstance(image, str) or len(image) > 255 or not IMAGE_PATTERN.match(image):
        raise UserError(f"{image!r} is not a Docker image name", where=where,
                        fix=f"e.g. {DEFAULT_IMAGE} or registry.example.org/team/node:1.2 (lower case)")


@dataclass(frozen=True)
class ImageInfo:
    """What a run records of an image and needs to run programs in it."""

    name: str
    id: str
    size_mb: float
    python: str
    splitbed: str
    source: str | None

    def to_dict(self) -> dict:
        return {"image": self.name, "image_id": self.id, "size_mb": self.size_mb, "python": self.python,
                "splitbed": self.splitbed, "source": self.source}


def inspect_image(image: str, where: str) -> ImageInfo:
    """The image's id and whether it can run the node programs (a throwaway container imports them)."""
    done = docker("image", "inspect", image, timeout=30, check=False)
    if done.returncode != 0:
        fix = "build it with 'sudo make image'" if image.split(":")[0] == DEFAULT_IMAGE else \
            "build or load it first ('docker images' lists what this daemon has; 'sudo make image' builds the default)"
        raise UserError(f"Docker image {image!r} is not on this machine", where=where, fix=fix)
    meta = json.loads(done.stdout)[0]
    probe = docker("run", "--rm", "--network", "none", "--entrypoint", "python3", image, "-c", PROBE,
                   timeout=180, check=False)
    try:
        found = json.loads(probe.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        reason = (probe.stderr or probe.stdout).strip().splitlines()[-1:] or ["no output"]
        raise UserError(f"Docker image {image!r} cannot run the node programs (python3 -c 'import splitbed.app.edge, "
                        f"splitbed.app.server' in it: {reason[0]})", where=where,
                        fix="use an image that contains the project and its dependencies, e.g. the one "
                            "'sudo make image' builds") from None
    labels = (meta.get("Config") or {}).get("Labels") or {}
    return ImageInfo(image, meta["Id"], round(meta.get("Size", 0) / 1e6, 1), found["python"], found["splitbed"],
                     labels.get(SOURCE_LABEL))


@dataclass
class Container:
    """One node's container: created (recorded first, by its unique name), started, removed."""

    name: str
    image: ImageInfo
    mounts: list[tuple[Path, bool]] = field(default_factory=list)  # (path, writable), mounted at the same path
    hostname: str = "splitbed-node"  # the node's name, for a run (at most 63 characters)
    pid: int = 0
    id: str = ""

    def start(self, state: RunState | None) -> Container:
        if state:
            state.container(self.name)  # before creating: a crash in between leaves nothing unrecorded
        volumes = [arg for path, writable in self.mounts
                   for arg in ("-v", f"{path}:{path}:{'rw' if writable else 'ro'}")]
        self.id = docker("create", "--name", self.name, "--network", "none", "--hostname", self.hostname[:63],
                         "--label", "splitbed.run=1", *volumes, "--entrypoint", "sleep", self.image.id,
                         "infinity").stdout.strip()
        docker("start", self.id)
        self.pid = int(docker("inspect", "-f", "{{.State.Pid}}", self.id).stdout.strip())
        if self.pid <= 0:
            raise OSError(f"container {self.name} did not start")
        return self

    def prefix(self) -> list[str]:
        """argv prefix that runs a program inside the container (its root, mounts, network, name)."""
        return ["nsenter", "-t", str(self.pid), "-m", "-u", "-i", "-n", "-r", "-w"]

    def remove(self) -> None:
        docker("rm", "-f", self.id or self.name, check=False)
        self.id, self.pid = "", 0

