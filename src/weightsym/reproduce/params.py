"""Study ``params``: stored parameters of the paper's models, dense vs every symmetry (no training).

What is counted (:func:`weightsym.count_parameters`): every distinct parameter tensor once, BatchNorm affine
parameters and biases included, running statistics (buffers) excluded.  ``stored`` is what the optimizer and the
weight file hold; ``dense`` is the same model without symmetry; ``saved = 1 - stored / dense``.

Models and placements:

* ``wrn-16-4-bottleneck``, ``wrn-28-10`` (basic blocks), ``resnet-50``, ``resnet-101`` (torchvision ImageNet layout,
  1000 classes) with the paper's placement: the middle 3x3 conv of every block (``include=["*conv2"]``);
* the two WRNs also with weightsym's default placement (every layer the symmetry applies to except the stem and
  the classifier: for basic blocks that adds the first 3x3 conv of each block wherever it is square, and spatial
  symmetries also reach the non-square 3x3 convs);
* the paper's medium PTB language model (2-layer LSTM, 650 units, vocabulary 10,000, untied): the per-gate blocks of
  ``weight_hh`` (``hh``) or of ``weight_hh`` and ``weight_ih`` (``hh+ih``), triangular and average.

Every channel symmetry (``repeat`` = 2 copies, ``lowrank`` = rank n/4), every spatial one, and ``tri+spa``.

Example:
    >>> row = count_row("wrn-16-4-bottleneck", "triangular")
    >>> row["dense"], row["stored"]
    (219482, 172106)
"""

from __future__ import annotations

import copy
import time
from pathlib import Path

from torch import nn

import weightsym as ws
from weightsym.atomic import save_figure
from weightsym.models import create_model
from weightsym.nn.symmetrize import format_table
from weightsym.reproduce.common import PAPER_PLACEMENT, header, write_outputs
from weightsym.symmetry import Composite, Eigen, LowRank

NAME = "params"
TITLE = "Stored parameters: dense vs every symmetry for WRN, ResNet-50/101 and the PTB LSTM (no training)"
BUDGET = "about 5-10 minutes (building and symmetrizing ResNet-101, and the eigen projections, dominate)"

SYMMETRIES = ws.available_symmetries() + ["tri+spa"]  # every registered symmetry (channel, then spatial), and tri+spa
CNN_MODELS = {  # model -> placements to report
    "wrn-16-4-bottleneck": ("paper", "default"),
    "wrn-28-10": ("paper", "default"),
    "resnet-50": ("paper",),
    "resnet-101": ("paper",),
}
SMOKE_MODELS = ("wrn-16-4-bottleneck",)
# eigen and lowrank: their projection (an eigendecomposition per plane) dominates the run; not in --smoke
SLOW = tuple(s for s in SYMMETRIES if isinstance(ws.get_symmetry(s), (Eigen, LowRank)))
SMOKE_SYMMETRIES = [s for s in SYMMETRIES if s not in SLOW]
LSTM_CASES = [("triangular", "hh"), ("triangular", "hh+ih"), ("average", "hh"), ("average", "hh+ih")]


def _split(symmetry: str) -> dict:
    """``"tri+spa"`` -> channel + spatial; otherwise the plane the registry puts the symmetry on."""
    sym = ws.get_symmetry(symmetry)
    if isinstance(sym, Composite):
        return {"channel": sym.channel.spec, "spatial": sym.spatial.spec}
    return {sym.plane: symmetry}


def _row(net: nn.Module, report: ws.SymmetrizeReport | None, **fields) -> dict:
    count = ws.count_parameters(net)
    layers = report.symmetric if report is not None else []
    return {**fields, "dense": count.dense, "stored": count.stored, "free": count.free,
            "saved_pct": 100.0 * count.saved, "layers": len({r.name for r in layers}), "tensors": len(layers)}


def count_row(model_name: str, symmetry: str | None, placement: str = "paper", base: nn.Module | None = None) -> dict:
    """One table row: ``model_name`` with ``symmetry`` (None = dense) at ``placement`` ("paper" or "default").

    ``base`` (an already built ``create_model(model_name)``) is copied instead of building the model again.
    """
    model = copy.deepcopy(base) if base is not None else create_model(model_name)
    report = None
    if symmetry is not None:
        include = PAPER_PLACEMENT if placement == "paper" else None
        report = ws.symmetrize(model, include=include, **_split(symmetry))
    return _row(model, report, model=model_name, placement=placement, symmetry=symmetry or "dense")


