"""Scenario inputs: bandwidth traces in their published formats, read into one normalised form.

traces.py reads Mahimahi packet-delivery files, Pensieve-style `time_s Mbit/s` series and CSV logs
into a Trace (piecewise-constant rate over time) with loop, scale, offset, resample and floor/outage
options. (The scenario schema and the run orchestration will live here too.)
"""
