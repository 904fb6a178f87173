"""Training-step time of symmetric LSTMs against the dense fused ``nn.LSTM`` (issue 2; goal <= 1.10x dense).

One training step = forward over ``bptt`` steps + backward + SGD update, 2 layers, batch 20, bptt 35, input size ==
hidden size (so weight_ih gate blocks can be symmetric too), at hidden 256 and 650 (the paper's medium model).
Variants: dense ``nn.LSTM``; symmetric weight_hh (``hh``) and weight_hh + weight_ih (``hh+ih``), each with the
``triangular`` tying and the ``average`` map (the paper's choice).  Every symmetric variant is a stock ``nn.LSTM``
symmetrized with ``weightsym.symmetrize``: it runs the same fused kernel, with each symmetric weight expanded once
per forward call.

Timing is interleaved (dense, variant 1, dense, variant 2, ...; ``weightsym.bench.measure``): each variant's ratio in
a round is its time over the mean of the two dense runs around it, and the table reports medians over rounds, so
load from other processes on a shared machine cancels out as far as possible.  The ``expand`` column is the time of
the symmetric weight expansion alone (forward + backward of the parametrizations, no LSTM), as a share of the dense
step.  ``--lm`` adds the whole language model step (embedding, LSTM, decoder over a 10,000-word vocabulary, cross
entropy) at each size, where the LSTM is a smaller share of the time.

    python benchmarks/bench_lstm.py                     # hidden 256 and 650, 15 rounds
    python benchmarks/bench_lstm.py --hidden 650 --repeats 30 --threads 2 --lm
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from torch import nn
from torch.nn.utils import parametrize

import weightsym as ws
from weightsym.bench import measure, write_json
from weightsym.machine import machine
from weightsym.models.language import LSTMLanguageModel

VARIANTS = {  # name -> symmetrize options (None: dense)
    "dense": None,
    "tri hh": dict(channel="triangular", hh_gates="1111"),
    "tri hh+ih": dict(channel="triangular", hh_gates="1111", ih_gates="1111"),
    "avg hh": dict(channel="average", hh_gates="1111"),
    "avg hh+ih": dict(channel="average", hh_gates="1111", ih_gates="1111"),
}


def build(variant: str, hidden: int, layers: int, lm: bool, vocab: int):
    """The module for ``variant`` (an nn.LSTM, or a whole language model with ``lm``) and its input maker."""
    torch.manual_seed(0)
    if lm:
        model = LSTMLanguageModel(vocab, hidden, hidden, layers, dropout=0.5, tie_weights=False)
        target = model
    else:
        model = nn.LSTM(hidden, hidden, layers)
        target = nn.ModuleDict({"rnn": model})
    options = VARIANTS[variant]
    if options is not None:
        report = ws.symmetrize(target, include=["rnn"], **options)
        assert len(report.symmetric) == layers * (2 if options.get("ih_gates") else 1), report
    return model.train()


def step_fn(model, hidden: int, bptt: int, batch: int, lm: bool, vocab: int):
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01)
    generator = torch.Generator().manual_seed(1)
    if lm:
        tokens = torch.randint(0, vocab, (bptt + 1, batch), generator=generator)
        x, y = tokens[:-1], tokens[1:]
        criterion = nn.CrossEntropyLoss()

        def step():
            optimizer.zero_grad(set_to_none=True)
            logits, _ = model(x)
            loss = criterion(logits.view(-1, vocab), y.reshape(-1))
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 0.25)
            optimizer.step()
    else:
        x = torch.randn(bptt, batch, hidden, generator=generator)
        target = torch.randn(bptt, batch, hidden, generator=generator)

        def step():
            optimizer.zero_grad(set_to_none=True)
            out, _ = model(x)
            loss = (out - target).pow(2).mean()
            loss.backward()
            optimizer.step()
    return step


def expansion_seconds(model, repeats: int, clock: str = "wall") -> float:
    """Median time of expanding every symmetric weight of ``model`` and back-propagating into the free values."""
    rnn = model.rnn if isinstance(model, LSTMLanguageModel) else model
    names = [n for n in rnn._flat_weights_names if parametrize.is_parametrized(rnn, n)]
    if not names:
        return 0.0
    grads = {n: torch.randn_like(getattr(rnn, n)) for n in names}

    def expand():
        total = sum((getattr(rnn, n) * grads[n]).sum() for n in names)
        total.backward()

    seconds = measure({"expand": expand}, repeats).median("expand", clock)
    rnn.zero_grad(set_to_none=True)
    return seconds


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--hidden", type=int, nargs="+", default=[256, 650])
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--bptt", type=int, default=35)
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=15, help="interleaved rounds")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's choice)")
    parser.add_argument("--clock", choices=["cpu", "wall"], default="wall",
                        help="wall: elapsed time (quiet machine); cpu: CPU time of this process, robust to other "
                             "processes on a shared machine (forces --threads 1: no thread spins waiting for another)")
    parser.add_argument("--lm", action="store_true", help="also time the whole language model step (vocab 10,000)")
    parser.add_argument("--vocab", type=int, default=10_000)
    parser.add_argument("--variants", nargs="+", default=[v for v in VARIANTS if v != "dense"],
                        choices=[v for v in VARIANTS if v != "dense"])
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "lstm.json"))
    args = parser.parse_args(argv)
    if args.clock == "cpu":
        args.threads = 1
    if args.threads:
        torch.set_num_threads(args.threads)
    clock = args.clock

    rows, results = [], []
    for lm in ([False, True] if args.lm else [False]):
        for hidden in args.hidden:
            dense = build("dense", hidden, args.layers, lm, args.vocab)
            baseline = step_fn(dense, hidden, args.bptt, args.batch_size, lm, args.vocab)
            models = {v: build(v, hidden, args.layers, lm, args.vocab) for v in args.variants}
            candidates = {v: step_fn(m, hidden, args.bptt, args.batch_size, lm, args.vocab)
                          for v, m in models.items()}
            timing = measure({"dense": baseline, **candidates}, args.repeats, baseline="dense", warmup=args.warmup)
            base = timing.median("dense", clock)
            what = "LM step" if lm else "LSTM step"
            rows.append([what, hidden, "dense", f"{ws.count_parameters(dense).stored:,}", f"{base * 1e3:.1f}",
                         "1.00", "-"])
            results.append({"what": what, "hidden": hidden, "variant": "dense", "stored": ws.count_parameters(dense).stored,
                            "seconds_median": base, "ratio_median": 1.0})
            for variant, model in models.items():
                seconds, ratio = timing.median(variant, clock), timing.ratio(variant, clock=clock)
                expand = expansion_seconds(model, 5, clock)
                rows.append([what, hidden, variant, f"{ws.count_parameters(model).stored:,}",
                             f"{seconds * 1e3:.1f}", f"{ratio:.3f}", f"{100 * expand / base:.1f}%"])
                results.append({"what": what, "hidden": hidden, "variant": variant,
                                "stored": ws.count_parameters(model).stored, "seconds_median": seconds,
                                "ratio_median": ratio, "ratios": timing.ratios(variant, clock=clock),
                                "expand_seconds": expand, "expand_share": expand / base})
            for row in rows[-1 - len(models):]:
                print(" | ".join(map(str, row)), file=sys.stderr, flush=True)
            write_json(args.out, {"benchmark": "bench_lstm", "partial": True, "args": vars(args), "results": results})

    table = ws.nn.format_table(["step", "hidden", "variant", "stored params", "ms (median)", "x dense (median)",
                                "expand"], rows, numeric={1, 3, 4, 5, 6})
    env = machine()
    print(f"training step: forward + backward + SGD, {args.layers} layers, bptt {args.bptt}, batch {args.batch_size}; "
          f"{args.repeats} interleaved rounds, {args.clock} clock; torch {env['torch']}, {env['torch_threads']} threads, "
          f"allocator: {env['allocator']}")
    print(table)
    payload = {"benchmark": "bench_lstm", "machine": env, "args": vars(args), "results": results, "table": table}
    path = write_json(args.out, payload)
    print(f"wrote {path}")
    return payload


if __name__ == "__main__":
    main()
