"""Emulated devices: what a node is and how it is made as slow as one.

devices.yaml holds the device profiles (published reference latencies with sources) and catalog.py
reads them; architectures.py builds the networks of their published tables for timing; cgroups.py limits a node's processes (CPU quota, cpuset, memory) on cgroup v1 or v2;
calibration.py fits the CPU quota so our reference workload runs as long as on the device;
governor.py holds a node at that speed while it runs; workload.py and child.py are the worker
processes started inside the node.
May import: models, host, errors.
"""
