"""AGLOP: joint choice of the partition point and the DISC setting, re-planned as the link changes.

profile.py measures every option (split x codec setting: edge, server and codec times, wire size,
accuracy) into a profile; planner.py picks the option with the lowest predicted latency within an
accuracy budget; online.py estimates the link and re-plans per request; measure.py times options.
May import: codecs, devices, models, network, host, registry, errors.
"""
