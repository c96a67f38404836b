"""Emulated devices: what a node is and how it is made as slow as one.

devices.yaml holds the device profiles (published reference latencies with sources), devices.py
reads them, cgroups.py limits a node's processes (CPU quota, cpuset, memory) on cgroup v1 or v2,
calibration.py fits the CPU quota so our reference workload runs as long as on the device, and
workload.py is that workload as a worker process started inside the node.
"""
