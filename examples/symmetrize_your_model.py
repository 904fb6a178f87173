"""Make a model you already have symmetric, train it a little, save and reload it, and turn it back into a plain one.

    python examples/symmetrize_your_model.py            # a few seconds on a CPU
"""

import tempfile
from pathlib import Path

import torch
from torch import nn

import weightsym as ws


def make_model() -> nn.Module:
    """Any PyTorch model: here a small CNN with square 3x3 convs (channel symmetries need in == out)."""
    return nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10),
    )


model = make_model()
report = ws.symmetrize(model, channel="triangular", spatial="hflip")  # first and last weight layers stay dense
print(report)
counts = ws.count_parameters(model)
print(f"stored {counts.stored:,} of {counts.dense:,} dense-equivalent parameters ({100 * counts.saved:.1f}% saved)")

# train as usual: the optimizer sees only the free values, and the symmetry holds bit for bit after every step
optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
x, y = torch.randn(64, 3, 16, 16), torch.randint(0, 10, (64,))
for step in range(20):
    loss = nn.functional.cross_entropy(model(x), y)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
print(f"loss after 20 steps: {loss.item():.3f}")
w = model[2].weight
assert torch.equal(w, w.transpose(0, 1)) and torch.equal(w, w.flip(-1))  # triangular and hflip, exactly

model.eval()
before = model(x)
with tempfile.TemporaryDirectory() as folder:
    path = Path(folder) / "model.safetensors"
    ws.save(model, path)  # the free values and each layer's symmetry; validated and checksummed when read
    print(f"saved {path.stat().st_size:,} bytes")
    twin = make_model()
    ws.symmetrize(twin, channel="triangular", spatial="hflip")
    ws.load(path, twin)  # into a model built the same way (ws.load_model rebuilds registry models by itself)
    assert torch.equal(twin.eval()(x), before)
print("reloaded: the same outputs")
ws.unsymmetrize(model)  # plain torch layers holding the dense symmetric weights
assert torch.allclose(model(x), before, atol=1e-6)
print("unsymmetrized: the same outputs from plain torch layers")
