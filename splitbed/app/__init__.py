"""The split application that runs on the nodes: the edge sends, the server answers.

edge.py runs the head, encodes, sends and writes one breakdown row per request (breakdown.py holds
the row's columns, read by analysis too); server.py decodes, runs the tail and replies; protocol.py
is the length-prefixed, versioned message format between them; plans.py orders a scenario's plans;
footprint.py predicts the edge program's memory before a run.
May import: aglop, codecs, devices, models, network, host, errors.
"""
