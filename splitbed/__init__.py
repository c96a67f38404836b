"""splitbed: an emulation testbed for CNN partition-offloading.

Subpackages, one job each:
  models      partitionable CNNs and offline datasets: split points, head/tail, profiles, metrics
  topologies  what the kernel can emulate (capability probe); later the Mininet topologies and links
"""

import os

__version__ = "0.1.0"

# Large torch buffers (weights, activations) on transparent huge pages, in this process and every
# process it starts. Without them the same model in two processes ran up to 1.14x apart for the
# processes' whole lives on our VM host (page placement, we think), which no quota can correct:
# `benchmarks/devices.py --process-spread 5` measures it side by side. Set it to 0 to opt out.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
