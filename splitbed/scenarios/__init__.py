"""Scenarios: the file a user writes, and one run of it from network to summary.

schema.py validates a scenario file (file:line:field for every problem) and applies defaults; run.py
builds the network and nodes, calibrates, starts the server and edges, replays traces, and writes the
run folder (manifest, requests.csv, summary, plots), removing everything it created at the end.
May import: analysis, app, aglop, codecs, devices, models, network, host, errors.
"""
