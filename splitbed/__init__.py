"""splitbed: an emulation testbed for CNN partition-offloading.

Subpackages, one job each:
  models      partitionable CNNs and offline datasets: split points, head/tail, profiles, metrics
  topologies  what the kernel can emulate (capability probe); later the Mininet topologies and links
"""

__version__ = "0.1.0"
