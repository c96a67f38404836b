"""Results: summaries, plots and comparisons of runs, read from their requests.csv.

summary.py computes per-method statistics, plots.py draws them, report.py writes a run's summary and
plots (and compares runs), capture.py joins packet captures to requests. The CSV's columns are
defined once in splitbed.app.breakdown, below this package, because the edge writes them.
May import: app, errors.
"""
