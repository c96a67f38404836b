"""The reference workloads a node is calibrated on, run as a worker process inside the node's cgroup.

    python -m splitbed.devices.workload WORKLOAD --threads N

Loads the model first (unconstrained, so start-up does not count), prints "ready", then answers
"run K" on stdin with one JSON line of K forward-pass latencies in ms (batch 1), until "quit".
Workloads: efficientnet_lite0 (our default model, shipped weights), efficientnet_b0 and the
architectures of splitbed/devices/architectures.py (the architecture only, random weights: weights do
not change a dense network's latency), each at the input size its published latencies used.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time


def workloads() -> tuple[str, ...]:
    from splitbed.devices.architectures import ARCHITECTURES

    return ("efficientnet_lite0", "efficientnet_b0", *ARCHITECTURES)


def build(workload: str):
    import torch

    from splitbed.devices.architectures import ARCHITECTURES, INPUT_SIZE

    if workload == "efficientnet_lite0":
        from splitbed.models import get_model

        return get_model("efficientnet_lite0").full(), torch.zeros(1, 3, 224, 224)
    torch.manual_seed(0)
    if workload in ARCHITECTURES:
        size = INPUT_SIZE[workload]
        return ARCHITECTURES[workload]().eval(), torch.zeros(1, 3, size, size)
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name("efficientnet-b0").eval()
    net.set_swish(memory_efficient=False)  # the same arithmetic without a custom autograd function: it traces
    return net, torch.zeros(1, 3, 224, 224)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("workload")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # before torch is imported
    if args.workload not in workloads():
        parser.error(f"workload {args.workload!r}: one of {', '.join(workloads())}")
    import torch

    torch.set_num_threads(args.threads)
    net, x = build(args.workload)
    with torch.no_grad():
        net(x)  # first call allocates
        print("ready", flush=True)
        for line in sys.stdin:
            command = line.split()
            if not command or command[0] == "quit":
                break
            times = []
            for _ in range(int(command[1])):
                start = time.perf_counter_ns()
                net(x)
                times.append((time.perf_counter_ns() - start) / 1e6)
            print(json.dumps(times), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
