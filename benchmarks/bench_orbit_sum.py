"""The backward of a symmetric weight's expansion: ways to sum the dense gradient over every orbit, timed.

The gradient of each free value is the sum of the dense gradient over its orbit (docs/science.md §4).  Compared on
the weights where the expansion matters most (an LSTM's stacked 4 x 650 x 650 triangular gate blocks, a 2048 x 2048
triangular Linear, a 128-channel 3x3 tri+spa conv): autograd's ``index_add_`` (the backward of ``index_select``),
``scatter_add_`` (what ``weightsym.symmetry.layout.OrbitGather`` uses), the group sum ``(G + gG + ...)[rep] / |Stab|``
(one transpose-add for triangular) and one gather per orbit member.  Medians of interleaved rounds
(``weightsym.bench.measure``, the order reversed every other round); prints a table, writes JSON.

    python benchmarks/bench_orbit_sum.py --threads 2 --repeats 41
"""

from __future__ import annotations

import argparse
import sys

import torch

import weightsym as ws
from weightsym import allocator
from weightsym.bench import measure, write_json
from weightsym.machine import machine
from weightsym.nn import format_table

CASES = [("LSTM weight, 4 triangular gates of 650", "triangular", (2600, 650), 4),
         ("triangular Linear 2048", "triangular", (2048, 2048), 1),
         ("tri+spa 3x3 conv, C=128", "tri+spa", (128, 128, 3, 3), 1)]


def methods(layout, grad: torch.Tensor) -> dict:
    index, rep, size = layout.index, layout.rep, layout.core_size
    counts = torch.bincount(index, minlength=size)
    width = int(counts.max())
    order = torch.argsort(index, stable=True)
    starts = torch.cumsum(counts, 0) - counts
    members = [order[(starts + (j % counts)).clamp(max=index.numel() - 1)] for j in range(width)]
    repeat = (width / counts).to(grad.dtype)  # a member listed twice in a smaller orbit counts once
    rb = layout.shape[0] // layout.shape[1] if len(layout.shape) == 2 else 1
    out = {
        "index_add_ (autograd)": lambda: grad.new_zeros(size).index_add_(0, index, grad),
        "scatter_add_ (weightsym)": lambda: grad.new_zeros(size).scatter_add_(0, index, grad),
        "one gather per orbit member": lambda: sum(grad.index_select(0, m) for m in members) / repeat,
    }
    if len(layout.shape) == 2 and layout.shape[-1] == layout.shape[0] // rb:  # triangular: the group is {1, T}
        per_stabiliser = counts.to(grad.dtype) / 2  # 1 / |Stab(rep)| with |group| = 2
        planes = grad.view(rb, layout.shape[1], layout.shape[1])
        out["group sum (G + Gᵀ)[rep]"] = lambda: (planes + planes.transpose(1, 2)).reshape(-1).index_select(
            0, rep).mul_(per_stabiliser)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=41)
    ap.add_argument("--out", default="benchmarks/results/orbit_sum.json")
    args = ap.parse_args(argv)
    allocator.tune()
    torch.set_num_threads(args.threads)
    rows, results = [], []
    for name, spec, shape, row_blocks in CASES:
        layout = ws.get_symmetry(spec).layout(shape, row_blocks)
        grad = torch.randn(layout.index.numel())
        candidates = methods(layout, grad)
        reference = candidates["index_add_ (autograd)"]()
        for k, fn in candidates.items():  # also the warm-up
            torch.testing.assert_close(fn(), reference, atol=1e-4, rtol=1e-5, msg=k)
        timing = measure(candidates, args.repeats, warmup=0)
        base = timing.median("index_add_ (autograd)")
        for k in candidates:
            med = timing.median(k)
            rows.append([name, k, f"{med * 1e3:.3f}", f"{med / base:.2f}"])
            results.append({"case": name, "method": k, "seconds_median": med, "vs_index_add": med / base})
    print(format_table(["weight", "orbit sum", "ms (median)", "÷ index_add"], rows, numeric={2, 3}))
    print(f"wrote {write_json(args.out, {'machine': machine(), 'args': vars(args), 'results': results})}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
