"""How noisy a timing benchmark was, and whether a missed speed goal is beyond that noise.

``weightsym bench`` (:mod:`weightsym.fast.bench`) times the dense and the optimized model **interleaved**: round r
times dense then optimized (the order flipped every round), so the two runs of one round saw the same machine load.
The per-round ratio ``dense_r / optimized_r`` therefore cancels slow drifts, and its spread over the rounds is the
noise of the measured ratio (the median of the rounds).  A goal that is not met is called

* **within noise** when the highest per-round ratio of its worst case reaches the required ratio (another run on the
  same machine may well pass), and
* **beyond noise** when even the best round stays below it (the miss is real at this size).

Example:
    >>> row = {"dense_runs_ms": [10.0, 12.0, 11.0], "optimized_runs_ms": [5.0, 5.0, 10.0], "ratio": 2.0}
    >>> round_ratios(row)
    [2.0, 2.4, 1.1]
    >>> spread(row)["low"], spread(row)["high"]
    (1.1, 2.4)
"""

from __future__ import annotations

from statistics import median, pstdev


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


def judge_goals(result: dict) -> list[dict]:
    """Every goal of ``result["goals"]`` with ``noise``: ``"within noise"`` / ``"beyond noise"`` for a missed goal
    (judged on its worst case, see the module docstring), ``""`` otherwise; and the worst case's per-round range."""
    from weightsym.fast.bench import GOALS

    predicates = {key: (pred, need) for key, _, pred, need in GOALS}
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
                entry["noise"] = "within noise" if s["high"] >= need else "beyond noise"
        judged.append(entry)
    return judged


def noise_markdown(result: dict, noisiest: int = 5) -> str:
    """A Markdown section: each goal's verdict with the noise of its worst case, and the noisiest rows."""
    from weightsym.nn import format_table

    repeats = result.get("plan", {}).get("repeats", "?")
    lines = ["## Noise", "",
             f"Each measured × is the median of {repeats} interleaved rounds; *per-round ×* is the lowest and highest "
             "dense/optimized ratio of one round (both timed back to back, so they saw the same load). A missed goal "
             "is *within noise* when its worst case's best round reaches the required ×, *beyond noise* when even the "
             "best round falls short.", ""]
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
