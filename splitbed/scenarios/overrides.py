"""Scenario fields set from outside the file: `--set dotted.field=value` and a study's grid values.

Each dotted path is checked against the scenario schema and each value against the field's type and
range before anything runs, so a bad key or value fails with where it was written (the command line,
or the study file's line) and exit 2. Lists are indexed by number: `baselines.1.params.step=0.2`.
"""

from __future__ import annotations

import difflib

import yaml

from splitbed.errors import UserError
from splitbed.scenarios.schema import SCHEMA, check_node


def field_type(dotted: str, where: str):
    """The schema type of a dotted field; an unknown part is an error with the closest valid name."""
    expected = SCHEMA
    for depth, part in enumerate(dotted.split(".")):
        if isinstance(expected, list):
            if not part.isdigit():
                raise UserError(f"field {dotted!r}: {'.'.join(dotted.split('.')[:depth])} is a list: "
                                f"index it by number, e.g. {'.'.join(dotted.split('.')[:depth])}.0", where=where)
            expected = expected[0]
            continue
        if expected is dict:  # free-form (codec parameters): any name, any plain value
            return object
        if not isinstance(expected, dict) or part not in expected:
            names = list(expected) if isinstance(expected, dict) else []
            close = difflib.get_close_matches(part, names, n=1)
            raise UserError(f"unknown field {dotted!r}", where=where,
                            fix=f"did you mean {close[0]!r}?" if close else f"valid here: {', '.join(names)}")
        expected = expected[part]
    return expected


def check_value(dotted: str, value, where: str):
    """The value as the scenario file would hold it, checked like one (type, range)."""
    expected = field_type(dotted, where)
    if expected is object:
        return value
    try:
        node = yaml.compose(yaml.safe_dump(value, default_flow_style=True))
        return check_node(node, expected, dotted, where)
    except UserError as err:
        raise UserError(err.message, where=where, fix=err.fix) from None
    except yaml.YAMLError as err:
        raise UserError(f"field {dotted}: cannot use {value!r}: {err}", where=where) from None


def parse_set(text: str) -> tuple[str, object]:
    """One `--set dotted.field=value` (the value in YAML: 5, 0.2, rpi4, [1, 2], {step: 0.2})."""
    where = f"--set {text}"
    if "=" not in text:
        raise UserError("expected dotted.field=value", where=where, fix="e.g. --set links.uplink.delay_ms=5")
    dotted, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as err:
        raise UserError(f"cannot read the value: {getattr(err, 'problem', None) or err}", where=where) from None
    return dotted.strip(), check_value(dotted.strip(), value, where)


def parse_sets(texts: list[str]) -> dict:
    return dict(parse_set(text) for text in texts)
