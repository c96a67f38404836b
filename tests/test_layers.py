"""The package layers: no package imports one on its own floor or above (splitbed.layers.FLOORS)."""

import shutil
from pathlib import Path

import splitbed
from splitbed.layers import FLOORS, back_imports

PACKAGE = Path(splitbed.__file__).resolve().parent


def test_no_package_imports_upward():
    assert back_imports(PACKAGE) == []


def test_every_package_is_on_a_floor():
    on_floors = {name for floor in FLOORS for name in floor}
    units = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
             if (p.suffix == ".py" or (p / "__init__.py").exists())}
    assert units <= on_floors


def test_a_back_import_is_found(tmp_path):
    """The checker is not vacuous: a top-level and a function-level upward import are both reported."""
    copy = tmp_path / "splitbed"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "*.pt"))
    links = copy / "network" / "links.py"
    links.write_text(links.read_text() + "\n\ndef late():\n    from splitbed.scenarios.schema import load_scenario\n")
    codecs_base = copy / "codecs" / "base.py"
    codecs_base.write_text("from splitbed.devices import cgroups\n" + codecs_base.read_text())
    found = back_imports(copy)
    assert any("network/links.py" in line and "imports scenarios" in line for line in found)
    assert any("codecs/base.py:1:" in line and "imports devices" in line for line in found)
    assert len(found) == 2


def test_an_import_a_package_does_not_declare_and_a_declared_floor_above_are_found(tmp_path):
    """Each package's "May import:" line is held to its code and to the floors."""
    copy = tmp_path / "splitbed"
    shutil.copytree(PACKAGE, copy, ignore=shutil.ignore_patterns("__pycache__", "*.pt"))
    traces = copy / "network" / "traces.py"
    traces.write_text("from splitbed.models import registry\n" + traces.read_text())  # models: the same floor
    analysis_init = copy / "analysis" / "__init__.py"
    analysis_init.write_text(analysis_init.read_text().replace("May import: app, errors.", "May import: app, scenarios."))
    summary = copy / "analysis" / "summary.py"
    summary.write_text("from splitbed.host import cache\n" + summary.read_text())
    found = back_imports(copy)
    assert any("analysis/__init__.py" in line and "'scenarios'" in line for line in found)
    assert any("analysis/summary.py:1:" in line and "imports host, which its May import line leaves out" in line
               for line in found)
    assert any("network/traces.py:1:" in line and "imports models" in line for line in found)
