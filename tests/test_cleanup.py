import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from splitbed.host.systemd import systemd_is_init
from tests.conftest import REPO


@pytest.mark.root
def test_cleanup_after_kill_9_leaves_nothing_of_ours(tmp_path):
    env = {**os.environ, "SPLITBED_STATE_DIR": str(tmp_path), "PYTHONPATH": str(REPO)}
    victim = subprocess.Popen([sys.executable, "tests/make_leftovers.py"], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, text=True)
    made = json.loads(victim.stdout.readline())
    assert all(Path("/run/netns", ns).exists() for ns in made["netns"])
    assert all(Path(d).is_dir() for d in made["cgroups"])
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    # a killed run leaves its children and everything else behind ...
    assert all(Path(f"/proc/{pid}").exists() for pid in made["pids"])
    done = subprocess.run([sys.executable, "run_scenario.py", "--cleanup"], cwd=REPO, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    # ... and --cleanup removes exactly that: namespaces, cgroups, processes, the state file
    assert not any(Path("/run/netns", ns).exists() for ns in made["netns"])
    assert not any(Path(d).exists() for d in made["cgroups"])
    parents = {Path(d).parent for d in made["cgroups"]}  # the run's own parent (under systemd: its scope)
    for _ in range(100):  # systemd removes an emptied scope a moment after its last task left
        if not any(p.exists() for p in parents):
            break
        time.sleep(0.05)
    assert not any(p.exists() for p in parents)
    for pid in made["pids"]:  # orphans now, reaped by init: gone, or a zombie for an instant
        stat = Path(f"/proc/{pid}/stat")
        assert not stat.exists() or stat.read_text().split(") ")[1].startswith("Z")
    assert not Path(made["state"]).exists()
    # under systemd the emptied scope may take the node groups with it before --cleanup gets to them
    assert "netns" in done.stdout and ("cgroup" in done.stdout or systemd_is_init())


@pytest.mark.root
def test_cleanup_leaves_live_runs_alone(tmp_path):
    from splitbed.host.state import RunState, cleanup_dead_runs

    state = RunState("alive", tmp_path)
    state.netns("sb-never-created")
    assert cleanup_dead_runs(tmp_path) == []
    assert state.path.exists()
    assert state.cleanup() == []  # recorded but never made: nothing to remove, no error
