"""Container nodes: the image checks, a scenario whose nodes run from the image, and cleanup by name.

The daemon tests need the docker command, a running Docker daemon and the image `sudo make image`
builds; they skip without them, except under SPLITBED_REQUIRE_DOCKER=1 (CI), where that is a failure.
"""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from splitbed.app.breakdown import NAMES
from splitbed.host.containers import DEFAULT_IMAGE
from tests.conftest import REPO, assert_quarter_core_quota

RUN = [sys.executable, str(REPO / "run_scenario.py")]
SCENARIO = """name: {name}
topology: {{kind: single, edges: 1}}
nodes: {{edge: {{device: pi_zero_2w, image: {edge}}}, server: {{device: server, image: {server}}}}}
links:
  uplink: {{rate_mbit: 20, delay_ms: 5}}
  downlink: {{rate_mbit: 20, delay_ms: 5}}
model: fmnist_cnn
dataset: fashion-mnist-test
workload: {{requests: {requests}, warmup: 1, interval_s: {interval}, deadline_s: 5}}
plan: {{name: raw-conv1, type: fixed, split: conv1, codec: raw}}
output: {output}
"""


def scenario(tmp_path, name="ctr", edge=DEFAULT_IMAGE, server=DEFAULT_IMAGE, requests=6, interval=0.0) -> Path:
    path = tmp_path / f"{name}.yaml"
    path.write_text(SCENARIO.format(name=name, edge=edge, server=server, requests=requests, interval=interval,
                                    output=tmp_path / "results"))
    return path


def daemon_answers() -> bool:
    return shutil.which("docker") is not None and subprocess.run(
        ["docker", "version"], capture_output=True).returncode == 0


def without_docker(problem: str):
    """Skip for want of Docker, or fail under SPLITBED_REQUIRE_DOCKER=1 (CI), where Docker is required."""
    if os.environ.get("SPLITBED_REQUIRE_DOCKER"):
        pytest.fail(f"{problem}, and SPLITBED_REQUIRE_DOCKER is set")
    pytest.skip(problem)


@pytest.fixture
def docker_image():
    """The default node image, or without_docker()."""
    if not daemon_answers():
        without_docker("no Docker daemon answers (start one: see README, 'Container nodes')")
    if subprocess.run(["docker", "image", "inspect", DEFAULT_IMAGE], capture_output=True).returncode != 0:
        without_docker(f"image {DEFAULT_IMAGE} is not built (sudo make image)")
    return DEFAULT_IMAGE


def containers_named(prefix: str) -> list[str]:
    done = subprocess.run(["docker", "ps", "-a", "--format", "{{.Names}}"], capture_output=True, text=True)
    return [name for name in done.stdout.split() if name.startswith(prefix)]


