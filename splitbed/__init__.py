"""splitbed: an emulation testbed for CNN partition-offloading.

Division of labour, bottom to top (a package imports only packages on floors below its own; the
floors are listed in splitbed.layers and a test enforces them):
  errors, layers  typed user errors; the floor plan itself
  host        what this machine can do (capability probe), run state + tracked cleanup, namespaces
  network     links, shaping, the delay stage, traces and their replay, topologies, link fidelity
  models      partitionable CNNs and offline datasets: split points, head/tail, profiles, metrics
  devices     device profiles, cgroups v1/v2, calibration, the CPU governor
  codecs      feature codecs behind one interface and one self-describing wire format
  aglop       latency/accuracy model from profiles, the search, online re-planning
  app         the split application on the nodes: edge and server programs, protocol, row schema
  analysis    summaries, plots, run comparison, packet captures
  scenarios   the scenario schema and loader, one run's orchestration
  cli         the entry point behind run_scenario.py
"""

import os

__version__ = "0.1.0"

# Large torch buffers (weights, activations) on transparent huge pages, in this process and every
# process it starts. Without them the same model in two processes ran up to 1.14x apart for the
# processes' whole lives on our VM host (page placement, we think), which no quota can correct:
# `benchmarks/devices.py --process-spread 5` measures it side by side. Set it to 0 to opt out.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

# Threads waiting at the end of a parallel section sleep instead of spinning. Spinning burns a node's
# CPU quota on nothing, and inside a cgroup v1 cpu group on our VM host two spinning torch threads
# took 2.3 s for a 40 ms inference (tests/test_nodes.py: an idle two-thread node uses no CPU).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
