"""The harness for link tests and benchmarks, apart from the runtime: netns.py makes throw-away
namespaces and veth pairs (removed by name), bulk.py is the transfer program run inside them, and
fidelity.py measures a shaped link (built by the runtime's own LinkDirection) against its
configuration; results_page.py is what each benchmark declares about its results (a Page in its
PAGES) for scripts/results.py to render. No runtime package imports it (it sits on the top floor of
splitbed.layers).
May import: network, host, errors.
"""
