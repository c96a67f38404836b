"""`make image`: the default node image, built from Debian's packages and the Python packages only.

Two layers, each cached by a digest of what goes into it:
  base  splitbed-base:DIGEST  debootstrap --variant=minbase of Debian bookworm with Python, and a venv at
        /opt/splitbed/venv holding the project's pinned dependencies (wheels resolved by this machine's pip,
        so its index settings apply, then installed offline in the chroot); rebuilt when pyproject.toml
        changes.
  node  splitbed-node         the base plus this checkout of the project (labelled with a digest of its
        sources, so a run can tell when the image is older than the code); rebuilt when a source changes.
No registry is needed: the base is `docker import`ed from the directory debootstrap made.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import tomllib

from splitbed.host.containers import DEFAULT_IMAGE, SOURCE_LABEL, docker

REPO = Path(__file__).resolve().parents[2]
SUITE = "bookworm"
MIRROR = os.environ.get("SPLITBED_DEBIAN_MIRROR", "http://deb.debian.org/debian")
# python3-venv for the venv; libnetfilter-queue1 for the delay stage's binding; ca-certificates for pip.
BASE_PACKAGES = ["python3", "python3-venv", "ca-certificates", "libnetfilter-queue1"]
VENV = "/opt/splitbed/venv"
IMAGE_PATH = f"{VENV}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
EXTRA_NO_DEPS = ["foolbox==3.3.4"]  # as scripts/setup.sh: only its folder of sample photos is read
SOURCE_SUFFIXES = {".py", ".yaml", ".pt", ".json"}


def requirements() -> list[str]:
    return tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]


def digest(parts: list[bytes]) -> str:
    h = hashlib.sha256()
    for part in parts:
        h.update(len(part).to_bytes(8, "big") + part)
    return h.hexdigest()[:16]


def base_digest() -> str:
    return digest([SUITE.encode(), MIRROR.encode(), json.dumps(BASE_PACKAGES + requirements() + EXTRA_NO_DEPS).encode(),
                   VENV.encode()])


def source_files() -> list[Path]:
    files = [REPO / "pyproject.toml", REPO / "README.md"]
    files += sorted(p for p in (REPO / "splitbed").rglob("*")
                    if p.is_file() and p.suffix in SOURCE_SUFFIXES and "__pycache__" not in p.parts)
    return files


def source_digest() -> str:
    """What a node image built from this checkout is labelled with."""
    return digest([str(p.relative_to(REPO)).encode() + b"\0" + p.read_bytes() for p in source_files()])


def image_label(image: str) -> str | None:
    done = docker("image", "inspect", "-f", f'{{{{index .Config.Labels "{SOURCE_LABEL}"}}}}', image, check=False)
    return done.stdout.strip() if done.returncode == 0 else None


def image_id(image: str) -> str:
    """The image's id, or "" when this daemon has no such image."""
    done = docker("image", "inspect", "-f", "{{.Id}}", image, check=False)
    return done.stdout.strip() if done.returncode == 0 else ""


def run(argv: list[str], **kwargs) -> None:
    subprocess.run(argv, check=True, **kwargs)


