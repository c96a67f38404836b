"""scripts/results.py --render rewrites the pages from the benchmarks' JSON on disk: a benchmark not run on
this machine keeps what the pages said of it, so rendering one fresh result on a new clone loses nothing."""

import importlib.util
import json
import shutil
from pathlib import Path

from tests.conftest import REPO


def load_results_script(tmp_path):
    spec = importlib.util.spec_from_file_location("results_script", REPO / "scripts" / "results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.RESULTS_MD = Path(shutil.copy(REPO / "docs" / "results.md", tmp_path / "results.md"))
    module.README = Path(shutil.copy(REPO / "README.md", tmp_path / "README.md"))
    module.BENCH_DIR = tmp_path / "bench"
    return module


def test_render_without_results_keeps_both_pages_as_they_are(tmp_path):
    pages = load_results_script(tmp_path)
    pages.render()
    assert pages.RESULTS_MD.read_text() == (REPO / "docs" / "results.md").read_text()
    assert pages.README.read_text() == (REPO / "README.md").read_text()


def test_render_of_one_fresh_result_replaces_only_its_own_section_and_row(tmp_path):
    pages = load_results_script(tmp_path)
    pages.BENCH_DIR.mkdir()
    studies = {"study": "studies/example.yaml", "runs": 8, "rounds": 1, "median_ratio": 1.5, "local_wall_s": 100.0,
               "local_overhead_per_run_s": 1.0, "dask_wall_s": 150.0, "dask_overhead_per_run_s": 7.25}
    (pages.BENCH_DIR / "studies.json").write_text(json.dumps(studies))
    (pages.BENCH_DIR / "studies.meta.json").write_text(json.dumps(
        {"command": "cmd", "commit": "abc", "date": "today", "machine": "this one", "seconds": 1}))
    pages.render()
    before = (REPO / "docs" / "results.md").read_text().split("\n## ")
    after = pages.RESULTS_MD.read_text().split("\n## ")
    assert len(before) == len(after)
    changed = [b.splitlines()[0] for b, a in zip(before, after, strict=True) if a != b]
    assert changed == ["Studies: local engine against Dask"]
    assert "| dask | 150.0 | 7.25 |" in after[-2]
    assert pages.README.read_text() == (REPO / "README.md").read_text()  # studies has no headline row
