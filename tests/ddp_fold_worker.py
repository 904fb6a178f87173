"""Run by tests/test_fold_training.py under ``torchrun``: DDP training of a small model whose layers train through
their folds; each rank takes its share of a fixed global batch; rank 0 saves the final free values."""

from __future__ import annotations

import gc
import sys

import torch
import torch.distributed as dist
from torch import nn

import weightsym as ws


def build() -> nn.Module:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.ReLU(),
                        nn.Conv2d(8, 8, 3, stride=2, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 4 * 4, 16),
                        nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 4))
    ws.symmetrize(net, channel="block", spatial="dihedral")
    report = ws.fast.fold_training(net, policy="always")
    assert len(report.folded) == 4, report
    return net


def batches(steps: int, global_batch: int):
    gen = torch.Generator().manual_seed(1)
    for _ in range(steps):
        yield torch.randn(global_batch, 3, 8, 8, generator=gen), torch.randint(0, 4, (global_batch,), generator=gen)


def train(net: nn.Module, rank: int, world: int, steps: int = 5, global_batch: int = 12) -> nn.Module:
    model = nn.parallel.DistributedDataParallel(net) if world > 1 else net
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=5e-4)
    share = global_batch // world
    for x, y in batches(steps, global_batch):
        xs, ys = x[rank * share:(rank + 1) * share], y[rank * share:(rank + 1) * share]
        opt.zero_grad()
        nn.functional.cross_entropy(model(xs), ys).backward()  # mean over the share; DDP averages the shares
        opt.step()
    return net


def main(out: str) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    net = train(build(), rank, world)
    gc.collect()  # free the DDP wrapper before the process group (see tests/test_symmetrize.py)
    if rank == 0:
        ws.save(net, out)
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
