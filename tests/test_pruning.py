"""Pruning checked against PyTorch's own pruning on several architectures and amounts, structured pruning against
the masked dense network on random MLPs and CNNs, feature pruning against a hand ranking, and bad input."""
import copy
import io
import pickle

import numpy as np
import pytest
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.tree import DecisionTreeClassifier
from torch import nn
from torch.nn.utils import prune

from modelopt_nb.core import cnn, fit, load_dataset, mlp
from modelopt_nb.measure import count_params, macs
from modelopt_nb.pruning import (
    copy_model,
    layer_sparsity,
    load_pruned,
    make_permanent,
    prune_features,
    prune_gradually,
    prune_structured,
    prune_unstructured,
    sensitivity_scan,
    sparsity,
    sparsity_schedule,
    to_sparse_csr,
    units_to_keep,
    zero_units,
)

MODELS = {
    "mlp": lambda: mlp([64, 32, 16, 10], seed=1),
    "mlp-dropout": lambda: mlp([64, 40, 10], dropout=0.2, seed=2),
    "cnn": lambda: cnn((8, 8), 10, seed=3),
    "cnn-bn": lambda: cnn((8, 8), 10, channels=(6, 12), batchnorm=True, seed=4),
}


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


def _randomise_batchnorm(model):
    "Give BatchNorm layers non-trivial statistics and affine parameters, as training would."
    generator = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=generator))
            m.running_var.copy_(torch.rand(n, generator=generator) + 0.5)
            m.weight.data.copy_(torch.randn(n, generator=generator))
            m.bias.data.copy_(torch.randn(n, generator=generator))
    return model.eval()


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("amount", [0.0, 0.3, 0.77, 0.95])
def test_global_matches_torch(name, amount):
    model = MODELS[name]()
    ours = prune_unstructured(model, amount)
    theirs = copy.deepcopy(model)
    layers = [m for m in theirs.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    prune.global_unstructured([(m, "weight") for m in layers], prune.L1Unstructured, amount=amount)
    ours_layers = [m for m in ours.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    for a, b in zip(ours_layers, layers):
        assert torch.equal(a.weight_mask, b.weight_mask)
    total = sum(m.weight.numel() for m in layers)
    assert sparsity(ours) == pytest.approx(round(amount * total) / total)
    assert sparsity(model) == 0.0  # input untouched
    assert not any(hasattr(m, "weight_mask") for m in model.modules())


@pytest.mark.parametrize("name", MODELS)
def test_layer_scope_matches_torch(name):
    model = MODELS[name]()
    ours = prune_unstructured(model, 0.6, scope="layer")
    for (layer_name, a), b in zip([(n, m) for n, m in ours.named_modules() if hasattr(m, "weight_mask")],
                                  [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]):
        expected = prune.l1_unstructured(copy.deepcopy(b), "weight", 0.6).weight_mask
        assert torch.equal(a.weight_mask, expected), layer_name
    assert all(v == pytest.approx(0.6, abs=0.01) for v in layer_sparsity(ours).values())


def test_repruning_reaches_the_total_amount_and_never_unprunes():
    model = mlp([64, 32, 10], seed=0)
    first = prune_unstructured(model, 0.5)
    second = prune_unstructured(first, 0.75)
    assert sparsity(second) == pytest.approx(0.75, abs=1e-3)
    assert bool(((first[0].weight == 0) <= (second[0].weight == 0)).all())  # what was zero stays zero
    assert sparsity(prune_unstructured(second, 0.2)) == pytest.approx(0.75, abs=1e-3)


def test_zeros_survive_fit_deepcopy_pickle_and_permanent(digits):
    pruned = prune_unstructured(mlp([64, 32, 10], seed=0), 0.9)
    zeros = [m.weight == 0 for m in pruned if isinstance(m, nn.Linear)]
    fit(pruned, digits.X_train, digits.y_train, epochs=2, weight_decay=1e-3, seed=0)
    for z, m in zip(zeros, [m for m in pruned if isinstance(m, nn.Linear)]):
        assert bool((m.weight[z] == 0).all())
    pickled = pickle.loads(pickle.dumps(copy.deepcopy(pruned)))
    X = torch.from_numpy(digits.X_test)
    with torch.no_grad():
        assert torch.equal(pickled(X), pruned(X))
        assert torch.equal(make_permanent(pruned)(X), pruned(X))
    assert count_params(pruned, nonzero=True) == count_params(make_permanent(pruned), nonzero=True)


def test_copy_model_works_on_models_pruned_by_torch_directly():
    model = mlp([8, 4, 2], seed=0)
    prune.l1_unstructured(model[0], "weight", 0.5)
    model(torch.randn(3, 8)).sum().backward()  # weight is now an autograd result
    with pytest.raises(RuntimeError):
        copy.deepcopy(model)
    copied = copy_model(model)
    assert torch.equal(copied[0].weight, model[0].weight.detach())
    assert model[0].weight.grad_fn is not None  # the original is left as it was
    assert sparsity(prune_unstructured(model, 0.6)) > 0


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("amount", [0.1, 0.5, 0.9])
def test_structured_equals_masked_dense(name, amount):
    model = _randomise_batchnorm(MODELS[name]())
    small = prune_structured(model, amount)
    X = torch.rand(50, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        torch.testing.assert_close(small.eval()(X), zero_units(model, amount).eval()(X), atol=1e-5, rtol=1e-4)
        assert model(X).shape == small(X).shape
    assert type(small) is nn.Sequential
    assert [type(m) for m in small] == [type(m) for m in model]
    assert count_params(small) < count_params(model)
    assert macs(small, (64,)) < macs(model, (64,))
    for i, kept in units_to_keep(model, amount).items():
        assert small[i].weight.shape[0] == max(1, model[i].weight.shape[0] - round(amount * model[i].weight.shape[0]))
        assert len(kept) == small[i].weight.shape[0]


def test_structured_parameter_count_mlp():
    small = prune_structured(mlp([784, 300, 100, 10], seed=0), 0.5)
    assert count_params(small) == 784 * 150 + 150 + 150 * 50 + 50 + 50 * 10 + 10
    assert units_to_keep(mlp([10, 3, 2]), 0.9)[0].numel() == 1  # at least one unit kept


def test_structured_on_a_masked_model_uses_the_masked_weights():
    model = mlp([64, 32, 10], seed=0)
    pruned = prune_unstructured(model, 0.5)
    small = prune_structured(pruned, 0.5)
    X = torch.rand(20, 64)
    with torch.no_grad():
        torch.testing.assert_close(small(X), zero_units(make_permanent(pruned), 0.5)(X))
    assert not any(hasattr(m, "weight_mask") for m in small.modules())


def test_structured_round_trip_weights_only():
    small = prune_structured(_randomise_batchnorm(MODELS["cnn-bn"]()), 0.5)
    buffer = io.BytesIO()
    torch.save(small.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    rebuilt = cnn((8, 8), 10, channels=(state["1.weight"].shape[0], state["5.weight"].shape[0]), batchnorm=True)
    rebuilt.load_state_dict(state)
    X = torch.rand(5, 64)
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(X), small.eval()(X))


def test_masked_round_trip_and_sparse_csr():
    pruned = prune_unstructured(mlp([64, 32, 10], seed=0), 0.8)
    buffer = io.BytesIO()
    torch.save(pruned.state_dict(), buffer)
    buffer.seek(0)
    reloaded = load_pruned(mlp([64, 32, 10]), torch.load(buffer, weights_only=True))
    X = torch.rand(7, 64)
    with torch.no_grad():
        assert torch.equal(reloaded(X), pruned(X))
        torch.testing.assert_close(to_sparse_csr(pruned)(X), pruned(X))


@pytest.mark.parametrize("bad", [1.0, -0.1, 1.5, "0.5", None, True])
def test_bad_amounts(bad):
    model = mlp([8, 4, 2])
    for call in (lambda: prune_unstructured(model, bad), lambda: prune_structured(model, bad)):
        with pytest.raises(ValueError, match="`amount` must be a fraction in \\[0, 1\\)"):
            call()


def test_nothing_to_prune_and_unsupported_layers():
    with pytest.raises(ValueError, match="no Linear or Conv layer to prune"):
        prune_unstructured(nn.Sequential(nn.ReLU(), nn.Flatten()), 0.5)
    with pytest.raises(ValueError, match="no hidden Linear/Conv layer"):
        prune_structured(nn.Sequential(nn.Linear(4, 2)), 0.5)
    with pytest.raises(ValueError, match="cannot handle layer 1 \\(LayerNorm"):
        prune_structured(nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 2)), 0.5)
    with pytest.raises(ValueError, match="cannot handle layer 0 \\(Conv2d.*grouped"):
        prune_structured(nn.Sequential(nn.Conv2d(2, 4, 3, groups=2), nn.Flatten(), nn.Linear(4, 2)), 0.5)
    with pytest.raises(TypeError, match="must be an nn.Sequential"):
        prune_structured(nn.Linear(4, 2), 0.5)
    with pytest.raises(TypeError, match="must be a torch nn.Module"):
        prune_unstructured(LogisticRegression(), 0.5)


@pytest.mark.parametrize("dataset", ["digits", "wine", "breast_cancer"])
@pytest.mark.parametrize("amount", [0.0, 0.5, 0.8])
def test_prune_features_keeps_the_largest_coefficients(dataset, amount):
    data = load_dataset(dataset)
    pipe = prune_features(LogisticRegression(max_iter=3000), data.X_train, data.y_train, amount)
    coef = pipe.named_steps["select"].estimator_.coef_
    n = data.X_train.shape[1]
    n_keep = n - round(amount * n)
    importance = np.abs(coef).sum(axis=0)
    kept = pipe.named_steps["select"].get_support(indices=True)
    assert len(kept) == n_keep
    assert importance[kept].min() >= np.sort(importance)[::-1][n_keep - 1] - 1e-12
    assert pipe.predict(data.X_test).shape == data.y_test.shape


def test_prune_features_with_importances_and_bad_input(digits):
    pipe = prune_features(DecisionTreeClassifier(random_state=0), digits.X_train, digits.y_train, 0.5)
    assert pipe.named_steps["select"].get_support().sum() == 32
    with pytest.raises(ValueError, match="`amount`"):
        prune_features(LogisticRegression(), digits.X_train, digits.y_train, 1.0)
    with pytest.raises(ValueError, match="NaN"):
        prune_features(LogisticRegression(), np.full((4, 2), np.nan), [0, 1, 0, 1], 0.5)


def test_schedules_and_gradual_pruning(digits):
    for kind in ("cubic", "geometric", "linear"):
        steps = sparsity_schedule(0.9, 5, kind)
        assert steps[-1] == pytest.approx(0.9) and all(a <= b for a, b in zip(steps, steps[1:]))
    model = mlp([64, 32, 10], seed=0)
    pruned = prune_gradually(model, digits.X_train, digits.y_train, 0.9, steps=3, epochs=3)
    assert sparsity(pruned) == pytest.approx(0.9, abs=1e-3)
    assert sparsity(model) == 0.0


def test_sensitivity_scan_shape(digits):
    model = fit(mlp([64, 32, 10], seed=0), digits.X_train, digits.y_train, epochs=3)
    scan = sensitivity_scan(model, digits.X_test, digits.y_test, sparsities=(0.5, 0.9))
    assert list(scan.columns) == ["0", "2"] and list(scan.index) == [0.5, 0.9]
    assert ((scan >= 0) & (scan <= 1)).all().all()


@pytest.mark.parametrize("make", [lambda: mlp([784, 300, 100, 10], seed=0), lambda: cnn((28, 28), 10, batchnorm=True, seed=0)])
def test_prune_structured_keeps_every_tensor_on_the_models_device(make):
    "Parameters on the meta device stand in for CUDA: every index the pruning builds must follow them there."
    model = make().to("meta")
    small = prune_structured(model, 0.5)
    assert all(p.device.type == "meta" for p in small.parameters())
    assert small(torch.zeros(2, 784, device="meta")).shape == (2, 10)
    assert count_params(small) < count_params(make())
