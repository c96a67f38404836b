"""Host facilities: what this machine can do, and what a run has created on it.

capabilities.py probes the kernel (netem or not, HTB, bridges, NFQUEUE, cgroup v1/v2) by trying
each thing in a throw-away namespace; state.py writes down every namespace, link, qdisc, rule,
cgroup and process a run creates so exactly those are removed, also after Ctrl-C or kill -9;
systemd.py asks systemd
(where it is PID 1) for a delegated cgroup v2 scope to hold a run's node groups; containers.py and
images.py run nodes from Docker images and build the default one; cache.py says where caches live;
memory.py reads a process's resident memory and holds caches bounded in bytes.
May import: errors.
"""
