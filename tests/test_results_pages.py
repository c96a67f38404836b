"""The results pages are data rendered: scripts/results.py writes docs/results.md and the README's headline
table from the summaries committed in data/bench alone. A benchmark without a summary has no README row and
a section that says so; a summary measured with uncommitted changes is labelled, and kept out of the README
unless asked for. The last tests hold the repository itself to this."""

import importlib
import importlib.util
import json
import shutil
import subprocess
from pathlib import Path

from splitbed.testing.results_page import Page
from tests.conftest import REPO

CLEAN_META = {"command": "cmd", "commit": "0123456789abcdef0123456789abcdef01234567", "clean": True,
              "date": "today", "machine": "this one", "seconds": 1}
STUDIES = {"study": "studies/example.yaml", "runs": 8, "rounds": 1, "median_ratio": 1.5, "local_wall_s": 100.0,
           "local_overhead_per_run_s": 1.0, "dask_wall_s": 150.0, "dask_overhead_per_run_s": 7.25}
FIDELITY = {"backend": "htb+nfqueue", "rate_error_pct": 1.5, "rtt_error_ms": 0.5, "trace_median_error_pct": 0.9,
            "headline": {"rate_error_pct": 1.5, "rtt_ms": 40.5, "rtt_error_ms": 0.5, "measured_loss_pct": 1.1,
                         "loss_error_pts": 0.1},
            "sweep": [], "fixed_rates": [], "messages": [], "traces": []}


