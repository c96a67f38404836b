#!/usr/bin/env python3
"""Run a command in a guest kernel: Debian's linux-image (netem, pure cgroup v2) under QEMU, on this
machine's own root filesystem (read-only over virtio-9p, with a tmpfs overlay on top).

    sudo python3 scripts/guest.py [--memory MB] [--timeout S] -- COMMAND [ARG ...]
    sudo make guest-test

Prints the command's output and exits with its exit status (124 when the guest ran out of time).
With --out DIR, what the command writes under /guest-job/out (e.g. pytest's --junitxml) is copied
to DIR on this machine: everything else the guest writes lives in its tmpfs and goes with it.
The kernel package comes from Debian's archive (`apt-get download`), nothing else is downloaded;
kernel, modules and initramfs are cached under ~/.cache/splitbed/guest. Needs qemu-system-x86,
busybox-static and cpio (scripts/setup.sh installs them). QEMU runs with TCG (`-accel tcg -cpu
max`: nested KVM hangs on these machines, and torch needs the host's instruction set), so the guest
is good for behaviour, not timing: SPLITBED_GUEST=1 is set inside, and timing tests skip there.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

CACHE = Path(os.environ.get("SPLITBED_CACHE", Path.home() / ".cache" / "splitbed")) / "guest"
MODULES = ["virtio_ring", "virtio", "virtio_pci_legacy_dev", "virtio_pci_modern_dev", "virtio_pci", "9pnet",
           "9pnet_virtio", "netfs", "fscache", "9p", "overlay"]
NINEP = "trans=virtio,version=9p2000.L,msize=524288"

STAGE1 = """#!/bin/busybox sh
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in {modules}; do insmod /modules/$m.ko || echo "guest: insmod $m failed"; done
mkdir -p /lower /rw /newroot
mount -t 9p -o {ninep},ro hostroot /lower || echo "guest: no host root"
mount -t tmpfs -o size=70% tmpfs /rw && mkdir -p /rw/upper /rw/work
mount -t overlay overlay -o lowerdir=/lower,upperdir=/rw/upper,workdir=/rw/work /newroot || echo "guest: no overlay"
mkdir -p /newroot/guest-job
mount -t 9p -o {ninep} job /newroot/guest-job
mkdir -p /newroot/lib/modules
mount -t 9p -o {ninep},ro modules /newroot/lib/modules
umount /proc /sys /dev 2>/dev/null
exec switch_root /newroot /bin/bash /guest-job/stage2.sh
"""

STAGE2 = """set +e
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm; mount -t devpts devpts /dev/pts; mount -t tmpfs tmpfs /dev/shm
mount -t cgroup2 cgroup2 /sys/fs/cgroup
mount -t tmpfs tmpfs /run; mount -t tmpfs tmpfs /tmp
hostname splitbed-guest; ip link set lo up
export HOME=/root PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin SPLITBED_GUEST=1
export PYTHONDONTWRITEBYTECODE=1 {env}
cd {cwd}
{command} > /guest-job/output 2>&1
echo $? > /guest-job/exit
sync
echo o > /proc/sysrq-trigger
sleep 30
"""


STAGE2_SYSTEMD = """set +e
mount -t proc proc /proc
: > /etc/fstab  # the host's mounts are not the guest's
mkdir -p /etc/systemd/system
cat > /etc/systemd/system/splitbed-job.target <<'UNIT'
[Unit]
Description=splitbed guest job
Requires=basic.target splitbed-job.service
After=basic.target
AllowIsolate=yes
UNIT
cat > /etc/systemd/system/splitbed-job.service <<'UNIT'
[Unit]
Description=splitbed guest job, run from a root login session
After=basic.target dbus.socket systemd-logind.service
Wants=dbus.socket systemd-logind.service
[Service]
Type=oneshot
ExecStart=/bin/bash /guest-job/job.sh
ExecStopPost=/bin/systemctl --no-block poweroff --force
UNIT
cat > /guest-job/job.sh <<'JOB'
runuser -l root -c {login} > /guest-job/output 2>&1
echo $? > /guest-job/exit
sync
JOB
umount /proc
exec /lib/systemd/systemd --unit=splitbed-job.target --log-level=warning
"""


def run(argv: list[str], **kw) -> subprocess.CompletedProcess:
    return subprocess.run(argv, check=True, **kw)


def kernel() -> Path:
    """The newest linux-image-*-amd64 of Debian's archive, unpacked (with modules.dep) in the cache."""
    depends = run(["apt-cache", "depends", "linux-image-amd64"], capture_output=True, text=True).stdout
    package = next((line.split()[-1] for line in depends.splitlines() if "Depends: linux-image-" in line), None)
    if package is None:
        sys.exit("error: apt-cache knows no linux-image-amd64: run 'apt-get update' first")
    root = CACHE / package
    if not (root / "ready").exists():
        shutil.rmtree(root, ignore_errors=True)
        root.mkdir(parents=True)
        run(["apt-get", "download", package], cwd=root, capture_output=True)
        deb = next(root.glob("*.deb"))
        run(["dpkg-deb", "-x", str(deb), str(root / "tree")])
        deb.unlink()
        version = next((root / "tree" / "lib" / "modules").iterdir()).name
        run(["depmod", "-b", str(root / "tree"), version])
        (root / "ready").write_text(version + "\n")
    return root


