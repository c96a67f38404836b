from splitbed.host.capabilities import choose_link_backend, probe_cgroups

V1_MOUNTS = """\
cgroup /sys/fs/cgroup/cpu cgroup rw,relatime,cpu 0 0
cgroup /sys/fs/cgroup/cpuacct cgroup rw,relatime,cpuacct 0 0
cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
"""


def test_cgroup_v1_preferred_where_it_has_cpu(tmp_path):
    mounts = tmp_path / "mounts"
    mounts.write_text(V1_MOUNTS)
    info = probe_cgroups(str(mounts))
    assert info.version == 1 and info.cpu_controller and info.memory_controller
    assert info.v1_mounts["cpu"] == "/sys/fs/cgroup/cpu"


def test_cgroup_v2_only_machine(tmp_path):
    root = tmp_path / "cg2"
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    mounts = tmp_path / "mounts"
    mounts.write_text(f"cgroup2 {root} cgroup2 rw,nosuid 0 0\n")
    info = probe_cgroups(str(mounts))
    assert info.version == 2 and info.cpu_controller and info.memory_controller


def test_v2_without_cpu_controller_is_unusable(tmp_path):
    root = tmp_path / "cg2"
    root.mkdir()
    (root / "cgroup.controllers").write_text("pids\n")
    mounts = tmp_path / "mounts"
    mounts.write_text(f"cgroup2 {root} cgroup2 rw 0 0\n")
    info = probe_cgroups(str(mounts))
    assert info.version is None and not info.cpu_controller


def test_link_backend_choice():
    assert choose_link_backend(True, True, True) == "netem"
    assert choose_link_backend(False, True, True) == "htb+nfqueue"
    assert choose_link_backend(False, False, True) is None
