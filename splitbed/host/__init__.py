"""Host facilities: what this machine can do, and what a run has created on it.

capabilities.py probes the kernel (netem or not, HTB, bridges, NFQUEUE, cgroup v1/v2) by trying
each thing in a throw-away namespace; state.py writes down every namespace, link, qdisc, rule,
cgroup and process a run creates so exactly those are removed, also after Ctrl-C or kill -9;
netns.py is a light namespace + veth harness for link tests and benchmarks.
May import: errors.
"""
