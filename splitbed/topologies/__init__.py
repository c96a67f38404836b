"""The emulated network.

The capability probe finds out what this kernel can emulate (netem or not, HTB, bridges, cgroups) and
from that which link and CPU backends a run uses; the topologies and link shapers build on its answer
rather than assuming, because Mininet's TCLink silently drops what the kernel lacks.
"""