def initramfs(root: Path) -> Path:
    version = (root / "ready").read_text().strip()
    init = STAGE1.format(modules=" ".join(MODULES), ninep=NINEP)
    image = root / f"initrd-{hashlib.sha256(init.encode()).hexdigest()[:12]}.img"
    if image.exists():
        return image
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp)
        for folder in ("bin", "proc", "sys", "dev", "modules"):
            (tree / folder).mkdir()
        shutil.copy(shutil.which("busybox"), tree / "bin" / "busybox")
        found = {p.stem: p for p in (root / "tree" / "lib" / "modules" / version).rglob("*.ko")}
        for name in MODULES:
            shutil.copy(found[name], tree / "modules" / f"{name}.ko")
        (tree / "init").write_text(init)
        (tree / "init").chmod(0o755)
        listing = run(["find", "."], cwd=tree, capture_output=True).stdout
        packed = run(["cpio", "-o", "-H", "newc", "--quiet"], cwd=tree, input=listing, capture_output=True).stdout
        run(["gzip", "-1"], input=packed, stdout=image.open("wb"))
    return image


def stage2(command: list[str], init: str) -> str:
    """The guest's second stage: the command straight from a shell as PID 1, or from a root login session
    (runuser -l: PAM and pam_systemd give it a session scope) with systemd as PID 1."""
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in os.environ.items()
                   if k.startswith("SPLITBED_") and k != "SPLITBED_GUEST")
    if init == "shell":
        return STAGE2.format(env=env, cwd=shlex.quote(os.getcwd()), command=shlex.join(command))
    login = (f"cd {shlex.quote(os.getcwd())} && export SPLITBED_GUEST=1 PYTHONDONTWRITEBYTECODE=1 {env} && "
             f"exec {shlex.join(command)}")
    return STAGE2_SYSTEMD.format(login=shlex.quote(login))


def boot(command: list[str], memory_mb: int, timeout_s: float, cpus: int, init: str = "systemd",
         out: Path | None = None) -> int:
    root = kernel()
    version = (root / "ready").read_text().strip()
    image = initramfs(root)
    with tempfile.TemporaryDirectory(prefix="splitbed-guest-") as job:
        (Path(job) / "stage2.sh").write_text(stage2(command, init))
        (Path(job) / "out").mkdir()
        argv = ["qemu-system-x86_64", "-accel", "tcg,thread=multi", "-cpu", "max", "-smp", str(cpus),
                "-m", str(memory_mb), "-nographic", "-no-reboot", "-net", "none",
                "-kernel", str(root / "tree" / "boot" / f"vmlinuz-{version}"), "-initrd", str(image),
                "-append", "console=ttyS0 quiet loglevel=3 panic=-1 rdinit=/init",
                "-fsdev", "local,id=hostroot,path=/,security_model=passthrough,readonly=on",
                "-device", "virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot",
                "-fsdev", f"local,id=job,path={job},security_model=passthrough",
                "-device", "virtio-9p-pci,fsdev=job,mount_tag=job",
                "-fsdev", f"local,id=modules,path={root / 'tree' / 'lib' / 'modules'},security_model=passthrough,"
                          "readonly=on",
                "-device", "virtio-9p-pci,fsdev=modules,mount_tag=modules"]
        try:
            console = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s)
        except subprocess.TimeoutExpired:
            print(f"guest: no answer within {timeout_s:.0f} s", file=sys.stderr)
            return 124
        finally:
            if out is not None:
                shutil.copytree(Path(job) / "out", out, dirs_exist_ok=True)
        output = Path(job) / "output"
        if output.exists():
            sys.stdout.write(output.read_text(errors="replace"))
        status = Path(job) / "exit"
        if not status.exists():
            print("guest: the command did not finish; console:\n" + console.stdout[-3000:], file=sys.stderr)
            return 125
        return int(status.read_text().strip() or 125)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--memory", type=int, default=4096, help="guest memory in MB (default 4096)")
    parser.add_argument("--cpus", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=900, help="seconds for the whole guest (default 900)")
    parser.add_argument("--init", choices=["systemd", "shell"], default="systemd",
                        help="PID 1 of the guest: systemd with the command in a root login session (default), "
                             "or a plain shell")
    parser.add_argument("--out", type=Path, help="copy what the command writes under /guest-job/out to this folder")
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args()
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give a command after --")
    if os.geteuid() != 0:
        print("error: the guest shares / with passthrough permissions: run as root", file=sys.stderr)
        return 2
    for tool in ("qemu-system-x86_64", "busybox", "cpio", "depmod"):
        if shutil.which(tool) is None:
            print(f"error: {tool} is missing: run 'sudo make setup'", file=sys.stderr)
            return 2
    return boot(command, args.memory, args.timeout, args.cpus, args.init, args.out)


if __name__ == "__main__":
    sys.exit(main())
