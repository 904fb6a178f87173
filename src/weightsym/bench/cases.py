"""What ``weightsym bench`` measures and what each group of cases must reach.

:func:`plan` lists the cases: 3x3 convs and Linear layers under each symmetry (per layer), and whole registry models
(:data:`MODELS`, built by :func:`build_model`).  :data:`GOALS` are the speed-ups the optimized model must reach over
the dense one, each judged on the worst case of its group (:func:`weightsym.bench.inference_report.goals`).

>>> plan(quick=True)["models"][0]
('wrn-16-4', None, 'dihedral', 8)
"""

from __future__ import annotations

GOALS = [
    # (key, description, predicate on a result row, required ratio)
    ("block-linear", "block Linear n ≥ 1024", lambda r: r["kind"] == "linear" and r["channel"] == "block"
     and r["n"] >= 1024, 3.0),
    ("centro-linear", "centrosymmetric/bisymmetric Linear n ≥ 1024",
     lambda r: r["kind"] == "linear" and r["channel"] in ("centrosymmetric", "bisymmetric") and r["n"] >= 1024, 1.6),
    ("dihedral-conv", "dihedral 3x3 conv C ≥ 128", lambda r: r["kind"] == "conv" and r["spatial"] == "dihedral"
     and not r["channel"] and r["n"] >= 128, 1.8),
    ("materialised", "materialised plain-symmetric layers", lambda r: r["kind"] in ("conv", "linear")
     and r["allowed_ratio"] == 1.0, 0.95),
    ("wrn-dihedral", "WRN-16-4 whole model, dihedral", lambda r: r["kind"] == "model" and r["name"] == "wrn-16-4"
     and r["spatial"] == "dihedral", 1.3),
]

# the whole models: (registry name, channel, spatial, batch)
MODELS = {
    "quick": [("wrn-16-4", None, "dihedral", 8), ("wrn-16-4", "block", None, 8),
              ("resnet-50-small", None, "dihedral", 2)],
    "full": [("wrn-16-4", None, "dihedral", 32), ("wrn-16-4", "block", None, 32),
             ("resnet-50-small", None, "dihedral", 8), ("resnet-50-small", "block", None, 8)],
}


def plan(quick: bool) -> dict:
    """The benchmark cases; ``quick`` is for development on a busy machine (small batches, few cases)."""
    if quick:
        return {
            "conv": [(c, m) for c, m in ((64, 16), (128, 16), (256, 8))],
            "conv_batch": 8,
            "conv_symmetries": [(None, "dihedral", "grid"), ("block", None, "grid"), ("centrosymmetric", None, "grid"),
                                ("block", "dihedral", "grid"), ("triangular", None, "grid")],
            "linear": [1024, 2048],
            "linear_batches": [1, 64],
            "linear_symmetries": ["block", "centrosymmetric", "bisymmetric", "eighth", "repeat:2:out",
                                  "triangular", "average"],
            "models": MODELS["quick"],
            "repeats": 5, "min_time": 0.02,
        }
    return {
        "conv": [(c, m) for c in (64, 128, 256) for m in (32, 16, 8)],
        "conv_diagonal": [(64, 32), (128, 16), (256, 8)],  # the WRN-16-4 group shapes
        "conv_batch": 32,
        "conv_symmetries": [(None, "dihedral", "grid"), ("block", None, "grid"), ("block", "dihedral", "grid"),
                            ("triangular", None, "grid"), (None, "hflip", "diagonal"), (None, "rot180", "diagonal"),
                            (None, "transpose", "diagonal"), ("centrosymmetric", None, "diagonal")],
        "linear": [512, 1024, 2048],
        "linear_batches": [1, 256],
        "linear_symmetries": ["block", "centrosymmetric", "bisymmetric", "eighth", "repeat:2:out", "repeat:4:in",
                              "triangular", "average", "eigen", "lowrank"],
        "models": MODELS["full"],
        "repeats": 7, "min_time": 0.05,
    }


def build_model(name: str, channel: str | None, spatial: str | None):
    """``(model in eval mode, input shape)``: registry model ``name`` (seed 0) symmetrized as asked."""
    import torch

    import weightsym as ws
    from weightsym.models import create_model, model_info

    torch.manual_seed(0)
    model = create_model(name).eval()
    ws.symmetrize(model, channel=channel, spatial=spatial)
    return model, tuple(model_info(name)["input_shape"])
