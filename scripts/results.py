#!/usr/bin/env python3
"""Regenerate docs/results.md and the README's headline table from the benchmarks' committed summaries.

    sudo .venv/bin/python scripts/results.py                    # run every benchmark, then write
    sudo .venv/bin/python scripts/results.py --only fidelity    # rerun some, keep the others' JSON
    python scripts/results.py --only aglop_report --from DIR --commit C   # judge a study run at commit C
    python scripts/results.py --render                          # only rewrite from data/bench

Each benchmark writes data/bench/NAME.json and NAME.meta.json (command, full commit, clean, date,
machine, seconds). data/bench is tracked, so the pages are a function of files in the repository:
every number in them comes from a committed summary whose meta names the command and commit that
repeat it. A benchmark with no summary has no README row, and its docs/results.md section says it
is not measured. A result measured on a tree with uncommitted changes (meta "clean": false) is
labelled so in docs/results.md and is refused for the README unless --allow-dirty. Per-request run
folders stay in the ignored results/. `make results` calls this script.

This script knows no benchmark by name: each benchmarks/NAME.py declares its pages in a module-level
PAGES (splitbed.testing.results_page.Page: the command that writes its summary, its section here, its
README rows), and every module in benchmarks/ is imported to collect them.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if sys.path[0] != str(REPO):
    sys.path.insert(0, str(REPO))  # this clone's benchmarks and splitbed, not another clone's venv's

from splitbed.testing.results_page import Page, table  # noqa: E402

DATA_DIR = REPO / "data" / "bench"  # the one place that knows where the summaries live
RESULTS_MD = REPO / "docs" / "results.md"
README = REPO / "README.md"
BEGIN, END = "<!-- results:begin (written by scripts/results.py) -->", "<!-- results:end -->"


def discover_pages() -> dict[str, Page]:
    """Every page the benchmarks declare (each benchmarks/NAME.py's PAGES), by name, in docs/results.md's
    order; a name declared twice is an error, not a silent overwrite."""
    pages: dict[str, Page] = {}
    for path in sorted((REPO / "benchmarks").glob("*.py")):
        if path.stem == "__init__":
            continue
        for page in importlib.import_module(f"benchmarks.{path.stem}").PAGES:
            if page.name in pages:
                raise ValueError(f"benchmarks/{path.name}: page {page.name!r} is declared twice")
            pages[page.name] = page
    return dict(sorted(pages.items(), key=lambda item: item[1].order))


PAGES = discover_pages()
BENCHMARKS = {name: page.argv for name, page in PAGES.items()}  # each writes --json DATA_DIR/NAME.json
SECTIONS = {name: (page.title, page.section) for name, page in PAGES.items()}
STUDY_BENCHMARKS = tuple(name for name, page in PAGES.items() if page.judges_study)  # take --from DIR --commit C


def rerun_command(name: str) -> str:
    return f"sudo .venv/bin/python scripts/results.py --only {name}"


def machine() -> str:
    model = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor() or "unknown CPU")
    return f"{model}, {os.cpu_count()} cores, Linux {platform.release()}"


def git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=REPO, capture_output=True, text=True).stdout.strip()


def tree_state() -> tuple[str, bool]:
    """HEAD's full hash and whether the tracked files equal it. The files this script writes are left
    out: a second benchmark of one run must not count the first one's summary as a change."""
    written = [f":(exclude){os.path.relpath(path, REPO)}" for path in (DATA_DIR, RESULTS_MD, README)]
    head = git("rev-parse", "HEAD")
    changes = git("status", "--porcelain", "--untracked-files=no", "--", ".", *written)
    return head or "unknown", bool(head) and not changes


def run_benchmark(name: str, study_runs: tuple[str, str] | None = None) -> None:
    """One benchmark, its JSON and a meta file beside it; a failed benchmark keeps its previous JSON.
    The result is clean only if the tree equalled one commit at the start and still did at the end.
    `study_runs` (folder, commit): judge a study folder whose runs were made at that commit (the
    benchmark checks their ids against it) instead of running the study; the meta names both the
    command that reruns the study and the commit its runs were made at."""
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    out = DATA_DIR / f"{name}.json"
    judge = ["--from", study_runs[0], "--commit", study_runs[1]] if study_runs else []
    argv = [sys.executable, *BENCHMARKS[name], *judge, "--json", str(out.with_suffix(".new.json"))]
    shown = " ".join(["sudo .venv/bin/python", *BENCHMARKS[name], "--json", os.path.relpath(out, REPO)])
    print(f"== {shown}", flush=True)
    started, (head, clean) = time.time(), tree_state()
    done = subprocess.run(argv, cwd=REPO)
    if done.returncode != 0 or not out.with_suffix(".new.json").exists():
        print(f"== {name} failed (exit {done.returncode}); its previous results, if any, are kept", file=sys.stderr)
        return
    out.with_suffix(".new.json").replace(out)
    meta = {"command": shown, "commit": head, "clean": clean and tree_state() == (head, True),
            **({"runs_commit": git("rev-parse", study_runs[1])} if study_runs else {}),
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "machine": machine(),
            "seconds": round(time.time() - started)}
    (DATA_DIR / f"{name}.meta.json").write_text(json.dumps(meta, indent=1) + "\n")


def load(name: str) -> tuple[dict, dict] | None:
    """A benchmark's summary and meta, or None if either is missing (a summary without its meta
    names no command or commit, so it is not shown)."""
    path, meta = DATA_DIR / f"{name}.json", DATA_DIR / f"{name}.meta.json"
    if not (path.exists() and meta.exists()):
        return None
    return json.loads(path.read_text()), json.loads(meta.read_text())


def is_clean(meta: dict) -> bool:
    return meta.get("clean") is True


def provenance(meta: dict) -> list[str]:
    dirty = "" if is_clean(meta) else " **Measured with uncommitted changes**: the commit alone does not repeat it."
    made = (f"runs made at commit {meta['runs_commit'][:10]} (checked against their ids), judged at "
            if meta.get("runs_commit") else "")
    return [f"`{meta['command']}` ({meta['seconds']} s), {meta['date']}, {made}commit {meta['commit'][:10]}, "
            f"{meta['machine']}.{dirty}", ""]


def headline_rows(found: dict) -> list[list[str]]:
    """The README's rows [what, measured, benchmark] for the benchmarks in `found`, in the table's order."""
    return [[*row, name] for name, page in headline_pages(found) for row in page.headline(found[name][0], found)]


def headline_notes(found: dict) -> list[str]:
    """Sentences under the README's table that read its rows; each only beside the row it reads."""
    return [line for name, page in headline_pages(found) if page.notes for line in page.notes(found[name][0], found)]


def headline_pages(found: dict) -> list[tuple[str, Page]]:
    """The measured pages with README rows, in the table's order."""
    return sorted(((name, page) for name, page in PAGES.items() if page.headline and name in found),
                  key=lambda item: item[1].headline_order)


def link(name: str) -> str:
    return f"[{name}](docs/results.md#{anchor(PAGES[name].title)})"


def anchor(title: str) -> str:
    return re.sub(r"[^a-z0-9 -]", "", title.lower()).replace(" ", "-")


def headline_names(readme: str) -> list[str]:
    """The benchmark behind each of the README's headline rows, in order (one name per row)."""
    block = readme.split(BEGIN, 1)[1].split(END, 1)[0] if BEGIN in readme and END in readme else ""
    return [m.group(1) for line in block.splitlines() if (m := re.search(r"\| \[(\w+)\]\(docs/results\.md", line))]


def unbacked_rows(readme: str) -> list[str]:
    """Why each README headline row is not backed by a clean summary in DATA_DIR; empty if all are."""
    problems = []
    for name in headline_names(readme):
        where = os.path.relpath(DATA_DIR / name, REPO)
        if (loaded := load(name)) is None:
            problems.append(f"{name}: the README has its row but {where}.json or .meta.json is missing")
        elif not is_clean(loaded[1]):
            problems.append(f"{name}: {where}.meta.json says commit {loaded[1]['commit'][:10]} had uncommitted changes")
    return problems


def results_page(found: dict) -> str:
    lines = ["# Measured results", "",
             "Written by `scripts/results.py` (`sudo make results`) from the benchmarks' summaries in `data/bench/`; "
             "do not edit by hand. Each table names the command, commit, date and machine it came from. These "
             "machines are shared and noisy (2 cores): compare ratios and medians measured side by side, not absolute "
             "times across tables.", ""]
    for name, page in PAGES.items():
        lines += [f"## {page.title}", ""]
        if page.before:
            lines += page.before(found)
        if name in found:
            lines += provenance(found[name][1]) + page.section(found[name][0], found)
        else:
            lines += [f"Not measured at this commit: run `{rerun_command(name)}`.", ""]
    return "\n".join(lines).rstrip() + "\n"


def headline_block(found: dict) -> str:
    rows = [[what, value, link(name) + ("" if is_clean(found[name][1]) else " (uncommitted changes)")]
            for what, value, name in headline_rows(found)]
    if not rows:
        return "No headline result is measured at this commit: `sudo make results` runs the benchmarks.\n"
    return "\n".join(table(["what", "measured", "details"], rows) + headline_notes(found))


def render(allow_dirty: bool = False) -> int:
    """Both pages from DATA_DIR alone; nothing is written if a README row would show a dirty result."""
    found = {name: loaded for name in BENCHMARKS if (loaded := load(name))}
    dirty = [name for _, _, name in headline_rows(found) if not is_clean(found[name][1])]
    if dirty and not allow_dirty:
        for name in dict.fromkeys(dirty):
            print(f"error: {name}'s result was measured at commit {found[name][1]['commit'][:10]} with uncommitted "
                  f"changes ({os.path.relpath(DATA_DIR / name, REPO)}.meta.json); rerun it from a clean commit "
                  f"(`{rerun_command(name)}`) or pass --allow-dirty to show it in the README anyway", file=sys.stderr)
        return 2
    RESULTS_MD.parent.mkdir(exist_ok=True)
    RESULTS_MD.write_text(results_page(found))
    readme = README.read_text()
    if BEGIN in readme and END in readme:
        head, rest = readme.split(BEGIN, 1)
        README.write_text(head + BEGIN + "\n" + headline_block(found) + END + rest.split(END, 1)[1])
    print(f"wrote {os.path.relpath(RESULTS_MD, REPO)} ({', '.join(found) or 'no benchmark results yet'})")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", help=f"comma-separated, of: {', '.join(BENCHMARKS)}")
    parser.add_argument("--render", action="store_true", help="do not run anything; rewrite from data/bench")
    parser.add_argument("--from", dest="source", help="with --only NAME (a study benchmark): judge this study "
                        "folder instead of running the study")
    parser.add_argument("--commit", help="with --from: the commit the folder's runs were made at")
    parser.add_argument("--allow-dirty", action="store_true",
                        help="show results measured with uncommitted changes in the README too (labelled)")
    args = parser.parse_args()
    names = args.only.split(",") if args.only else list(BENCHMARKS)
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"error: --only: unknown benchmark {', '.join(unknown)} (expected some of {', '.join(BENCHMARKS)})",
              file=sys.stderr)
        return 2
    if args.source and (len(names) != 1 or names[0] not in STUDY_BENCHMARKS or not args.commit):
        print(f"error: --from needs --commit and --only with one study benchmark ({', '.join(STUDY_BENCHMARKS)})",
              file=sys.stderr)
        return 2
    if not args.render:
        if os.geteuid() != 0 and not args.source:
            print("error: the benchmarks need root: sudo .venv/bin/python scripts/results.py", file=sys.stderr)
            return 2
        for name in names:
            run_benchmark(name, (args.source, args.commit) if args.source else None)
    return render(args.allow_dirty)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # the benchmark running was stopped too; its previous JSON is kept
        print("interrupted: pages not rewritten", file=sys.stderr)
        sys.exit(130)
