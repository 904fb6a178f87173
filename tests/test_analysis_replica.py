"""Replica distance: zero for identical replicas, permutation invariance, determinism, recorded settings."""

import json

import pytest
import torch
from torch import nn

from weightsym.analysis import effective_weights, pairwise_distances, replica_distance


def mlp(hidden=16):
    return nn.Sequential(nn.Linear(10, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 3))


def small_cnn():
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 6, 3, stride=2),
                         nn.ReLU(), nn.Flatten(), nn.Linear(6 * 3 * 3, 3))


@pytest.fixture(scope="module")
def data():
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(400, 10, generator=generator)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    return x, y


def permute_hidden(model, seed=0):
    """A copy of an MLP/CNN with the hidden units of every hidden layer permuted (same function)."""
    model = pickle_copy(model)
    generator = torch.Generator().manual_seed(seed)
    layers = [m for m in model if isinstance(m, (nn.Linear, nn.Conv2d))]
    norms = {id(m): m for m in model if isinstance(m, nn.BatchNorm2d)}
    with torch.no_grad():
        for index, layer in enumerate(layers[:-1]):
            perm = torch.randperm(layer.weight.shape[0], generator=generator)
            layer.weight.copy_(layer.weight[perm])
            layer.bias.copy_(layer.bias[perm])
            position = list(model).index(layer)
            following = list(model)[position + 1]
            if id(following) in norms:
                for tensor in (following.weight, following.bias, following.running_mean, following.running_var):
                    tensor.copy_(tensor[perm])
            nxt = layers[index + 1]
            if isinstance(nxt, nn.Linear) and isinstance(layer, nn.Conv2d):  # flatten: permute channel blocks
                rest = nxt.weight.shape[1] // layer.weight.shape[0]
                cols = (perm[:, None] * rest + torch.arange(rest)).flatten()
                nxt.weight.copy_(nxt.weight[:, cols])
            else:
                nxt.weight.copy_(nxt.weight[:, perm])
    return model


def pickle_copy(model):
    import copy

    return copy.deepcopy(model)


@pytest.mark.parametrize("metric", ["function", "weights"])
def test_identical_replicas_have_distance_zero(data, metric):
    result = replica_distance(mlp, data, replicas=3, steps=15, subset=128, probe_size=64, metric=metric, identical=True)
    assert result.mean == 0.0 and result.std == 0.0
    assert torch.equal(result.pairwise, torch.zeros(3, 3, dtype=torch.float64))


@pytest.mark.parametrize("metric", ["function", "weights"])
def test_different_initialisations_give_positive_reproducible_distance(data, metric):
    kwargs = dict(replicas=3, steps=20, subset=128, probe_size=64, metric=metric, seed=1)
    first = replica_distance(mlp, data, **kwargs)
    second = replica_distance(mlp, data, **kwargs)
    assert first.mean > 1e-3
    assert torch.equal(first.pairwise, second.pairwise)
    assert torch.equal(first.pairwise, first.pairwise.T) and bool((first.pairwise.diagonal() == 0).all())
    off = first.pairwise[torch.triu_indices(3, 3, 1).unbind()]
    assert first.mean == pytest.approx(float(off.mean())) and first.std == pytest.approx(float(off.std(unbiased=False)))
    if metric == "function":
        assert first.mean <= 1.0
        assert first.details["disagreement"].shape == (3, 3)
    else:
        assert set(first.details["per_layer"]) == {"0.weight", "2.weight", "4.weight"}


@pytest.mark.parametrize("metric", ["function", "weights"])
def test_invariant_to_permuting_hidden_units(metric):
    torch.manual_seed(0)
    a = mlp()
    b = permute_hidden(a)
    assert not torch.equal(a[0].weight, b[0].weight)
    probe = torch.randn(128, 10)
    distances, _ = pairwise_distances([a, b], metric, probe)
    assert float(distances[0, 1]) < 1e-6
    other, _ = pairwise_distances([a, mlp()], metric, probe)
    assert float(other[0, 1]) > 1e-2


@pytest.mark.parametrize("metric", ["function", "weights"])
def test_invariant_to_permuting_conv_channels(metric):
    torch.manual_seed(0)
    a = small_cnn()
    a.train()
    a(torch.randn(32, 1, 8, 8))  # non-trivial batch-norm statistics
    b = permute_hidden(a, seed=3)
    distances, _ = pairwise_distances([a, b], metric, torch.randn(64, 1, 8, 8))
    assert float(distances[0, 1]) < 1e-6
    assert a.training and b.training  # flags restored


def test_effective_weights_use_dense_weights_of_symmetrized_layers():
    import weightsym as ws

    net = nn.Sequential(nn.Linear(6, 8), nn.Linear(8, 8), nn.Linear(8, 8), nn.Linear(8, 2))
    ws.symmetrize(net, channel="triangular")
    names = [name for name, _ in effective_weights(net)]
    assert names == ["0.weight", "1.weight", "2.weight", "3.weight"]
    dense = dict(effective_weights(net))["1.weight"]
    assert dense.shape == (8, 8) and torch.equal(dense, dense.T)


def test_settings_dataset_input_and_rng_untouched(data):
    x, y = data
    dataset = [(x[i], int(y[i])) for i in range(300)]
    state = torch.get_rng_state()
    result = replica_distance(mlp, dataset, replicas=2, steps=5, batch_size=32, subset=200, probe_size=50, lr=0.1)
    assert torch.equal(torch.get_rng_state(), state)
    assert result.settings["probe"] == "held-out" and result.settings["probe_size"] == 50
    assert result.settings["lr"] == 0.1 and result.settings["batch_size"] == 32 and result.settings["steps"] == 5
    assert len(result.final_loss) == 2
    saved = json.loads(json.dumps(result.to_dict()))  # JSON-ready, and the numbers survive the round trip
    assert saved["mean"] == result.mean and saved["pairwise"] == result.pairwise.tolist()
    assert saved["settings"]["steps"] == 5 and len(saved["final_loss"]) == 2
    small = replica_distance(mlp, dataset, replicas=2, steps=5, subset=300, probe_size=50)
    assert small.settings["probe"] == "train"


def test_bad_arguments(data):
    with pytest.raises(ValueError, match="metric"):
        replica_distance(mlp, data, metric="cosine")
    with pytest.raises(ValueError, match="at least 2"):
        replica_distance(mlp, data, replicas=1)