def build_lstm_lm() -> tuple[nn.Module, str]:
    """The paper's medium PTB model: weightsym's ``lstm-lm`` if present, else an equivalent stand-in."""
    try:
        return create_model("lstm-lm", num_classes=10_000), "weightsym.models.create_model('lstm-lm')"
    except ValueError:
        class StandIn(nn.Module):  # the same parameter tensors as pytorch/examples word_language_model (untied)
            def __init__(self):
                super().__init__()
                self.encoder, self.rnn = nn.Embedding(10_000, 650), nn.LSTM(650, 650, 2)
                self.decoder = nn.Linear(650, 10_000)

        return StandIn(), "stand-in: Embedding(10000, 650) + LSTM(650, 650, 2) + Linear(650, 10000)"


def lstm_rows() -> tuple[list[dict], str]:
    base, source = build_lstm_lm()
    recurrent = [n for n, m in base.named_modules() if isinstance(m, nn.RNNBase)]
    dense_rnn = sum(p.numel() for n, m in base.named_modules() if n in recurrent for p in m.parameters())
    rows = [{**_row(base, None, model="lstm-lm-650", placement="-", symmetry="dense"), "rnn_saved_pct": 0.0}]
    for symmetry, where in LSTM_CASES:
        model = copy.deepcopy(base)
        report = ws.symmetrize(model, channel=symmetry, include=recurrent, hh_gates="1111",
                               ih_gates="1111" if where == "hh+ih" else None)
        row = _row(model, report, model="lstm-lm-650", placement=where, symmetry=symmetry)
        row["rnn_saved_pct"] = 100.0 * (row["dense"] - row["stored"]) / dense_rnn
        rows.append(row)
    return rows, source


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    series = [(m, p) for m, places in CNN_MODELS.items() for p in places
              if any(r["model"] == m and r["placement"] == p for r in rows)]
    fig, ax = plt.subplots(figsize=(11, 4.2))
    width = 0.8 / max(1, len(series))
    for k, (m, p) in enumerate(series):
        values = [next((r["saved_pct"] for r in rows if r["model"] == m and r["placement"] == p
                        and r["symmetry"] == s), 0.0) for s in SYMMETRIES]
        ax.bar([i + (k - (len(series) - 1) / 2) * width for i in range(len(SYMMETRIES))], values, width,
               label=f"{m} ({p})")
    ax.set_xticks(range(len(SYMMETRIES)), SYMMETRIES, rotation=35, ha="right")
    ax.set_ylabel("parameters saved vs dense (%)")
    ax.axhline(25, color="grey", lw=0.8, ls="--")
    ax.set_title("Stored parameters saved by each symmetry (paper placement: middle 3x3 conv of every block)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    save_figure(fig, path, dpi=110)
    plt.close(fig)


def _table(rows: list[dict], extra: bool = False) -> str:
    head = ["symmetry", "placement", "layers", "stored", "free", "saved"] + (["saved (LSTM only)"] if extra else [])
    body = [[r["symmetry"], r["placement"], str(r["layers"]), f"{r['stored']:,}", f"{r['free']:,}",
             f"{r['saved_pct']:.2f}%"] + ([f"{r['rnn_saved_pct']:.2f}%"] if extra else []) for r in rows]
    return format_table(head, body, numeric={2, 3, 4, 5, 6})


def _verdict(rows: list[dict], smoke: bool) -> str:
    def get(m, s, p="paper"):
        return next((r for r in rows if r["model"] == m and r["symmetry"] == s and r["placement"] == p), None)

    lines = ["### Verdict", ""]
    r101 = get("resnet-101", "triangular")
    if r101:
        lines.append(f"- **Matches the paper.** ResNet-101 with triangular symmetry on the 3x3 conv of every "
                     f"bottleneck stores {r101['stored']:,} of {r101['dense']:,} parameters: "
                     f"{r101['saved_pct']:.1f}% fewer, the paper's \"almost 25%\".")
    r50 = get("resnet-50", "triangular")
    if r50:
        lines.append(f"- ResNet-50, same placement: {r50['saved_pct']:.1f}% fewer (its 3x3 convs are a smaller share "
                     f"of the model than in ResNet-101).")
    best = max((r for r in rows if r["placement"] == "paper"), key=lambda r: r["saved_pct"], default=None)
    if best:
        lines.append(f"- The largest saving at the paper's placement is {best['symmetry']} on {best['model']} "
                     f"({best['saved_pct']:.1f}%); the 3x3 middle convs cap what any symmetry there can save.")
    lines.append("- `average` stores a full matrix, so it saves nothing in storage (its free count equals "
                 "triangular's); `eigen` is free == stored at n(n+1)/2; the numbers above are stored parameters.")
    lstm = [r for r in rows if r["model"] == "lstm-lm-650"]
    tri_hh = next((r for r in lstm if r["symmetry"] == "triangular" and r["placement"] == "hh"), None)
    if tri_hh:
        lines.append(f"- PTB LSTM: triangular `hh` saves {tri_hh['saved_pct']:.1f}% of the whole model "
                     f"({tri_hh['rnn_saved_pct']:.1f}% of the LSTM layers; embedding and decoder, 13M of 19.8M, "
                     "stay dense). The paper's LSTM runs use `average`, which stores a full matrix: the paper's "
                     "language-model results save no storage.")
    lines.append("- Nothing here needs a GPU or ImageNet: counts depend only on shapes, so CPU scale says "
                 "everything about storage. It says nothing about accuracy (see the other sections).")
    if smoke:
        lines.append(f"- (smoke run: ResNet-50/101, WRN-28-10 and {', '.join(SLOW)} left out)")
    return "\n".join(lines) + "\n"


def run(out_dir: Path, smoke: bool = False) -> dict:
    """Count every (model, placement, symmetry) and write params.json, params.md and params.png into ``out_dir``."""
    out_dir = Path(out_dir)
    start = time.time()
    rows: list[dict] = []
    models = SMOKE_MODELS if smoke else tuple(CNN_MODELS)
    symmetries = SMOKE_SYMMETRIES if smoke else SYMMETRIES
    for model_name in models:
        base = create_model(model_name)
        for placement in CNN_MODELS[model_name]:
            rows.append(count_row(model_name, None, placement, base))
            rows.extend(count_row(model_name, s, placement, base) for s in symmetries)
        del base
    lstm, lstm_source = lstm_rows()
    rows.extend(lstm)
    out_dir.mkdir(parents=True, exist_ok=True)
    _plot(rows, out_dir / "params.png")

    md = [header(TITLE), "",
          "Stored parameters (every distinct parameter tensor once, BatchNorm and biases included, buffers excluded) "
          "of each model, dense and with each symmetry. *paper* placement: the middle 3x3 conv of every block "
          "(`include=[\"*conv2\"]`); *default*: weightsym's default (every layer the symmetry applies to except the "
          "stem and the classifier). `repeat` = 2 copies along the output axis, `lowrank` = rank n/4, "
          "`tri+spa` = triangular + spatial transpose. `layers` = symmetric layers. `block` and `repeat` also act on "
          "rectangular layers, so under the default placement they reach the 1x1 convs and shortcuts too; spatial "
          "symmetries reach every 3x3 conv but the stem.", ""]
    for model_name in models:
        model_rows = [r for r in rows if r["model"] == model_name]
        md += [f"### {model_name} (dense: {model_rows[0]['dense']:,} parameters)", "",
               _table(model_rows), ""]
    md += [f"### PTB LSTM language model, 2 x 650 units, vocabulary 10,000 (dense: {lstm[0]['dense']:,})", "",
           f"Model: {lstm_source}. `hh` = every gate block of `weight_hh_l0/l1`; `hh+ih` = also `weight_ih_l0/l1` "
           "(both 650 x 650 per gate).", "", _table(lstm, extra=True), "",
           "![parameters saved](params.png)", "", _verdict(rows, smoke)]
    markdown = "\n".join(md)
    payload = {"study": NAME, "smoke": smoke, "seconds": round(time.time() - start, 1), "rows": rows,
               "lstm_model": lstm_source}
    write_outputs(out_dir, NAME, payload, markdown)
    return payload
