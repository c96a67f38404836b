"""Any bytes as a scenario file: the loader answers valid (exit 0) or one error line (exit 2), never a
traceback. Random bytes, mutations of the shipped scenarios, and the classic YAML traps."""

import random
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from splitbed.cli import main
from tests.conftest import REPO

SHIPPED = sorted((REPO / "scenarios").glob("*.yaml"))
TRAPS = [
    b"",
    b"\x00\x01\x02binary\xff\xfe",
    "name: caf\u00e9\n".encode("latin-1"),  # not UTF-8
    b"- a\n- b\n",  # a list at the top
    b"42\n",
    b"name: x\nname: y\nplan: {type: fixed, split: conv1, codec: raw}\n",  # duplicate key
    b"a: &a [1,1]\nb: &b [*a,*a]\nc: &c [*b,*b]\nd: [*c,*c]\n",  # alias bomb
    b"plan: " + b"[" * 200 + b"]" * 200 + b"\n",  # deep nesting
    b"plan: !!python/object/apply:os.system ['true']\n",
    b"? [a, b]\n: 1\n",  # a non-scalar key
    b"name: x\n---\nname: y\n",  # two documents
    b"links: {uplink: {rate_mbit: '5'}}\nplan: {type: fixed, split: conv1, codec: raw}\n",  # number as string
    b"links: {uplink: {rate_mbit: .nan}}\nplan: {type: fixed, split: conv1, codec: raw}\n",
    b"links: {uplink: {rate_mbit: 1e308}}\nplan: {type: fixed, split: conv1, codec: raw}\n",
    b"links: {uplink: {delay_ms: 1e19}}\nplan: {type: fixed, split: conv1, codec: raw}\n",
    b"workload: {requests: -3}\nplan: {type: fixed, split: conv1, codec: raw}\n",
    b"workload: {deadline_s: -.inf}\nplan: {type: fixed, split: conv1, codec: raw}\n",
    b"x: " + b"a" * (2 << 20) + b"\n",  # over the size cap
    b"tcp: {congestion_control: 'cubic; reboot'}\nplan: {type: fixed, split: conv1, codec: raw}\n",
    b"tcp: {congestion_control: 5}\nplan: {type: fixed, split: conv1, codec: raw}\n",
]


def answer(tmp_path: Path, content: bytes, capsys) -> tuple[int, str]:
    path = tmp_path / "s.yaml"
    path.write_bytes(content)
    code = main([str(path), "--validate"])
    return code, capsys.readouterr().err


def assert_clean(code: int, err: str) -> None:
    assert code in (0, 2)
    if code == 2:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err


@pytest.mark.parametrize("content", TRAPS, ids=range(len(TRAPS)))
def test_yaml_traps_are_one_line_errors(tmp_path, capsys, content):
    code, err = answer(tmp_path, content, capsys)
    assert code == 2, err
    assert_clean(code, err)


def test_the_shipped_scenarios_validate(tmp_path, capsys):
    for path in SHIPPED:
        code, err = answer(tmp_path, path.read_bytes(), capsys)
        assert code == 0, err


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=600))
def test_random_bytes(tmp_path, capsys, data):
    assert_clean(*answer(tmp_path, data, capsys))


def mutate(text: bytes, seed: int, edits: int) -> bytes:
    """Byte edits and YAML-shaped edits of a real scenario: the inputs a user's typo makes."""
    rng = random.Random(seed)
    out = bytearray(text)
    tokens = [b"-1", b"1e308", b".nan", b"'5'", b"{", b"[", b"]", b":", b"&x", b"*x", b"\t", b"\n  ", b"null",
              b"true", b"0x10", b"~", b"\xff", b"!!binary", b"2019-12-16"]
    for _ in range(edits):
        at = rng.randrange(len(out) + 1)
        kind = rng.randrange(4)
        if kind == 0 and out:
            del out[at : at + rng.randrange(1, 8)]
        elif kind == 1:
            out[at:at] = rng.choice(tokens)
        elif kind == 2 and out:
            out[min(at, len(out) - 1)] = rng.randrange(256)
        else:
            lines = bytes(out).split(b"\n")
            line = rng.randrange(len(lines))
            lines.insert(line, lines[rng.randrange(len(lines))])  # a duplicated line
            out = bytearray(b"\n".join(lines))
    return bytes(out)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.sampled_from(SHIPPED), st.integers(0, 2**32), st.integers(1, 6))
def test_mutated_shipped_scenarios(tmp_path, capsys, scenario, seed, edits):
    assert_clean(*answer(tmp_path, mutate(scenario.read_bytes(), seed, edits), capsys))
