"""How noisy a timing benchmark was, and whether a missed speed goal is beyond that noise.

``weightsym bench`` (:mod:`weightsym.bench.inference`) times the dense and the optimized model **interleaved**
(:func:`weightsym.bench.timing.measure`): round r times dense then optimized (the order flipped every round), so the
two runs of one round saw the same machine load.
The per-round ratio ``dense_r / optimized_r`` therefore cancels slow drifts, and its spread over the rounds is the
noise of the measured ratio (the median of the rounds).  A goal that is not met is called

* **within noise** when the highest per-round ratio of its worst case reaches the required ratio, or when its worst
  ratio is within the machine's **noise floor** of it (another run on the same machine may well pass), and
* **beyond noise** otherwise (the miss is real at this size).

The noise floor comes from the cases where both sides do identical work (``chosen_ratio`` 1: a materialised layer
against the same dense layer): their true ratio is 1, so how far their measured ratios stray from 1 is what timing
alone does on this machine (:func:`noise_floor`).

Example:
    >>> row = {"dense_runs_ms": [10.0, 12.0, 11.0], "optimized_runs_ms": [5.0, 5.0, 10.0], "ratio": 2.0}
    >>> round_ratios(row)
    [2.0, 2.4, 1.1]
    >>> spread(row)["low"], spread(row)["high"]
    (1.1, 2.4)
"""

from __future__ import annotations

import math
from statistics import median, pstdev

from weightsym.bench.cases import GOALS


def round_ratios(row: dict) -> list[float]:
    """``dense / optimized`` time of each interleaved round of one benchmark row."""
    return [round(d / o, 3) for d, o in zip(row["dense_runs_ms"], row["optimized_runs_ms"]) if o > 0]


def spread(row: dict) -> dict:
    """Lowest and highest per-round ratio, and the relative spread (population std / median) of each side's times."""
    ratios = round_ratios(row)

    def relative(values):
        return pstdev(values) / median(values) if len(values) > 1 and median(values) > 0 else 0.0

    return {"low": min(ratios), "high": max(ratios), "rounds": len(ratios),
            "dense_spread": relative(row["dense_runs_ms"]), "optimized_spread": relative(row["optimized_runs_ms"])}


def noise_floor(rows: list[dict], quantile: float = 0.9) -> float | None:
    """How far from 1 timing alone moves a measured ratio: the ``quantile`` (nearest rank) of the relative deviation
    from 1 over the rows doing identical work on both sides (``chosen_ratio == 1``); 0.07 means 9 in 10 such cases
    measured within 0.93x-1.07x.  None without such rows.  (The largest deviation comes from the shortest cases, a few
    microseconds per call, and would excuse any miss.)"""
    same = sorted(max(r["ratio"], 1 / r["ratio"]) - 1 for r in rows
                  if r.get("chosen_ratio") == 1.0 and r.get("kind") != "model")
    return same[min(len(same) - 1, max(0, math.ceil(quantile * len(same)) - 1))] if same else None


def judge_goals(result: dict) -> list[dict]:
    """Every goal of ``result["goals"]`` with ``noise``: ``"within noise"`` / ``"beyond noise"`` for a missed goal
    (judged on its worst case, see the module docstring), ``""`` otherwise; and the worst case's per-round range."""
    predicates = {key: (pred, need) for key, _, pred, need in GOALS}
    floor = noise_floor(result["rows"]) or 0.0
    judged = []
    for goal in result["goals"]:
        entry = dict(goal, noise="", low=None, high=None)
        pred, need = predicates.get(goal["goal"], (None, goal["required"]))
        hits = [r for r in result["rows"] if pred is not None and pred(r) and r.get("dense_runs_ms")]
        if hits:
            worst = min(hits, key=lambda r: r["ratio"])
            s = spread(worst)
            entry.update(low=s["low"], high=s["high"])
            if goal["met"] is False:
                within = s["high"] >= need or worst["ratio"] * (1 + floor) >= need
                entry["noise"] = "within noise" if within else "beyond noise"
        judged.append(entry)
    return judged


def noise_markdown(result: dict, noisiest: int = 5) -> str:
    """A Markdown section: each goal's verdict with the noise of its worst case, and the noisiest rows."""
    from weightsym.nn import format_table

    repeats = result.get("plan", {}).get("repeats", "?")
    floor = noise_floor(result["rows"])
    lines = ["## Noise", "",
             f"Each measured × is the median of {repeats} interleaved rounds; *per-round ×* is the lowest and "
             "highest dense/optimized ratio of one round (both timed back to back, so they saw the same load). "
             + ("Noise floor: 9 in 10 cases doing identical work on both sides (chosen × 1.00, true ratio 1) "
                f"measured within {100 * floor:.0f}% of 1.00×. " if floor is not None else "")
             + "A missed goal is *within noise* when its worst case's best round reaches the required ×, or its worst "
             "× is within the noise floor of it; *beyond noise* otherwise.", ""]
    rows = []
    for g in judge_goals(result):
        met = {True: "yes", False: "no", None: "not measured"}[g["met"]]
        rows.append([g["description"], f"{g['required']:.2f}",
                     "-" if g.get("measured_min") is None else f"{g['measured_min']:.2f}",
                     "-" if g["low"] is None else f"{g['low']:.2f}–{g['high']:.2f}",
                     met + (f" ({g['noise']})" if g["noise"] else "")])
    lines += [format_table(["goal", "required ×", "worst measured ×", "per-round × of the worst case", "met"], rows),
              ""]
    timed = [r for r in result["rows"] if r.get("dense_runs_ms")]
    if timed:
        ranked = sorted(timed, key=lambda r: -max(spread(r)["dense_spread"], spread(r)["optimized_spread"]))
        lines += [f"Noisiest cases (relative spread of the {repeats} timings of each side):", "", format_table(
            ["case", "symmetry", "batch", "measured ×", "per-round ×", "dense spread", "optimized spread"],
            [[r["name"], "+".join(x for x in (r["channel"], r["spatial"]) if x), r["batch"], f"{r['ratio']:.2f}",
              f"{spread(r)['low']:.2f}–{spread(r)['high']:.2f}", f"{100 * spread(r)['dense_spread']:.0f}%",
              f"{100 * spread(r)['optimized_spread']:.0f}%"] for r in ranked[:noisiest]]), ""]
    return "\n".join(lines)
