#!/usr/bin/env python3
"""CI's skip check: every test that pytest skipped must be on the allow-list for this run, else CI fails.

A skipped test is a test CI claims to run and does not: a Docker daemon that did not start, a run
without root, a guest test left on the host. This reads pytest's junit XML (--junitxml), prints
every skip with its reason, and exits 1 on a skip the allow-list does not name for this run, or on
an XML without tests; 2 on an unreadable allow-list. Standard library only.

    python3 scripts/check_skips.py --run host|guest JUNIT.xml [--allowed tests/allowed_skips.txt]

Allow-list lines: `RUN TEST-ID-GLOB [REASON-GLOB] # why`, RUN `host` (make test) or `guest` (make
guest-test); the globs are fnmatch patterns on the test id (tests/test_x.py::test_y[param]) and on
the skip's reason; every line must say why after `#`.
"""

from __future__ import annotations

import argparse
import sys
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass
from fnmatch import fnmatchcase
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RUNS = ("host", "guest")


@dataclass
class Allowed:
    run: str
    test: str
    reason: str
    why: str
    where: str

    def covers(self, run: str, test: str, reason: str) -> bool:
        return self.run == run and fnmatchcase(test, self.test) and fnmatchcase(reason, self.reason)


def read_allowed(path: Path) -> list[Allowed]:
    """The allow-list's entries; SystemExit(2) naming file:line for a line without a run, a test or a why."""
    entries = []
    for number, line in enumerate(path.read_text().splitlines(), 1):
        where = f"{path.name}:{number}"
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        entry, _, why = line.partition(" #")
        fields = entry.split(None, 2)
        if len(fields) < 2 or fields[0] not in RUNS or not why.strip():
            print(f"{where}: expected 'RUN TEST-ID-GLOB [REASON-GLOB] # why' with RUN one of {', '.join(RUNS)}, "
                  f"got {line.strip()!r}", file=sys.stderr)
            raise SystemExit(2)
        entries.append(Allowed(fields[0], fields[1], fields[2].strip() if len(fields) > 2 else "*", why.strip(), where))
    return entries


def test_id(classname: str, name: str) -> str:
    """pytest's node id from junit's dotted classname: the longest prefix that is a file, then classes."""
    parts = classname.split(".")
    for cut in range(len(parts), 0, -1):
        path = "/".join(parts[:cut]) + ".py"
        if (REPO / path).is_file():
            return "::".join([path, *parts[cut:], name])
    return f"{classname}::{name}"


def skips(junit: Path) -> tuple[int, list[tuple[str, str]]]:
    """(number of test cases, [(test id, reason)] of the skipped ones, xfails included)."""
    cases = ElementTree.parse(junit).getroot().iter("testcase")
    count, skipped = 0, []
    for case in cases:
        count += 1
        for skip in case.iter("skipped"):
            skipped.append((test_id(case.get("classname", ""), case.get("name", "")), skip.get("message", "")))
    return count, skipped


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("junit", type=Path, help="pytest's junit XML (--junitxml)")
    parser.add_argument("--run", choices=RUNS, required=True, help="which CI run wrote it")
    parser.add_argument("--allowed", type=Path, default=REPO / "tests" / "allowed_skips.txt")
    args = parser.parse_args()
    allowed = read_allowed(args.allowed)
    if not args.junit.is_file():
        print(f"skip check: no junit XML at {args.junit}: the {args.run} tests did not run", file=sys.stderr)
        return 1
    count, skipped = skips(args.junit)
    unexpected = 0
    for test, reason in skipped:
        entry = next((a for a in allowed if a.covers(args.run, test, reason)), None)
        if entry:
            print(f"skipped (allowed, {entry.where}): {test}: {reason}")
        else:
            unexpected += 1
            print(f"SKIPPED, NOT ALLOWED in the {args.run} run: {test}: {reason}")
    print(f"skip check ({args.run}): {count} tests, {len(skipped)} skipped, {unexpected} not on {args.allowed.name}")
    if count == 0:
        print("skip check: the junit XML holds no test", file=sys.stderr)
        return 1
    return 1 if unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