def results_script(tmp_path: Path | None = None, with_data: bool = False):
    """scripts/results.py as a module; with tmp_path, it works on copies of the pages there and on a data
    folder there, empty or (with_data) a copy of the repository's."""
    spec = importlib.util.spec_from_file_location("results_script", REPO / "scripts" / "results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if tmp_path is not None:
        module.RESULTS_MD = Path(shutil.copy(module.RESULTS_MD, tmp_path / "results.md"))
        module.README = Path(shutil.copy(module.README, tmp_path / "README.md"))
        if with_data:
            module.DATA_DIR = Path(shutil.copytree(module.DATA_DIR, tmp_path / "bench"))
        else:
            module.DATA_DIR = tmp_path / "bench"
            module.DATA_DIR.mkdir()
    return module


def put(pages, name: str, data: dict, **meta) -> None:
    (pages.DATA_DIR / f"{name}.json").write_text(json.dumps(data))
    (pages.DATA_DIR / f"{name}.meta.json").write_text(json.dumps({**CLEAN_META, **meta}))


def sections(text: str) -> dict[str, str]:
    return {part.splitlines()[0]: part for part in text.split("\n## ")[1:]}


def test_without_data_every_section_says_not_measured_and_the_readme_has_no_row(tmp_path):
    pages = results_script(tmp_path)
    assert pages.render() == 0
    body = sections(pages.RESULTS_MD.read_text())
    assert len(body) == len(pages.SECTIONS)
    for name, (title, _) in pages.SECTIONS.items():
        assert f"Not measured at this commit: run `sudo .venv/bin/python scripts/results.py --only {name}`" in body[title]
    readme = pages.README.read_text()
    assert pages.headline_names(readme) == []
    assert "No headline result is measured at this commit" in readme


def test_one_summary_fills_its_own_section_only(tmp_path):
    pages = results_script(tmp_path)
    pages.render()
    before = sections(pages.RESULTS_MD.read_text())
    put(pages, "studies", STUDIES)
    pages.render()
    after = sections(pages.RESULTS_MD.read_text())
    assert [title for title in before if before[title] != after[title]] == ["Studies: local engine against Dask"]
    assert "| dask | 150.0 | 7.25 |" in after["Studies: local engine against Dask"]
    assert "commit 0123456789," in after["Studies: local engine against Dask"]
    assert pages.headline_names(pages.README.read_text()) == []  # studies has no headline row


def test_a_dirty_summary_is_refused_for_the_readme_and_labelled_when_allowed(tmp_path, capsys):
    pages = results_script(tmp_path)
    pages.render()
    put(pages, "fidelity", FIDELITY, clean=False)
    readme, page = pages.README.read_text(), pages.RESULTS_MD.read_text()
    assert pages.render() == 2
    assert "fidelity's result was measured at commit 0123456789 with uncommitted changes" in capsys.readouterr().err
    assert (pages.README.read_text(), pages.RESULTS_MD.read_text()) == (readme, page)  # nothing half-written
    assert pages.render(allow_dirty=True) == 0
    assert "**Measured with uncommitted changes**" in sections(pages.RESULTS_MD.read_text())["Links: emulated against configured"]
    readme = pages.README.read_text()
    assert "(uncommitted changes) |" in readme
    [problem] = pages.unbacked_rows(readme)
    assert problem.startswith("fidelity: ") and problem.endswith("fidelity.meta.json says commit 0123456789 had "
                                                                 "uncommitted changes")


def test_a_row_whose_summary_was_removed_is_found(tmp_path):
    pages = results_script(tmp_path)
    put(pages, "fidelity", FIDELITY)
    pages.render()
    readme = pages.README.read_text()
    assert pages.headline_names(readme) == ["fidelity"]
    assert pages.unbacked_rows(readme) == []
    (pages.DATA_DIR / "fidelity.json").unlink()
    [problem] = pages.unbacked_rows(readme)
    assert problem.startswith("fidelity: the README has its row but ") and problem.endswith("is missing")
    pages.render()
    assert pages.headline_names(pages.README.read_text()) == []


def test_every_benchmark_declares_its_pages_and_results_py_finds_them():
    """A new benchmark touches one file: each benchmarks/NAME.py declares PAGES, run as its own module."""
    pages = results_script()  # puts the repository first on sys.path, so `benchmarks` is this one
    names = []
    for path in sorted((REPO / "benchmarks").glob("*.py")):
        if path.stem == "__init__":
            continue
        declared = getattr(importlib.import_module(f"benchmarks.{path.stem}"), "PAGES", None)
        assert declared and all(isinstance(page, Page) for page in declared), f"{path.name} declares no PAGES"
        assert all(page.argv[:2] == ["-m", f"benchmarks.{path.stem}"] for page in declared), path.name
        names += [page.name for page in declared]
    assert len(names) == len(set(names)), "a page name is declared twice"
    assert set(names) == set(pages.BENCHMARKS)

def test_every_readme_headline_row_has_a_committed_clean_summary():
    """The repository's own README against its own data/bench, as committed."""
    pages = results_script()
    readme = pages.README.read_text()
    folder = Path(pages.DATA_DIR).relative_to(REPO).as_posix()
    committed = set(subprocess.run(["git", "ls-tree", "-r", "--name-only", "HEAD", "--", folder], cwd=REPO,
                                   capture_output=True, text=True, check=True).stdout.split())
    missing = [f"{name}: {path} is not committed" for name in pages.headline_names(readme)
               for path in (f"{folder}/{name}.json", f"{folder}/{name}.meta.json") if path not in committed]
    problems = pages.unbacked_rows(readme) + missing
    assert not problems, "README headline rows without clean committed data:\n" + "\n".join(problems)


def test_the_pages_are_the_summaries_rendered(tmp_path):
    """docs/results.md and the README's table equal what data/bench renders to, so neither holds old text."""
    pages, real = results_script(tmp_path, with_data=True), results_script()
    assert pages.render() == 0
    assert pages.RESULTS_MD.read_text() == real.RESULTS_MD.read_text()
    assert pages.README.read_text() == real.README.read_text()


def test_the_first_run_is_cut_into_stages_at_each_stages_first_line():
    from benchmarks.first_run import stage_seconds

    lines = [(3.0, "calibrating the CPU quota for Raspberry Pi 4 (once, cached)"),
             (40.0, "DISC calibration for m at block1 (once, cached)"), (50.0, "DISC calibration for m at block2"),
             (60.0, "measuring sizes and accuracy of 82 options"), (90.0, "options measured:  50%"),
             (200.0, "edge memory: 400 MB"), (230.0, "results: results/x")]
    assert stage_seconds(lines, 250.0) == {"start": 3.0, "device": 37.0, "disc_calibrations": 20.0,
                                           "codec_table": 140.0, "run": 50.0}
    assert stage_seconds([(1.0, "edge memory: 400 MB")], 10.0) == {"start": 1.0, "run": 9.0}
