"""The emulated network: topologies know which hosts exist, links know how to shape themselves.

topology.py builds Mininet hosts and plain links (single, star, edge-cloud); links.py gives each
direction its rate (HTB, shaping.py), delay, jitter and loss (netem where the kernel has it, else the
receiver-side NFQUEUE stage in delay.py); traces.py reads bandwidth traces into one form and
shaping.py replays them (links.replay, EmulatedNetwork.replay).
May import: host, registry, errors.
"""
