"""The benchmarks: each one a program (python -m benchmarks.NAME) that declares its results pages in PAGES."""
