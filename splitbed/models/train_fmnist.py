"""Train the Fashion-MNIST CNN on Debian's training set; seeded, about 3 minutes on 2 cores.

    python -m splitbed.models.train_fmnist [--epochs 3] [--out splitbed/models/weights/fmnist_cnn.pt]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from torch import nn

from splitbed.models.datasets import fashion_mnist_arrays
from splitbed.models.fmnist_cnn import MEAN, STD, WEIGHTS, make_stages


def to_tensor(images: np.ndarray) -> torch.Tensor:
    return ((torch.from_numpy(images).float() / 255.0 - MEAN) / STD).unsqueeze(1)


def train(epochs: int, seed: int, batch_size: int = 128) -> nn.Sequential:
    torch.manual_seed(seed)
    images, labels = fashion_mnist_arrays("train")
    x, y = to_tensor(images), torch.from_numpy(labels.astype(np.int64))
    net = nn.Sequential(*(m for _, m in make_stages()))
    optimiser = torch.optim.Adam(net.parameters(), lr=2e-3)
    steps = epochs * ((len(x) + batch_size - 1) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, max_lr=4e-3, total_steps=steps)
    generator = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        net.train()
        order = torch.randperm(len(x), generator=generator)
        total = 0.0
        for start in range(0, len(x), batch_size):
            idx = order[start : start + batch_size]
            batch = x[idx]
            if torch.rand(1, generator=generator).item() < 0.5:  # horizontal flip, a whole batch at a time
                batch = batch.flip(3)
            loss = nn.functional.cross_entropy(net(batch), y[idx])
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            schedule.step()
            total += loss.item() * len(idx)
        print(f"epoch {epoch + 1}/{epochs}: train loss {total / len(x):.4f}", flush=True)
    return net.eval()


@torch.no_grad()
def test_accuracy(net: nn.Module) -> float:
    images, labels = fashion_mnist_arrays("test")
    x = to_tensor(images)
    predictions = torch.cat([net(x[i : i + 1000]).argmax(1) for i in range(0, len(x), 1000)])
    return (predictions.numpy() == labels).mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(WEIGHTS))
    args = parser.parse_args()
    torch.set_num_threads(2)
    net = train(args.epochs, args.seed)
    print(f"test top-1: {test_accuracy(net):.4f}")
    torch.save(net.state_dict(), args.out)
    print(f"saved {args.out}")


if __name__ == "__main__":
    main()
