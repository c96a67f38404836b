"""The scenario file: its schema in one place, and a loader that reports file:line for every problem.

Validation happens before anything starts: unknown keys (with the closest valid one), wrong types,
missing files and impossible values all raise UserError naming the file, the line and the field.
"""

from __future__ import annotations

import difflib
import math
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from splitbed.aglop.energy import OBJECTIVES
from splitbed.aglop.online import POLICIES
from splitbed.aglop.profile import DEFAULT_CRITERION, PLAN_CRITERIA
from splitbed.devices.catalog import load_profiles
from splitbed.errors import UserError
from splitbed.host.containers import check_image_name
from splitbed.network.radio import RADIOS
from splitbed.network.traces import LINK_TRACE_FIELDS, READERS, UNITS, load_link_trace

REPO = Path(__file__).resolve().parents[2]
NUMBER = (int, float)

LINK = {"rate_mbit": NUMBER, "delay_ms": NUMBER, "jitter_ms": NUMBER, "loss_pct": NUMBER,
        "queue_packets": int, "trace": str, "trace_scale": NUMBER, "trace_offset_s": NUMBER,
        "trace_format": str, "time_column": str, "rate_column": str, "rate_unit": str, "bin_ms": int,
        "floor_mbit": NUMBER, "loop": bool, "radio": str}
PLAN = {"name": str, "type": str, "split": str, "codec": str, "params": dict, "budget_pts": NUMBER,
        "hysteresis_pct": NUMBER, "explore_pct": NUMBER, "probe_interval_s": NUMBER, "interleave": bool, "criterion": str,
        "objective": str, "energy_budget_mj": NUMBER, "deadline_ms": NUMBER}
PLAN_TYPES = tuple(POLICIES)
SCHEMA = {
    "name": str,
    "topology": {"kind": str, "edges": int},
    "nodes": {"edge": {"device": str, "image": str, "memory_mb": int}, "server": {"device": str, "image": str}},
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
    "tcp": {"congestion_control": str, "slow_start_after_idle": bool},
}
# Every number a scenario holds, by field name: (smallest, largest) allowed, both inclusive. NaN, the
# infinities and absurd magnitudes (1e308 Mbit/s, 1e19 ms) stop here, before anything starts.
RANGES = {
    "edges": (1, 64), "rate_mbit": (1e-3, 1e5), "delay_ms": (0, 60_000), "jitter_ms": (0, 60_000),
    "loss_pct": (0, 99.9), "queue_packets": (1, 1_000_000), "trace_scale": (1e-6, 1e6),
    "trace_offset_s": (0, 1e7), "bin_ms": (1, 60_000), "floor_mbit": (0, 1e5), "requests": (1, 1_000_000),
    "warmup": (0, 10_000), "interval_s": (0, 3600), "deadline_s": (1e-3, 3600), "duration_s": (1e-3, 7 * 86400),
    "budget_pts": (1e-4, 100), "hysteresis_pct": (0, 1000), "explore_pct": (0, 1000), "probe_interval_s": (1e-3, 3600),
    "energy_budget_mj": (1e-3, 1e7), "deadline_ms": (1e-3, 3.6e6),
    "seed": (0, 2**32 - 1), "memory_mb": (16, 1 << 20),
}
MAX_FILE_BYTES = 1 << 20
YAML12_FLOAT = re.compile(r"[-+]?[0-9]+(\.[0-9]*)?[eE][-+]?[0-9]+")
MAX_DEPTH = 16
CONGESTION_NAME = re.compile(r"[a-z][a-z0-9_]{0,14}")  # the kernel's names: at most 15 characters
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
    "tcp": {"congestion_control": "cubic", "slow_start_after_idle": True},  # Linux's defaults, whatever this machine's sysctls say
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
            if not isinstance(key_node, yaml.ScalarNode):
                raise UserError(f"field {field or 'top level'}: keys must be plain names",
                                where=f"{path}:{key_node.start_mark.line + 1}")
            key = key_node.value
            name = f"{field}.{key}" if field else key
            if key in out:
                raise UserError(f"field {name!r} is given twice", where=f"{path}:{key_node.start_mark.line + 1}",
                                fix="keep one of them")
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
        return plain_value(node, field, where)
    value = plain_value(node, field, where) if isinstance(node, yaml.ScalarNode) else None
    types = expected if isinstance(expected, tuple) else (expected,)
    if float in types and isinstance(value, str) and node.style is None and YAML12_FLOAT.fullmatch(value):
        value = float(value)  # 1e19: a number in YAML 1.2 and to every reader, a string to PyYAML's YAML 1.1
    if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
        shown = node.value if isinstance(node, yaml.ScalarNode) else type(node).__name__.replace("Node", "").lower()
        raise UserError(f"field {field}: expected {type_name(expected)}, got {str(shown)[:60]!r}", where=where)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        check_range(value, field, where)
    return value


