"""The runner -> edge seam (splitbed.app.edge_config): one typed config, written and read by one module."""

import json

import pytest

from splitbed.app.edge_config import EdgeConfig, PathFacts, Workload
from splitbed.devices.catalog import BoardPower


def config(**changes) -> EdgeConfig:
    fields = dict(server="10.0.0.2", port=7700, model="efficientnet_lite0", dataset="imagenet-samples", seed=3,
                  plans=[{"name": "disc", "type": "fixed", "split": "block5", "codec": "disc", "params": {"step": 0.4}},
                         {"name": "aglop", "type": "aglop"}],
                  workload=Workload.from_scenario({"requests": 5, "warmup": 2, "interval_s": 0.0, "deadline_s": 4.0}),
                  csv="/tmp/requests.csv", trace=None, uplink_rate_bps=1e6, path=PathFacts(40.0, 10.0, None),
                  tcp_congestion_control="cubic", profile=None, threads=1, max_inputs=7, references=[1, 2],
                  power=BoardPower(idle_w=0.6, busy_w=1.75), radio="lte")
    return EdgeConfig(**{**fields, **changes})


def test_a_config_reads_back_as_written(tmp_path):
    written = config()
    written.write(tmp_path / "edge.json")
    read = EdgeConfig.read(tmp_path / "edge.json")
    assert read.workload == Workload(requests=5, warmup=2, deadline_s=4.0, interval_s=0.0, duration_s=None)
    assert read.path == PathFacts(up_ms=40.0, down_ms=10.0, wan_up_bps=None)
    assert read == written
    assert read.references == [1, 2] and read.server == "10.0.0.2"


@pytest.mark.parametrize("change", [{"cal_dir": "/x"}, {"seed": None}])
def test_a_key_nothing_writes_or_a_missing_one_is_an_error_naming_it(tmp_path, change):
    data = json.loads(json.dumps(config().__dict__, default=lambda o: o.__dict__))
    data.update(change)
    data = {k: v for k, v in data.items() if v is not None}
    (tmp_path / "edge.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match="cal_dir" if "cal_dir" in change else "seed"):
        EdgeConfig.read(tmp_path / "edge.json")
