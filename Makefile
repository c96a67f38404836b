# Every target sets up first (idempotent, fast when nothing changed). Run as root: sudo make demo
PY := .venv/bin/python

.PHONY: setup demo test check lint results study guest-test photos image
setup:
	bash scripts/setup.sh

demo: setup
	$(PY) run_scenario.py scenarios/default.yaml $(ARGS)

check: setup
	$(PY) run_scenario.py --check

test: setup
	$(PY) -m pytest $(PYTEST_ARGS)

lint: setup
	$(PY) -m ruff check splitbed tests benchmarks run_scenario.py

# Runs the benchmarks (several hours: each AGLOP grid about 1.5, DISC's accuracy on the photo set one) into data/bench/, then renders docs/results.md and the README's headline table from it.
results: setup
	$(PY) scripts/results.py $(ARGS)

# The photo evaluation set, fetched again from Debian's packages (setup fetches it once).
photos: setup
	$(PY) -m splitbed.models.photos fetch

# The default container node image (splitbed-node: Debian minbase + Python + this checkout), cached; needs a Docker daemon.
image: setup
	$(PY) -m splitbed.host.images $(ARGS)

# The example study (2 traces x 2 devices x 2 delays, 3 methods) on this machine, into results/studies/example.
study: setup
	$(PY) run_scenario.py --study studies/example.yaml --quick $(ARGS)

# The netem + cgroup v2 paths in Debian's kernel under QEMU (behaviour only; timing tests skip there).
# pytest's junit XML lands in $(GUEST_OUT)/junit.xml (CI checks its skips: scripts/check_skips.py).
GUEST_TESTS := tests/test_in_guest.py tests/test_capabilities.py tests/test_cleanup.py tests/test_nodes.py tests/test_links.py
GUEST_OUT ?= /var/tmp/splitbed-guest-test
guest-test: setup
	python3 scripts/guest.py --timeout 1200 --out $(GUEST_OUT) -- $(abspath $(PY)) -m pytest -q -rfs -p no:cacheprovider \
		--junitxml=/guest-job/out/junit.xml $(GUEST_TESTS)