def plain_value(node: yaml.Node, field: str, where: str):
    """The Python value of a node (safe loader: no tags beyond YAML's own)."""
    try:
        return yaml.safe_load(yaml.serialize(node))
    except yaml.YAMLError as err:
        raise UserError(f"field {field}: cannot read the value: {getattr(err, 'problem', None) or err}",
                        where=where) from None


def check_range(value: float, field: str, where: str) -> None:
    low, high = RANGES.get(field.rsplit(".", 1)[-1].split("[")[0], (-1e12, 1e12))
    if not math.isfinite(value) or not low <= value <= high:
        raise UserError(f"field {field}: {value!r} is out of range", where=where,
                        fix=f"give a number from {low:g} to {high:g}")


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


def set_field(data: dict, dotted: str, value) -> None:
    """data[a][b][c] = value for "a.b.c"; a number is a list index ("baselines.1.params.step")."""
    *parents, last = dotted.split(".")
    node = data
    try:
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        if isinstance(node, list):
            node[int(last)] = value
        else:
            node[last] = value
    except (IndexError, ValueError, TypeError, AttributeError):
        raise UserError(f"cannot set {dotted}: the scenario has no such entry", fix="check the list index") from None


def merged(defaults: dict, given: dict) -> dict:
    out = dict(defaults)
    for key, value in given.items():
        out[key] = merged(defaults[key], value) if isinstance(value, dict) and isinstance(defaults.get(key), dict) \
            else value
    return out


def read_text(path: Path) -> str:
    """The file as UTF-8 text, refused when too large, binary or not UTF-8."""
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_FILE_BYTES + 1)
    except OSError as err:
        raise UserError(f"cannot read scenario: {err.strerror}", where=str(path)) from err
    if len(raw) > MAX_FILE_BYTES:
        raise UserError(f"scenario file is larger than {MAX_FILE_BYTES >> 10} KiB", where=str(path),
                        fix="is this the scenario YAML file?")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise UserError(f"not UTF-8 text (byte {err.start})", where=str(path), fix="is this the scenario YAML file?") \
            from None
    if "\0" in text:
        raise UserError("a binary file, not YAML text", where=str(path), fix="is this the scenario YAML file?")
    return text


def compose(text: str, path: Path) -> yaml.Node | None:
    """The YAML node tree, after refusing anchors/aliases (alias bombs) and deep nesting."""
    def fail(message: str, mark=None, fix: str | None = None):
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise UserError(message, where=where, fix=fix)

    try:
        depth = 0
        for event in yaml.parse(text, Loader=yaml.SafeLoader):
            if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None):
                fail("anchors and aliases (&, *) are not supported in scenarios", event.start_mark,
                     "write the values out")
            if isinstance(event, (yaml.MappingStartEvent, yaml.SequenceStartEvent)):
                depth += 1
                if depth > MAX_DEPTH:
                    fail(f"nested more than {MAX_DEPTH} levels deep", event.start_mark)
            elif isinstance(event, (yaml.MappingEndEvent, yaml.SequenceEndEvent)):
                depth -= 1
        return yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as err:
        fail(f"not valid YAML: {getattr(err, 'problem', None) or err}", getattr(err, "problem_mark", None))


def load_scenario(path: str | Path, overrides: dict | None = None) -> Scenario:
    """Read, check and complete a scenario file; `overrides` (dotted field -> value, checked by
    splitbed.scenarios.overrides) replace fields of the file before the checks of values and files."""
    path = Path(path)
    root = compose(read_text(path), path)
    if root is None:
        raise UserError("scenario file is empty", where=str(path))
    given = check_node(root, SCHEMA, "", path)
    for dotted, value in (overrides or {}).items():
        set_field(given, dotted, value)
    data = merged(DEFAULTS, given)
    data.setdefault("name", path.stem)
    if "plan" not in data:
        raise UserError("no plan: say what to run", where=str(path),
                        fix="add plan: {type: fixed, split: block5, codec: disc}")
    check_values(data, root, path)
    return Scenario(path, data)


