import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO

RUN = [sys.executable, str(REPO / "run_scenario.py")]


def test_version_and_help_need_no_root():
    out = subprocess.run([*RUN, "--version"], capture_output=True, text=True, check=True).stdout
    assert out.startswith("splitbed ")
    out = subprocess.run([*RUN, "--help"], capture_output=True, text=True, check=True).stdout
    assert "scenario" in out and "--check" in out


@pytest.mark.root
def test_check_json_matches_this_kernel():
    done = subprocess.run([*RUN, "--check", "--json"], capture_output=True, text=True)
    caps = json.loads(done.stdout)
    for key in ("root", "mininet", "netem", "htb", "cgroup_version", "cpu_controller",
                "memory_controller", "link_backend", "cpu_backend"):
        assert key in caps
    assert caps["root"] is True
    assert caps["htb"] is True
    # The link backend follows the kernel: netem only where the netem qdisc really exists.
    netem_here = subprocess.run(
        ["unshare", "-n", "sh", "-c", "tc qdisc add dev lo root netem delay 1ms"], capture_output=True
    ).returncode == 0
    assert caps["netem"] is netem_here
    assert (caps["link_backend"] == "netem") is netem_here
    assert caps["cpu_backend"] == f"cgroup-v{caps['cgroup_version']}"
    assert done.returncode == (0 if not caps["problems"] else 2)


@pytest.mark.root
def test_non_root_scenario_run_exits_2_naming_root(tmp_path):
    """As nobody, with Debian's python (the venv may live under /root), from a copy nobody can read."""
    system_python = "/usr/bin/python3"
    if not os.path.exists(system_python):
        pytest.skip("no /usr/bin/python3")
    shutil.copy(REPO / "run_scenario.py", tmp_path)
    shutil.copytree(REPO / "splitbed", tmp_path / "splitbed")
    shutil.copytree(REPO / "scenarios", tmp_path / "scenarios")
    os.chmod(tmp_path, 0o755)
    done = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", system_python,
         str(tmp_path / "run_scenario.py"), str(tmp_path / "scenarios" / "default.yaml")],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert done.returncode == 2
    assert "root" in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


BAD_INPUTS = [  # (command after the interpreter, what the one error line must say)
    (["run_scenario.py", "/nonexistent/s.yaml"], "cannot read scenario"),
    (["run_scenario.py", "--no-such-flag"], "unrecognized arguments"),
    (["-m", "splitbed.models", "eval", "fmnist_cnn", "--dataset", "folder:/nonexistent"], "error:"),
    (["-m", "splitbed.models", "eval", "nosuch", "--dataset", "fashion-mnist-test"], "unknown model"),
    (["-m", "splitbed.models", "eval", "fmnist_cnn", "--dataset", "fashion-mnist-test", "--json",
      "/nonexistent/out.json"], "does not exist"),
    (["-m", "splitbed.codecs", "calibrate", "nosuch"], "unknown model"),
    (["-m", "splitbed.aglop", "profile", "--device", "nosuch"], "unknown device"),
    (["-m", "splitbed.analysis", "report", "/nonexistent"], "not found"),
    (["-m", "splitbed.analysis", "compare", "/nonexistent", "--out", "/tmp"], "cannot read"),
    (["benchmarks/codecs.py", "--models", "nosuch"], "no benchmark set-up"),
    (["benchmarks/codecs.py", "--json", "/nonexistent/out.json"], "does not exist"),
    (["benchmarks/aglop.py", "--devices", "nosuch"], "unknown device"),
    (["benchmarks/aglop.py", "--traces", "nosuch"], "not in traces/pensieve"),
    (["benchmarks/devices.py", "--devices", "nosuch"], "not a constrained profile"),
    (["-m", "benchmarks.device_models", "--devices", "rpi5"], "not a profile with a published table"),
    (["-m", "benchmarks.device_models", "--json", "/nonexistent/out.json"], "does not exist"),
    (["benchmarks/disc_headroom.py", "--splits", "nosuch"], "unknown split point"),
    (["benchmarks/disc_rate_distortion.py", "--steps", "x"], "comma-separated numbers"),
    (["benchmarks/fidelity.py", "--json", "/nonexistent/out.json"], "does not exist"),
    (["scripts/results.py", "--only", "nosuch"], "unknown benchmark"),
]


@pytest.mark.parametrize("argv,says", BAD_INPUTS, ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_every_command_meets_bad_input_with_one_error_line_and_exit_2(argv, says):
    done = subprocess.run([sys.executable, *argv], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert "error:" in last and says in last, done.stderr
