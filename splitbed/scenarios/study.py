"""Studies: a base scenario and a grid over any of its fields, resolved and checked before any run.

    name: example
    scenario: scenarios/aglop-baselines.yaml    # relative to the study file or the repository
    set: {workload.requests: 10}                 # fixed for every run (optional)
    grid:                                        # every combination ...
      nodes.edge.device: [rpi4, pi_zero_2w]
      links.uplink.trace: [traces/pensieve/norway_bus_1, traces/pensieve/norway_car_1]
    zip:                                         # ... times groups of fields that vary together
      - {links.uplink.delay_ms: [5, 20], links.downlink.delay_ms: [5, 20]}
    exclude:                                     # ... less the combinations matching an entry
      - {nodes.edge.device: rpi4, links.uplink.delay_ms: 20}

A run's id is a hash of its resolved scenario and the code version, so rerunning a study skips the
runs already complete in its folder. The engines (engines.py) run the runs; analysis.study writes
the table.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from splitbed import __version__
from splitbed.errors import UserError
from splitbed.scenarios.overrides import check_value
from splitbed.scenarios.schema import REPO, compose, load_scenario, read_text

STUDY_KEYS = ("name", "scenario", "set", "grid", "zip", "exclude", "output")
MAX_RUNS = 10_000


@dataclass
class StudyRun:
    run_id: str
    values: dict  # swept field -> value, as written in the study
    overrides: dict  # every field set for this run (fixed `set` and swept values)


@dataclass
class Study:
    path: Path
    name: str
    base: Path
    swept: list[str]
    runs: list[StudyRun]
    quick: bool = False
    output: Path = field(default_factory=lambda: REPO / "results" / "studies")


def code_version() -> str:
    """splitbed's version and the repository's commit (runs of another code version are not reused)."""
    done = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=REPO, capture_output=True, text=True)
    return f"{__version__}+{done.stdout.strip() or 'unknown'}"


def portable(data):
    """The resolved scenario with paths inside the repository made relative (ids equal across machines)."""
    if isinstance(data, dict):
        return {k: portable(v) for k, v in data.items()}
    if isinstance(data, list):
        return [portable(v) for v in data]
    if isinstance(data, str) and data.startswith(str(REPO) + "/"):
        return data[len(str(REPO)) + 1:]
    return data


def run_id(resolved: dict, quick: bool, version: str) -> str:
    text = json.dumps([portable(resolved), quick, version], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def key_lines(node: yaml.Node) -> dict:
    """{key: line} of a mapping node, for errors that point at the study file."""
    return {k.value: k.start_mark.line + 1 for k, _ in node.value} if isinstance(node, yaml.MappingNode) else {}


def axes(study: dict, where: str, lines: dict) -> list[list[dict]]:
    """Each axis is a list of {field: value} choices: one per grid field, one per zip group."""
    out = []
    grid = study.get("grid") or {}
    if not isinstance(grid, dict):
        raise UserError("grid: expected a mapping of field: [values]", where=where)
    for dotted, values in grid.items():
        if not isinstance(values, list) or not values:
            raise UserError(f"grid.{dotted}: expected a non-empty list of values", where=f"{where}:{lines.get(dotted, '')}")
        out.append([{str(dotted): v} for v in values])
    zips = study.get("zip") or []
    if not isinstance(zips, list):
        raise UserError("zip: expected a list of {field: [values]} groups", where=where)
    for group in zips:
        if not isinstance(group, dict) or not group or not all(isinstance(v, list) for v in group.values()):
            raise UserError("zip: each group is {field: [values], field: [values]}", where=where)
        lengths = {len(v) for v in group.values()}
        if len(lengths) != 1:
            raise UserError(f"zip: the lists of {', '.join(group)} differ in length ({sorted(lengths)})", where=where,
                            fix="fields that vary together need one value each per step")
        out.append([dict(zip(group, step, strict=True)) for step in zip(*group.values(), strict=True)])
    return out


def load_study(path: str | Path, quick: bool = False, version: str | None = None) -> Study:
    """Read a study file and resolve + check every run's scenario before anything starts. `version`:
    the code version the run ids are made for (default: this checkout's; a judge names the commit a
    folder's runs were made at and checks their ids)."""
    path = Path(path)
    root = compose(read_text(path), path)
    if not isinstance(root, yaml.MappingNode):
        raise UserError("a study file is a mapping with scenario and grid", where=str(path))
    study = yaml.safe_load(yaml.serialize(root))
    lines = key_lines(root)
    unknown = [k for k in study if k not in STUDY_KEYS]
    if unknown:
        raise UserError(f"unknown key {unknown[0]!r}", where=f"{path}:{lines.get(unknown[0], '')}",
                        fix=f"valid: {', '.join(STUDY_KEYS)}")
    if not isinstance(study.get("scenario"), str):
        raise UserError("scenario: name the base scenario file", where=str(path))
    base = Path(study["scenario"])
    base = next((p for p in (base, path.parent / base, REPO / base) if p.is_file()), None)
    if base is None:
        raise UserError(f"scenario file {study['scenario']!r} not found", where=f"{path}:{lines.get('scenario', '')}")
    grid_lines = key_lines(next((v for k, v in root.value if k.value == "grid"), None))
    fixed = study.get("set") or {}
    if not isinstance(fixed, dict):
        raise UserError("set: expected a mapping of field: value", where=f"{path}:{lines.get('set', '')}")
    fixed = {str(k): check_value(str(k), v, f"{path}:{lines.get('set', '')} (set)") for k, v in fixed.items()}
    choices = axes(study, str(path), grid_lines)
    swept = [f for axis in choices for f in axis[0]]
    excludes = study.get("exclude") or []
    if not isinstance(excludes, list) or not all(isinstance(e, dict) for e in excludes):
        raise UserError("exclude: expected a list of {field: value} entries", where=f"{path}:{lines.get('exclude', '')}")
    for entry in excludes:
        for dotted in entry:
            if dotted not in swept:
                raise UserError(f"exclude names {dotted!r}, which is not swept", where=f"{path}:{lines.get('exclude', '')}",
                                fix=f"swept fields: {', '.join(swept)}")
    total = 1
    for axis in choices:
        total *= len(axis)
    if total > MAX_RUNS:
        raise UserError(f"the grid has {total} combinations, more than {MAX_RUNS}", where=str(path))
    version, runs, seen = version or code_version(), [], set()
    for combo in itertools.product(*choices):
        values = {k: v for choice in combo for k, v in choice.items()}  # as written: the table's columns
        if any(all(values.get(k) == v for k, v in entry.items()) for entry in excludes):
            continue
        resolved = {k: (str((path.parent / v).resolve()) if k.endswith(".trace") and isinstance(v, str)
                        and (path.parent / v).is_file() else v) for k, v in values.items()}
        where = f"{path}:{grid_lines.get(next(iter(values), ''), lines.get('grid', ''))} (" + \
            ", ".join(f"{k}={v}" for k, v in values.items()) + ")"
        overrides = {**fixed, **{k: check_value(k, v, f"{path}:{grid_lines.get(k, lines.get('zip', ''))}")
                                 for k, v in resolved.items()}}
        try:
            scenario = load_scenario(base, overrides)
        except UserError as err:
            raise UserError(f"{err.where + ': ' if err.where else ''}{err.message}", where=where, fix=err.fix) from None
        rid = run_id(scenario.data, quick, version)
        if rid not in seen:  # two combinations that resolve to one scenario are one run
            seen.add(rid)
            runs.append(StudyRun(rid, values, overrides))
    if not runs:
        raise UserError("every combination is excluded: nothing to run", where=str(path))
    output = Path(study.get("output") or REPO / "results" / "studies")
    return Study(path, str(study.get("name") or path.stem), base, swept, runs, quick,
                 output if output.is_absolute() else REPO / output)