def check_objective(plan: dict, kind: str, field: str, edge_device, fail) -> None:
    """A plan's objective (latency | energy) and its bound: an energy budget bounds a latency
    objective, a deadline an energy one; planning on energy needs the edge's published board power."""
    where = field if field == "plan" else "baselines"
    given = [key for key in ("objective", "energy_budget_mj", "deadline_ms") if key in plan]
    if not given:
        return
    if kind == "fixed":
        fail(where, f"a fixed plan plans nothing: {given[0]!r} applies to a planner", f"remove {given[0]!r}")
    minimise = plan.get("objective", "latency")
    if minimise not in OBJECTIVES:
        fail(f"{field}.objective" if field == "plan" else where, f"unknown objective {minimise!r}",
             f"one of: {', '.join(OBJECTIVES)}")
    wrong = "deadline_ms" if minimise == "latency" else "energy_budget_mj"
    if wrong in plan:
        fail(where, f"{wrong} bounds the quantity an objective does not minimise; this plan minimises {minimise}",
             "an energy_budget_mj with objective: latency, a deadline_ms with objective: energy")
    if (minimise == "energy" or "energy_budget_mj" in plan) and edge_device.power is None:
        fail(where, f"planning on energy needs the edge device's board power; {edge_device.key!r} has none "
                    "in devices.yaml", "choose an edge device with power: (e.g. rpi4), or objective: latency")


def check_values(data: dict, root: yaml.Node, path: Path) -> None:
    def fail(field: str, message: str, fix: str | None = None):
        raise UserError(f"field {field}: {message}", where=f"{path}:{line_of(root, field)}", fix=fix)

    profiles = load_profiles()
    for role in ("edge", "server"):
        device = data["nodes"][role]["device"]
        if device not in profiles:
            close = difflib.get_close_matches(device, profiles, n=1)
            fail(f"nodes.{role}.device", f"unknown device {device!r}",
                 f"did you mean {close[0]!r}?" if close else f"one of: {', '.join(profiles)}")
        if "image" in data["nodes"][role]:
            check_image_name(data["nodes"][role]["image"], f"{path}:{line_of(root, f'nodes.{role}.image')}: "
                                                          f"field nodes.{role}.image")
    for name, link in data["links"].items():
        if "trace" in link:
            trace = Path(link["trace"])
            resolved = trace if trace.is_absolute() else (path.parent / trace if (path.parent / trace).exists()
                                                           else REPO / trace)
            if not resolved.is_file():
                fail(f"links.{name}.trace", f"trace file {link['trace']!r} not found",
                     "give a path relative to the scenario file or the repository")
            link["trace"] = str(resolved.resolve())
            if link.get("trace_format", "auto") not in ("auto", *READERS):
                fail(f"links.{name}.trace_format", f"unknown trace format {link['trace_format']!r}",
                     f"one of: auto, {', '.join(READERS)}")
            if link.get("rate_unit", "kbit/s") not in UNITS:
                fail(f"links.{name}.rate_unit", f"unknown unit {link['rate_unit']!r}", f"one of: {', '.join(UNITS)}")
            try:
                load_link_trace(link)  # every line read now, before anything starts
            except UserError as err:
                raise UserError(f"links.{name} (scenario {path}:{line_of(root, f'links.{name}')}): {err.message}",
                                where=err.where, fix=err.fix) from None
        else:
            given = [key for key in LINK_TRACE_FIELDS if key in link]
            if given:
                fail(f"links.{name}.{given[0]}", "applies only to a link with a trace", "add trace: FILE")
    for name, link in data["links"].items():
        if "radio" in link:
            if name != "uplink":
                fail(f"links.{name}.radio", "the edge's radio is named once, on its uplink",
                     f"move radio: {link['radio']} to links.uplink")
            if link["radio"] != "none":
                RADIOS.lookup(link["radio"], where=f"{path}:{line_of(root, f'links.{name}.radio')} "
                                                   f"(links.{name}.radio)", others=("none",))
    if not CONGESTION_NAME.fullmatch(data["tcp"]["congestion_control"]):
        fail("tcp.congestion_control", f"not a congestion control's name: {data['tcp']['congestion_control']!r}",
             "e.g. cubic (Linux's default), reno, bbr, or default (this machine's own default)")
    for field, plan in [("plan", data["plan"])] + [(f"baselines[{i}]", p) for i, p in enumerate(data["baselines"])]:
        where = f"{field}.type" if field == "plan" else "baselines"
        kind = plan.get("type", "fixed")
        POLICIES.lookup(kind, where=f"{path}:{line_of(root, where)} ({where})")
        if plan.get("criterion", DEFAULT_CRITERION) not in PLAN_CRITERIA:
            fail(f"{field}.criterion" if field == "plan" else "baselines",
                 f"unknown accuracy criterion {plan['criterion']!r}", f"one of: {', '.join(PLAN_CRITERIA)}")
        if kind == "fixed":
            for key in ("split", "codec"):
                if key not in plan and not (key == "codec" and plan.get("split") == "edge-only"):
                    fail(field if field == "plan" else "baselines", f"a fixed plan needs {key!r}")
        else:
            for key in ("split", "codec", "params"):
                if key in plan:
                    fail(where, f"a {kind} plan chooses {key!r} itself", f"remove {key!r} or use type: fixed")
        check_objective(plan, kind, field, profiles[data["nodes"]["edge"]["device"]], fail)
