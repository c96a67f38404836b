"""The scenario file: its schema in one place, and a loader that reports file:line for every problem.

Validation happens before anything starts: unknown keys (with the closest valid one), wrong types,
missing files and impossible values all raise UserError naming the file, the line and the field.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

import yaml

from splitbed.aglop.online import POLICIES
from splitbed.errors import UserError

REPO = Path(__file__).resolve().parents[2]
NUMBER = (int, float)

LINK = {"rate_mbit": NUMBER, "delay_ms": NUMBER, "jitter_ms": NUMBER, "loss_pct": NUMBER,
        "queue_packets": int, "trace": str, "trace_scale": NUMBER, "trace_offset_s": NUMBER}
PLAN = {"name": str, "type": str, "split": str, "codec": str, "params": dict, "budget_pts": NUMBER,
        "hysteresis_pct": NUMBER, "probe_interval_s": NUMBER, "interleave": bool}
PLAN_TYPES = tuple(POLICIES)
SCHEMA = {
    "name": str,
    "topology": {"kind": str, "edges": int},
    "nodes": {"edge": {"device": str}, "server": {"device": str}},
    "links": {"uplink": LINK, "downlink": LINK, "wan_up": LINK, "wan_down": LINK},
    "backend": str,
    "model": str,
    "dataset": str,
    "workload": {"requests": int, "warmup": int, "interval_s": NUMBER, "deadline_s": NUMBER,
                 "duration_s": NUMBER},
    "plan": PLAN,
    "baselines": [PLAN],
    "seed": int,
    "output": str,
    "capture": bool,
}
DEFAULTS = {
    "topology": {"kind": "single", "edges": 1},
    "nodes": {"edge": {"device": "rpi4"}, "server": {"device": "server"}},
    "links": {},
    "backend": "auto",
    "model": "efficientnet_lite0",
    "dataset": "imagenet-samples",
    "workload": {"requests": 50, "warmup": 3, "interval_s": 0.0, "deadline_s": 10.0},
    "baselines": [],
    "seed": 0,
    "output": "results",
    "capture": False,
}


@dataclass
class Scenario:
    path: Path
    data: dict  # validated, defaults applied

    def __getitem__(self, key):
        return self.data[key]


def type_name(expected) -> str:
    if isinstance(expected, dict):
        return "a mapping"
    if isinstance(expected, list):
        return "a list"
    if expected == NUMBER:
        return "a number"
    return {str: "a string", int: "an integer", bool: "true/false"}.get(expected, str(expected))


def check_node(node: yaml.Node, expected, field: str, path: Path):
    """Validate a composed YAML node against the schema; return the plain Python value."""
    where = f"{path}:{node.start_mark.line + 1}"
    if isinstance(expected, dict):
        if not isinstance(node, yaml.MappingNode):
            raise UserError(f"field {field or 'top level'}: expected {type_name(expected)}", where=where)
        out = {}
        for key_node, value_node in node.value:
            key = key_node.value
            name = f"{field}.{key}" if field else key
            if key not in expected:
                close = difflib.get_close_matches(key, expected, n=1)
                hint = f"did you mean {close[0]!r}?" if close else f"valid here: {', '.join(expected)}"
                raise UserError(f"unknown field {name!r}", where=f"{path}:{key_node.start_mark.line + 1}", fix=hint)
            out[key] = check_node(value_node, expected[key], name, path)
        return out
    if isinstance(expected, list):
        if not isinstance(node, yaml.SequenceNode):
            raise UserError(f"field {field}: expected a list", where=where)
        return [check_node(item, expected[0], f"{field}[{i}]", path) for i, item in enumerate(node.value)]
    if expected is dict:  # free-form mapping (codec parameters)
        if not isinstance(node, yaml.MappingNode):
            raise UserError(f"field {field}: expected a mapping", where=where)
        return yaml.safe_load(yaml.serialize(node))
    value = yaml.safe_load(yaml.serialize(node)) if isinstance(node, yaml.ScalarNode) else None
    types = expected if isinstance(expected, tuple) else (expected,)
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
        raise UserError(f"field {field}: expected {type_name(expected)}, got {node.value!r}", where=where)
    return value


def line_of(root: yaml.Node, dotted: str) -> int:
    """Best-effort line number of a dotted field, for errors found after parsing."""
    node = root
    for part in dotted.split("."):
        if not isinstance(node, yaml.MappingNode):
            break
        match = [v for k, v in node.value if k.value == part]
        if not match:
            break
        node = match[0]
    return node.start_mark.line + 1


def merged(defaults: dict, given: dict) -> dict:
    out = dict(defaults)
    for key, value in given.items():
        out[key] = merged(defaults[key], value) if isinstance(value, dict) and isinstance(defaults.get(key), dict) \
            else value
    return out


def load_scenario(path: str | Path) -> Scenario:
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as err:
        raise UserError(f"cannot read scenario: {err.strerror}", where=str(path)) from err
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise UserError(f"not valid YAML: {getattr(err, 'problem', err)}", where=where) from None
    if root is None:
        raise UserError("scenario file is empty", where=str(path))
    data = merged(DEFAULTS, check_node(root, SCHEMA, "", path))
    data.setdefault("name", path.stem)
    if "plan" not in data:
        raise UserError("no plan: say what to run", where=str(path),
                        fix="add plan: {type: fixed, split: block5, codec: disc}")
    check_values(data, root, path)
    return Scenario(path, data)


def check_values(data: dict, root: yaml.Node, path: Path) -> None:
    def fail(field: str, message: str, fix: str | None = None):
        raise UserError(f"field {field}: {message}", where=f"{path}:{line_of(root, field)}", fix=fix)

    workload = data["workload"]
    if workload["requests"] < 1:
        fail("workload.requests", "must be at least 1")
    if workload["warmup"] < 0 or workload["deadline_s"] <= 0 or workload["interval_s"] < 0:
        fail("workload", "warmup and interval_s must be >= 0, deadline_s > 0")
    if workload.get("duration_s", 1) <= 0:
        fail("workload.duration_s", "must be positive")
    for name, link in data["links"].items():
        for key in ("rate_mbit", "trace_scale"):
            if key in link and link[key] <= 0:
                fail(f"links.{name}.{key}", f"must be positive, got {link[key]}")
        for key in ("delay_ms", "jitter_ms", "loss_pct"):
            if link.get(key, 0) < 0:
                fail(f"links.{name}.{key}", f"must be >= 0, got {link[key]}")
        if link.get("loss_pct", 0) >= 100:
            fail(f"links.{name}.loss_pct", "must be below 100")
        if "trace" in link:
            trace = Path(link["trace"])
            resolved = trace if trace.is_absolute() else (path.parent / trace if (path.parent / trace).exists()
                                                           else REPO / trace)
            if not resolved.is_file():
                fail(f"links.{name}.trace", f"trace file {link['trace']!r} not found",
                     "give a path relative to the scenario file or the repository")
            link["trace"] = str(resolved.resolve())
    for field, plan in [("plan", data["plan"])] + [(f"baselines[{i}]", p) for i, p in enumerate(data["baselines"])]:
        where = f"{field}.type" if field == "plan" else "baselines"
        kind = plan.get("type", "fixed")
        if kind not in PLAN_TYPES:
            close = difflib.get_close_matches(kind, PLAN_TYPES, n=1)
            fail(where, f"unknown plan type {kind!r}", f"did you mean {close[0]!r}?" if close
                 else f"one of: {', '.join(PLAN_TYPES)}")
        if kind == "fixed":
            for key in ("split", "codec"):
                if key not in plan and not (key == "codec" and plan.get("split") == "edge-only"):
                    fail(field if field == "plan" else "baselines", f"a fixed plan needs {key!r}")
        else:
            for key in ("split", "codec", "params"):
                if key in plan:
                    fail(where, f"a {kind} plan chooses {key!r} itself", f"remove {key!r} or use type: fixed")
        for key in ("budget_pts", "probe_interval_s"):
            if plan.get(key, 1) <= 0:
                fail(where, f"{key} must be positive, got {plan[key]}")
        if plan.get("hysteresis_pct", 0) < 0:
            fail(where, f"hysteresis_pct must be >= 0, got {plan['hysteresis_pct']}")
