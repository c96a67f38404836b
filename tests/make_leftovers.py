"""A run that creates one of everything, records it, says 'ready' (with JSON of what it made) and
waits to be killed: the victim for the --cleanup test."""

import json
import os
import sys
import time

from splitbed.devices.cgroups import CgroupManager
from splitbed.host.state import RunState
from splitbed.network.delay import DelayStage
from splitbed.network.shaping import HtbShaper
from splitbed.testing.netns import NetnsSet

tag = f"{os.getpid()}"
state = RunState(f"leftovers-{tag}")
nets = NetnsSet(state=state)
a, b = nets.add(f"sbKa-{tag}"), nets.add(f"sbKb-{tag}")
nets.veth(a, "k0", "10.252.0.1", b, "k1", "10.252.0.2")
HtbShaper(["ip", "netns", "exec", a], "k0", 1e6, state=state, netns=a).setup()
delay = DelayStage(["ip", "netns", "exec", b], "k1", 3, 10.0, loss_pct=1, state=state, netns=b)
delay.setup()
cgroups = CgroupManager(f"splitbed-leftovers-{tag}", state=state)
group = cgroups.create("edge")
group.set_memory(64 << 20)
sleeper = group.popen([sys.executable, "-c", "import time; time.sleep(600)"])
state.process(sleeper.pid)
print(json.dumps({"netns": [a, b], "cgroups": [str(d) for d in group.dirs.values()],
                  "pids": [sleeper.pid, delay.process.pid], "state": str(state.path)}), flush=True)
time.sleep(600)