def wait_for(predicate, timeout_s: float = 180, what: str = "condition"):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_bad_image_name_is_refused_with_its_line(tmp_path):
    path = scenario(tmp_path, edge="'Not An Image!'")
    done = subprocess.run([*RUN, str(path)], capture_output=True, text=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert f"{path}:3" in done.stderr and "nodes.edge.image" in done.stderr and "not a Docker image name" in done.stderr


@pytest.mark.root
def test_no_daemon_is_a_clear_error_saying_how_to_start_one(tmp_path):
    if shutil.which("docker") is None:
        without_docker("no docker command")
    env = {**os.environ, "DOCKER_HOST": f"unix://{tmp_path}/no-daemon.sock"}
    done = subprocess.run([*RUN, str(scenario(tmp_path))], capture_output=True, text=True, env=env)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "Docker daemon does not answer" in done.stderr and "dockerd" in done.stderr
    assert not (tmp_path / "results").exists()  # nothing started


@pytest.mark.root
def test_missing_and_unsuitable_images_exit_2_before_anything_starts(tmp_path, docker_image):
    done = subprocess.run([*RUN, str(scenario(tmp_path, server="splitbed-no-such-image:0"))],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "'splitbed-no-such-image:0' is not on this machine" in done.stderr
    assert "nodes.server.image" in done.stderr
    # an image without Python (busybox alone) cannot run the node programs
    tar = tmp_path / "busybox.tar"
    with tarfile.open(tar, "w") as archive:
        archive.add("/bin/busybox", "bin/busybox")
        link = tarfile.TarInfo("bin/sh")
        link.type, link.linkname = tarfile.SYMTYPE, "busybox"
        archive.addfile(link)
    image = f"splitbed-test-nopython:{os.getpid()}"
    subprocess.run(["docker", "import", str(tar), image], check=True, capture_output=True)
    try:
        done = subprocess.run([*RUN, str(scenario(tmp_path, edge=image))], capture_output=True, text=True)
    finally:
        subprocess.run(["docker", "rmi", image], capture_output=True)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "cannot run the node programs" in done.stderr and "make image" in done.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.root
@pytest.mark.mininet
def test_nodes_run_from_the_image_with_the_same_rows_and_leave_no_container(tmp_path, docker_image):
    done = subprocess.run([*RUN, str(scenario(tmp_path)), "--quiet"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    run_dir = next((tmp_path / "results").glob("ctr-*"))
    manifest = json.loads((run_dir / "manifest.json").read_text())
    image_id = subprocess.run(["docker", "image", "inspect", "-f", "{{.Id}}", docker_image],
                              capture_output=True, text=True).stdout.strip()
    assert set(manifest["node_images"]) == {"e1", "srv"}
    for node in manifest["node_images"].values():
        assert node["image"] == docker_image and node["image_id"] == image_id
        assert not Path(node["python"]).exists()  # the image's interpreter: the programs ran in its filesystem
    with (run_dir / "requests.csv").open() as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == NAMES  # the same breakdown, column for column
    assert len(rows) == 6 and all(row["status"] == "ok" for row in rows)
    assert manifest["node_cpu_seconds"]["e1"] > 0.5  # the edge's work counted in the node's own group
    assert manifest["edge_cpu_governors"]["e1"]["quota_cores_mean"] < 1.0  # the Pi Zero 2 W's governed quota
    assert containers_named(manifest["node_images"]["e1"]["container"]) == []
    assert containers_named(manifest["node_images"]["srv"]["container"]) == []


@pytest.mark.root
@pytest.mark.mininet
@pytest.mark.slow
@pytest.mark.parametrize("how", ["sigterm", "kill-9"])
def test_containers_are_removed_after_sigterm_and_after_kill_9_with_cleanup(tmp_path, docker_image, how):
    runner = subprocess.Popen([*RUN, str(scenario(tmp_path, requests=2000, interval=0.05)), "--quiet"],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        run_dir = wait_for(lambda: next((tmp_path / "results").glob("ctr-*"), None), what="the run folder")
        wait_for(lambda: len((run_dir / "requests.csv").read_text().splitlines()) > 3, what="rows")
        manifest = json.loads((run_dir / "manifest.json").read_text())
        names = [node["container"] for node in manifest["node_images"].values()]
        assert all(containers_named(name) == [name] for name in names)
        run_id = names[0].rsplit("-", 1)[0].removeprefix("splitbed-")
        groups = list(Path("/sys/fs/cgroup").glob(f"**/splitbed-{run_id}"))
        assert groups
        runner.send_signal(signal.SIGTERM if how == "sigterm" else signal.SIGKILL)
        runner.wait(120)
    finally:
        if runner.poll() is None:
            runner.kill()
    if how == "kill-9":
        assert all(containers_named(name) == [name] for name in names)  # a killed run leaves them ...
        done = subprocess.run([*RUN, "--cleanup"], capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        assert all(f"container {name}" in done.stdout for name in names)  # ... and --cleanup removes them
    else:
        assert runner.returncode != 0 and "Traceback" not in runner.stderr.read()
    assert all(containers_named(name) == [] for name in names)
    assert not any(group.exists() for group in groups)
    for intf in ("e1-eth0", "srv-eth0"):
        assert subprocess.run(["ip", "link", "show", intf], capture_output=True).returncode != 0


@pytest.mark.root
@pytest.mark.timing
def test_the_node_groups_quota_and_memory_limit_hold_for_a_program_in_a_container(docker_image):
    from splitbed.devices.cgroups import CgroupManager
    from splitbed.host.containers import Container, inspect_image

    manager = CgroupManager(f"splitbed-test-{os.getpid()}")
    container = Container(f"splitbed-test-{os.getpid()}", inspect_image(docker_image, "test"))
    try:
        container.start(None)
        python = [*container.prefix(), container.image.python]
        group = manager.create("edge")
        group.set_memory(100 << 20)
        grab = "import sys; b = bytearray(b'x' * ({} << 20)); print('survived')"
        small = group.popen([*python, "-c", grab.format(30)], stdout=-1, text=True)
        assert small.communicate(timeout=60)[0].strip() == "survived" and small.returncode == 0
        big = group.popen([*python, "-c", grab.format(200)], stdout=-1, text=True)
        out, _ = big.communicate(timeout=60)
        assert big.returncode == -9 and "survived" not in out  # the node's memory limit, inside the container
        assert_quarter_core_quota(group, python)  # the node's CPU quota, as for a host node
    finally:
        container.remove()
        manager.remove_all()
    assert containers_named(container.name) == []


def test_a_study_or_set_can_name_an_image_and_a_bad_one_is_refused(tmp_path):
    from splitbed.errors import UserError
    from splitbed.scenarios.schema import load_scenario

    path = tmp_path / "s.yaml"
    path.write_text("plan: {type: fixed, split: conv1, codec: raw}\nmodel: fmnist_cnn\n")
    assert load_scenario(path, {"nodes.edge.image": "my-node:1.2"})["nodes"]["edge"] == {"device": "rpi4",
                                                                                           "image": "my-node:1.2"}
    with pytest.raises(UserError, match="nodes.server.image"):
        load_scenario(path, {"nodes.server.image": "UPPER/Case"})