def chroot(root: Path, *argv: str) -> None:
    """A command in the image's root, without this machine's pip settings (they name paths not there)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PIP_")}
    run(["chroot", str(root), *argv], env={**env, "PIP_CONFIG_FILE": "/dev/null"})


def build_base(tag: str, say) -> None:
    """debootstrap, the dependencies' wheels from this machine's pip, the venv in the chroot, docker import."""
    with tempfile.TemporaryDirectory(prefix="splitbed-image-", dir="/var/tmp") as work:
        root, wheels = Path(work, "rootfs"), Path(work, "wheels")
        say(f"debootstrap --variant=minbase {SUITE} ({', '.join(BASE_PACKAGES)}) from {MIRROR}")
        run(["debootstrap", "--variant=minbase", f"--include={','.join(BASE_PACKAGES)}", SUITE, str(root), MIRROR],
            stdout=subprocess.DEVNULL)
        say("wheels of the pinned dependencies (this machine's pip and its index settings)")
        run([sys.executable, "-m", "pip", "wheel", "-q", "-w", str(wheels), *requirements()])
        run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "-d", str(wheels), *EXTRA_NO_DEPS])
        shutil.copytree(wheels, root / "tmp" / "wheels")
        proc = root / "proc"
        run(["mount", "-t", "proc", "proc", str(proc)])
        try:
            say(f"venv at {VENV}, installed offline from those wheels")
            chroot(root, "python3", "-m", "venv", VENV)
            pip = [f"{VENV}/bin/pip", "install", "-q", "--no-index", "--find-links", "/tmp/wheels"]
            chroot(root, *pip, *requirements())
            chroot(root, *pip, "--no-deps", *EXTRA_NO_DEPS)
        finally:
            run(["umount", str(proc)])
        shutil.rmtree(root / "tmp" / "wheels")
        for cache in ("var/cache/apt/archives", "var/lib/apt/lists", "root/.cache"):
            shutil.rmtree(root / cache, ignore_errors=True)
        say(f"docker import -> {tag}")
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        try:
            run(["docker", "import", "--change", f"ENV PATH={IMAGE_PATH}", "-", tag], stdin=tar.stdout,
                stdout=subprocess.DEVNULL)
        finally:
            tar.stdout.close()
            if tar.wait() != 0:
                raise OSError("tar of the image's root failed")


def build_node(base: str, image: str, source: str) -> None:
    """The base plus this checkout, installed without network in a container, then committed."""
    name = f"splitbed-image-build-{os.getpid()}"
    install = ("pip install -q --no-deps --no-build-isolation --no-index /opt/splitbed/src && "
               "python3 -c 'import splitbed.app.edge, splitbed.app.server' && rm -rf /opt/splitbed/src")
    with tempfile.TemporaryDirectory(prefix="splitbed-src-") as context:
        for path in source_files():
            target = Path(context, path.relative_to(REPO))
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
        docker("create", "--name", name, "--network", "none", base, "sh", "-c", install)
        try:
            docker("cp", f"{context}/.", f"{name}:/opt/splitbed/src")
            started = subprocess.run(["docker", "start", "-a", name], capture_output=True, text=True)
            if started.returncode != 0:
                raise OSError(f"installing the project in the image failed: {started.stderr.strip()[-2000:]}")
            docker("commit", "--change", f"LABEL {SOURCE_LABEL}={source}", "--change", 'CMD ["python3"]',
                   name, image, timeout=600)
        finally:
            docker("rm", "-f", name, check=False)


def build(image: str = DEFAULT_IMAGE, force: bool = False, say=print) -> dict:
    """Build what is missing or stale; returns the timings and the image's size."""
    base, source = f"splitbed-base:{base_digest()}", source_digest()
    report = {"image": image, "base": base, "source": source, "base_build_s": None, "node_build_s": None}
    replaced = []  # ids of the images this build replaces: removed by id at the end (kept if in use)
    if force or not image_id(base):
        replaced.append(image_id(base))
        started = time.monotonic()
        build_base(base, say)
        report["base_build_s"] = round(time.monotonic() - started, 1)
    if force or image_label(image) != source:
        replaced.insert(0, image_id(image))  # the node image first: it is a child of its base
        started = time.monotonic()
        say(f"{image}: the project ({source}) on {base}")
        build_node(base, image, source)
        report["node_build_s"] = round(time.monotonic() - started, 1)
    for old in filter(None, replaced):
        if old not in (image_id(image), image_id(base)):
            docker("rmi", old, check=False)
    meta = json.loads(docker("image", "inspect", image).stdout)[0]
    base_meta = json.loads(docker("image", "inspect", base).stdout)[0]
    report.update(image_id=meta["Id"], size_mb=round(meta["Size"] / 1e6, 1), base_size_mb=round(base_meta["Size"] / 1e6, 1))
    return report


def main(argv: list[str] | None = None) -> int:
    from splitbed.errors import UserError, run_reporting_user_errors
    from splitbed.host.containers import check_daemon, check_image_name

    parser = argparse.ArgumentParser(prog="python -m splitbed.host.images", description=__doc__.splitlines()[0])
    parser.add_argument("--image", default=DEFAULT_IMAGE, help="name (and tag) of the node image to build")
    parser.add_argument("--force", action="store_true", help="rebuild both layers even when up to date")
    parser.add_argument("--json", type=Path, help="also write the timings and size here")
    args = parser.parse_args(argv)

    def body() -> int:
        check_image_name(args.image, "--image")
        if os.geteuid() != 0:
            raise UserError("building the image needs root (debootstrap, chroot)", fix="sudo make image")
        if shutil.which("debootstrap") is None:
            raise UserError("debootstrap is not installed", fix="sudo apt install debootstrap (sudo make setup does)")
        check_daemon()
        report = build(args.image, args.force)
        built = [f"base {report['base_build_s']} s" if report["base_build_s"] is not None else "base cached",
                 f"node {report['node_build_s']} s" if report["node_build_s"] is not None else "node up to date"]
        print(f"{report['image']} {report['image_id'][7:19]}: {report['size_mb']} MB ({', '.join(built)})")
        if args.json:
            args.json.write_text(json.dumps(report, indent=1) + "\n")
        return 0

    return run_reporting_user_errors(body)


if __name__ == "__main__":
    sys.exit(main())
