"""Pruning checked against PyTorch's own pruning on several architectures and amounts; structured
pruning against the dense network whose next layers ignore the removed units; N:M masks, sparse
files and CSR layers against their definitions; feature pruning against a hand ranking;
bad input."""
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
    SparseLinear,
    apply_masks,
    copy_model,
    count_weights,
    layer_sparsity,
    load_pruned,
    load_sparse,
    make_permanent,
    n_m_mask,
    prune_features,
    prune_gradually,
    prune_n_m,
    prune_structured,
    prune_unstructured,
    pruning_masks,
    save_sparse,
    sensitivity_scan,
    sparsity,
    sparsity_plan,
    sparsity_schedule,
    structured_groups,
    threshold_amount,
    to_sparse_csr,
    unit_importance,
    units_to_keep,
)

MODELS = {
    "mlp": lambda: mlp([64, 32, 16, 10], seed=1),
    "mlp-dropout": lambda: mlp([64, 40, 10], dropout=0.2, seed=2),
    "cnn": lambda: cnn((8, 8), 10, seed=3),
    "cnn-bn": lambda: cnn((8, 8), 10, channels=(6, 12), batchnorm=True, seed=4),
    "sigmoid": lambda: nn.Sequential(nn.Linear(64, 24), nn.Sigmoid(), nn.Linear(24, 12), nn.Tanh(),
                                     nn.Linear(12, 10)),
}
CONV_OR_LINEAR = (nn.Linear, nn.Conv2d)


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


def _zero_removed_inputs(model, amount, importance="l1", **kwargs):
    "Reference: the dense copy whose next layers ignore the units prune_structured removes."
    reference = make_permanent(model)
    groups = structured_groups(reference)
    scores = unit_importance(reference, groups, importance, **kwargs)
    for group in groups:
        consumer = reference.get_submodule(group.consumers[0])
        n_units = len(scores[group.producer])
        kept = units_to_keep(scores[group.producer], amount)
        units = torch.zeros(n_units).index_fill_(0, kept, 1.0)
        columns = units.repeat_interleave(consumer.weight.shape[1] // n_units)
        mask = columns.view(1, -1, *[1] * (consumer.weight.dim() - 2)).expand_as(consumer.weight)
        prune.custom_from_mask(consumer, "weight", mask)
    return reference


def _X(n=50, width=64, seed=0):
    return torch.rand(n, width, generator=torch.Generator().manual_seed(seed))


# unstructured pruning -------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["mlp", "mlp-dropout", "cnn", "cnn-bn"])
@pytest.mark.parametrize("amount", [0.0, 0.3, 0.77, 0.95])
def test_global_matches_torch(name, amount):
    model = MODELS[name]()
    ours = prune_unstructured(model, amount)
    theirs = copy.deepcopy(model)
    layers = [m for m in theirs.modules() if isinstance(m, CONV_OR_LINEAR)]
    prune.global_unstructured([(m, "weight") for m in layers], prune.L1Unstructured, amount=amount)
    ours_layers = [m for m in ours.modules() if isinstance(m, CONV_OR_LINEAR)]
    for a, b in zip(ours_layers, layers):
        assert torch.equal(a.weight_mask, b.weight_mask)
    total = sum(m.weight.numel() for m in layers)
    assert sparsity(ours) == pytest.approx(round(amount * total) / total)
    assert sparsity(model) == 0.0  # input untouched
    assert not any(hasattr(m, "weight_mask") for m in model.modules())


@pytest.mark.parametrize("name", ["mlp", "cnn-bn"])
def test_layer_scope_matches_torch(name):
    model = MODELS[name]()
    ours = prune_unstructured(model, 0.6, scope="layer")
    masked = [m for m in ours.modules() if hasattr(m, "weight_mask")]
    originals = [m for m in model.modules() if isinstance(m, CONV_OR_LINEAR)]
    for a, b in zip(masked, originals):
        expected = prune.l1_unstructured(copy.deepcopy(b), "weight", 0.6).weight_mask
        assert torch.equal(a.weight_mask, expected)
    assert all(v == pytest.approx(0.6, abs=0.01) for v in layer_sparsity(ours).values())


def test_dict_amounts_need_layer_scope():
    model = mlp([64, 32, 10], seed=0)
    for scope in ("global", None):
        kwargs = {} if scope is None else {"scope": scope}
        with pytest.raises(ValueError, match="pass scope='layer'"):
            prune_unstructured(model, {"0": 0.5}, **kwargs)
    pruned = prune_unstructured(model, {"0": 0.5}, scope="layer")
    assert layer_sparsity(pruned) == pytest.approx({"0": 0.5, "2": 0.0})
    with pytest.raises(ValueError, match="unknown layers \\['7'\\]"):
        prune_unstructured(model, {"7": 0.5}, scope="layer")
    with pytest.raises(ValueError, match="amount\\['0'\\]"):
        prune_unstructured(model, {"0": 1.5}, scope="layer")


def test_repruning_reaches_the_total_amount_and_never_unprunes():
    model = mlp([64, 32, 10], seed=0)
    first = prune_unstructured(model, 0.5)
    second = prune_unstructured(first, 0.75)
    assert sparsity(second) == pytest.approx(0.75, abs=1e-3)
    assert bool(((first[0].weight == 0) <= (second[0].weight == 0)).all())  # zeros stay zero
    assert sparsity(prune_unstructured(second, 0.2)) == pytest.approx(0.75, abs=1e-3)


def test_threshold_amount_is_the_fraction_below_the_threshold():
    model = mlp([64, 32, 10], seed=0)
    weights = torch.cat([model[0].weight.detach().flatten(), model[2].weight.detach().flatten()])
    for amount in (0.1, 0.5, 0.9):
        tau = float(weights.abs().quantile(amount))
        below = float((weights.abs() < tau).float().mean())
        assert threshold_amount(model, tau) == pytest.approx(below)
        pruned = prune_unstructured(model, threshold_amount(model, tau))
        assert bool((pruned[0].weight[model[0].weight.abs() >= tau] != 0).all())
    with pytest.raises(ValueError, match="`threshold` must be a number >= 0"):
        threshold_amount(model, -1.0)


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
    regrown = fit(make_permanent(pruned), digits.X_train, digits.y_train, epochs=1, seed=0)
    assert sparsity(regrown) < 0.5 * sparsity(pruned)  # no masks: the zeros grow back


def test_the_detaching_hook_keeps_gradients_and_skips_inference():
    model = prune_unstructured(mlp([8, 4, 2], seed=0), 0.5)
    with torch.no_grad():
        model(torch.randn(3, 8))
    assert model[0].weight.grad_fn is None
    model(torch.randn(3, 8)).sum().backward()
    assert model[0].weight.grad_fn is None  # detached after the pass, so it deep-copies
    assert model[0].weight_orig.grad is not None
    assert bool((model[0].weight_orig.grad[model[0].weight_mask == 0] == 0).all())
    copy.deepcopy(model)


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


def test_count_weights_leaves_out_biases():
    model = prune_unstructured(mlp([64, 32, 10], seed=0), 0.5)
    assert count_weights(model) == 64 * 32 + 32 * 10
    assert count_weights(model, nonzero=True) == round(0.5 * (64 * 32 + 32 * 10))
    assert count_params(model, nonzero=True) == count_weights(model, nonzero=True) + 32 + 10


def test_masks_move_between_networks():
    trained = prune_unstructured(mlp([64, 32, 10], seed=0), 0.8)
    masks = pruning_masks(trained)
    ticket = apply_masks(mlp([64, 32, 10], seed=5), masks)
    assert all(torch.equal(ticket.get_submodule(n).weight_mask, m) for n, m in masks.items())
    assert torch.equal(pruning_masks(make_permanent(trained))["0"], masks["0"])
    with pytest.raises(ValueError, match="mask of layer '0' has shape"):
        apply_masks(mlp([64, 16, 10]), masks)
    with pytest.raises(ValueError, match="unknown layers \\['9'\\]"):
        apply_masks(mlp([64, 32, 10]), {"9": masks["0"]})


# schedules and scans ----------------------------------------------------------------------------

def test_schedules_and_gradual_pruning(digits):
    for kind in ("cubic", "geometric", "linear"):
        steps = sparsity_schedule(0.9, 5, kind)
        assert steps[-1] == pytest.approx(0.9) and all(a <= b for a, b in zip(steps, steps[1:]))
    assert sparsity_schedule(0.99, 2, "geometric") == pytest.approx([0.9, 0.99])
    with pytest.raises(ValueError, match="`steps` must be a positive integer"):
        sparsity_schedule(0.9, 0)
    model = mlp([64, 32, 10], seed=0)
    pruned = prune_gradually(model, digits.X_train, digits.y_train, 0.9, steps=3, epochs=3)
    assert sparsity(pruned) == pytest.approx(0.9, abs=1e-3)
    assert sparsity(model) == 0.0
    with pytest.raises(ValueError, match="`epochs` must be an integer >= steps \\(4\\)"):
        prune_gradually(model, digits.X_train, digits.y_train, 0.9, steps=4, epochs=2)


def test_sensitivity_scan_and_plan(digits):
    model = fit(mlp([64, 32, 10], seed=0), digits.X_train, digits.y_train, epochs=3)
    scan = sensitivity_scan(model, digits.X_test, digits.y_test, sparsities=(0.1, 0.5, 0.9))
    assert list(scan.columns) == ["0", "2"] and list(scan.index) == [0.1, 0.5, 0.9]
    assert ((scan >= 0) & (scan <= 1)).all().all()
    by_hand = scan.copy()
    by_hand.loc[:, :] = [[0.95, 0.95], [0.94, 0.80], [0.70, 0.60]]
    assert sparsity_plan(by_hand, 0.95, tolerance=0.02) == {"0": 0.5, "2": 0.1}
    assert sparsity_plan(by_hand, 0.99, tolerance=0.01) == {"0": 0.0, "2": 0.0}


# N:M ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("n,m", [(2, 4), (1, 4), (1, 2), (4, 8), (3, 8), (4, 4)])
@pytest.mark.parametrize("shape", [(12, 16), (6, 4, 2, 2)])
def test_n_m_mask_keeps_exactly_the_n_largest_of_every_group(n, m, shape):
    weight = torch.randn(*shape, generator=torch.Generator().manual_seed(n * 10 + m))
    mask = n_m_mask(weight, n, m)
    groups = weight.abs().reshape(shape[0], -1, m)
    kept = mask.reshape(shape[0], -1, m)
    assert bool((kept.sum(-1) == n).all())
    smallest_kept = groups.where(kept == 1, torch.inf).min(-1).values
    largest_dropped = groups.where(kept == 0, -torch.inf).max(-1).values
    assert bool((smallest_kept >= largest_dropped).all())


def test_prune_n_m_on_networks(digits):
    pruned = prune_n_m(mlp([64, 32, 16, 10], seed=0))
    assert sparsity(pruned) == 0.5 and set(layer_sparsity(pruned).values()) == {0.5}
    fit(pruned, digits.X_train, digits.y_train, epochs=1, seed=0)
    rows = pruned[0].weight.detach().reshape(32, -1, 4)
    assert bool(((rows != 0).sum(-1) <= 2).all())  # the pattern survives fine-tuning
    both = prune_n_m(prune_unstructured(mlp([64, 32, 10], seed=0), 0.8), 2, 4)
    assert sparsity(both) >= 0.8  # combined with the mask already there
    only = prune_n_m(cnn((8, 8), 10, seed=0), layers=["4", "8"])
    assert layer_sparsity(only)["1"] == 0.0 and layer_sparsity(only)["4"] == 0.5
    with pytest.raises(ValueError, match="layer '1': rows of 9 weights"):
        prune_n_m(cnn((8, 8), 10, seed=0))
    with pytest.raises(ValueError, match="`n` must be an integer in \\[1, m=4\\]"):
        prune_n_m(mlp([64, 10]), 5, 4)
    with pytest.raises(ValueError, match="unknown layers"):
        prune_n_m(mlp([64, 10]), layers=["3"])


# sparse formats -----------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["mlp", "cnn-bn"])
@pytest.mark.parametrize("amount", [0.0, 0.5, 0.95])
def test_save_sparse_round_trips_exactly(name, amount, tmp_path):
    model = prune_unstructured(_randomise_batchnorm(MODELS[name]()), amount)
    path = tmp_path / "model.pt"
    written = save_sparse(model, path)
    assert written == path.stat().st_size
    reloaded = load_sparse(path, _randomise_batchnorm(MODELS[name]()).train())
    X = _X()
    with torch.no_grad():
        assert torch.equal(reloaded.eval()(X), model.eval()(X))
    assert not any(hasattr(m, "weight_mask") for m in reloaded.modules())


def test_save_sparse_is_small_and_can_keep_masks(digits):
    lenet = mlp([784, 300, 100, 10], seed=0)
    dense = io.BytesIO()
    torch.save(lenet.state_dict(), dense)
    pruned = prune_unstructured(lenet, 0.9)
    buffer = io.BytesIO()
    written = save_sparse(pruned, buffer)
    assert written < 0.3 * dense.getbuffer().nbytes
    assert save_sparse(lenet, io.BytesIO()) <= 1.01 * dense.getbuffer().nbytes  # dense stays dense
    buffer.seek(0)
    masked = load_sparse(buffer, mlp([784, 300, 100, 10]), masked=True)
    assert sparsity(masked) == pytest.approx(0.9, abs=1e-4)
    small = load_dataset("mnist")
    fit(masked, small.X_train[:500], small.y_train[:500], epochs=1)
    assert sparsity(masked) == pytest.approx(0.9, abs=1e-4)


def test_save_sparse_handles_long_gaps_and_empty_tensors():
    model = mlp([600, 3, 2], seed=0)
    with torch.no_grad():
        model[0].weight.zero_()
        model[0].weight[0, 0], model[0].weight[2, 599], model[0].weight[1, 300] = 1.0, -2.0, 3.0
        model[2].weight.zero_()
    buffer = io.BytesIO()
    save_sparse(model, buffer)
    buffer.seek(0)
    reloaded = load_sparse(buffer, mlp([600, 3, 2], seed=1))
    assert torch.equal(reloaded[0].weight, model[0].weight)
    assert torch.equal(reloaded[2].weight, model[2].weight)


def test_load_sparse_refuses_other_files():
    buffer = io.BytesIO()
    torch.save({"weight": torch.ones(2)}, buffer)
    buffer.seek(0)
    with pytest.raises(ValueError, match="not a file written by save_sparse"):
        load_sparse(buffer, mlp([4, 2]))


def test_sparse_linear_matches_linear_on_any_leading_shape():
    layer = prune_unstructured(nn.Sequential(nn.Linear(16, 8)), 0.7)
    for bias in (True, False):
        if not bias:
            layer = make_permanent(layer)
            layer[0].bias = None
        sparse = to_sparse_csr(layer)
        assert isinstance(sparse[0], SparseLinear) and sparse[0].weight.layout == torch.sparse_csr
        assert sparse[0].weight.col_indices().dtype == torch.int32
        X = torch.randn(2, 3, 5, 16)
        with torch.no_grad():
            torch.testing.assert_close(sparse(X), layer(X))
        assert count_params(sparse) == count_params(layer)
        assert count_params(sparse, nonzero=True) == count_params(layer, nonzero=True)


def test_masked_round_trip_with_load_pruned():
    pruned = prune_unstructured(mlp([64, 32, 10], seed=0), 0.8)
    buffer = io.BytesIO()
    torch.save(pruned.state_dict(), buffer)
    buffer.seek(0)
    reloaded = load_pruned(mlp([64, 32, 10]), torch.load(buffer, weights_only=True))
    X = torch.rand(7, 64)
    with torch.no_grad():
        assert torch.equal(reloaded(X), pruned(X))
        torch.testing.assert_close(to_sparse_csr(pruned)(X), pruned(X))


# structured pruning -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("amount", [0.1, 0.5, 0.9])
def test_structured_equals_the_dense_network_ignoring_removed_units(name, amount):
    model = _randomise_batchnorm(MODELS[name]())
    small = prune_structured(model, amount)
    X = _X()
    with torch.no_grad():
        expected = _zero_removed_inputs(model, amount).eval()(X)
        torch.testing.assert_close(small.eval()(X), expected, atol=1e-5, rtol=1e-4)
    assert [type(m) for m in small] == [type(m) for m in model]
    assert count_params(small) < count_params(model)
    assert macs(small, (64,)) < macs(model, (64,))
    for group in structured_groups(model):
        n = model.get_submodule(group.producer).weight.shape[0]
        assert small.get_submodule(group.producer).weight.shape[0] == max(1, n - round(amount * n))


def test_l1_ranking_is_torchs_ln_structured():
    model = mlp([64, 40, 10], seed=3)
    for amount in (0.25, 0.5, 0.75):
        theirs = prune.ln_structured(copy.deepcopy(model[0]), "weight", amount=amount, n=1, dim=0)
        scores = unit_importance(model, structured_groups(model))["0"]
        kept_by_torch = theirs.weight_mask[:, 0].nonzero().flatten()
        assert torch.equal(kept_by_torch, units_to_keep(scores, amount))


def test_taylor_scores_are_the_squared_first_order_change(digits):
    model = fit(mlp([64, 16, 10], seed=0), digits.X_train, digits.y_train, epochs=2)
    X, y = digits.X_train[:300], digits.y_train[:300]
    gradient_before = model[0].weight.grad.clone()
    scores = unit_importance(model, structured_groups(model), "taylor", X=X, y=y)["0"]
    reference = copy.deepcopy(model)
    loss = nn.functional.cross_entropy(reference(torch.from_numpy(X)), torch.from_numpy(y))
    loss.backward()
    layer = reference[0]
    change = (layer.weight.grad * layer.weight).sum(1) + layer.bias.grad * layer.bias
    torch.testing.assert_close(scores, change.detach() ** 2, rtol=1e-4, atol=1e-10)
    assert torch.equal(model[0].weight.grad, gradient_before)  # the input model is left alone
    small = prune_structured(model, 0.5, importance="taylor", X=X, y=y)
    with torch.no_grad():
        expected = _zero_removed_inputs(model, 0.5, "taylor", X=X, y=y)(torch.from_numpy(X))
        torch.testing.assert_close(small(torch.from_numpy(X)), expected, atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="importance='taylor' needs data"):
        prune_structured(model, 0.5, importance="taylor")
    with pytest.raises(ValueError, match="`importance` must be one of"):
        prune_structured(model, 0.5, importance="l2")


def test_structured_per_layer_amounts_and_random_baseline():
    model = mlp([64, 40, 20, 10], seed=0)
    small = prune_structured(model, {"2": 0.5})
    shapes = [tuple(m.weight.shape) for m in small if isinstance(m, nn.Linear)]
    assert shapes == [(40, 64), (10, 40), (10, 10)]
    with pytest.raises(ValueError, match="no prunable units"):
        prune_structured(model, {"4": 0.5})
    first, again = (prune_structured(model, 0.5, importance="random", seed=3) for _ in range(2))
    assert torch.equal(first[0].weight, again[0].weight)  # seeded
    other = prune_structured(model, 0.5, importance="random", seed=4)
    assert not torch.equal(first[0].weight, other[0].weight)


def test_structured_parameter_count_and_at_least_one_unit():
    small = prune_structured(mlp([784, 300, 100, 10], seed=0), 0.5)
    assert count_params(small) == 784 * 150 + 150 + 150 * 50 + 50 + 50 * 10 + 10
    assert units_to_keep(torch.rand(3), 0.9).numel() == 1


def test_structured_on_a_masked_model_uses_the_masked_weights():
    model = mlp([64, 32, 10], seed=0)
    pruned = prune_unstructured(model, 0.5)
    small = prune_structured(pruned, 0.5)
    X = torch.rand(20, 64)
    with torch.no_grad():
        torch.testing.assert_close(small(X), _zero_removed_inputs(make_permanent(pruned), 0.5)(X))
    assert not any(hasattr(m, "weight_mask") for m in small.modules())


def test_structured_round_trip_weights_only():
    small = prune_structured(_randomise_batchnorm(MODELS["cnn-bn"]()), 0.5)
    buffer = io.BytesIO()
    torch.save(small.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    channels = (state["1.weight"].shape[0], state["5.weight"].shape[0])
    rebuilt = cnn((8, 8), 10, channels=channels, batchnorm=True)
    rebuilt.load_state_dict(state)
    X = torch.rand(5, 64)
    with torch.no_grad():
        assert torch.equal(rebuilt.eval()(X), small.eval()(X))


@pytest.mark.parametrize("bad", [1.0, -0.1, 1.5, "0.5", None, True])
def test_bad_amounts(bad):
    model = mlp([8, 4, 2])
    calls = (lambda: prune_unstructured(model, bad), lambda: prune_structured(model, bad),
             lambda: units_to_keep(torch.rand(4), bad))
    for call in calls:
        with pytest.raises(ValueError, match="`amount` must be a fraction in \\[0, 1\\)"):
            call()


def test_nothing_to_prune_and_unsupported_layers():
    with pytest.raises(ValueError, match="no Linear or Conv layer to prune"):
        prune_unstructured(nn.Sequential(nn.ReLU(), nn.Flatten()), 0.5)
    with pytest.raises(ValueError, match="no hidden Linear/Conv layer"):
        prune_structured(nn.Sequential(nn.Linear(4, 2)), 0.5)
    with pytest.raises(ValueError, match="cannot handle layer 1 \\(LayerNorm"):
        prune_structured(nn.Sequential(nn.Linear(4, 8), nn.LayerNorm(8), nn.Linear(8, 2)), 0.5)
    with pytest.raises(ValueError, match="cannot handle layer 1 \\(Softmax"):
        prune_structured(nn.Sequential(nn.Linear(4, 8), nn.Softmax(1), nn.Linear(8, 2)), 0.5)
    with pytest.raises(ValueError, match="cannot handle layer 0 \\(Conv2d.*grouped"):
        grouped = nn.Sequential(nn.Conv2d(2, 4, 3, groups=2), nn.Flatten(), nn.Linear(4, 2))
        prune_structured(grouped, 0.5)
    with pytest.raises(TypeError, match="must be an nn.Sequential"):
        structured_groups(nn.Linear(4, 2))
    with pytest.raises(ValueError, match="no prunable channel group"):  # not a stack: graph pruning
        prune_structured(nn.Linear(4, 2), 0.5)
    with pytest.raises(TypeError, match="must be a torch nn.Module"):
        prune_unstructured(LogisticRegression(), 0.5)
    prune_structured(nn.Sequential(nn.Linear(4, 8), nn.PReLU(), nn.Linear(8, 2)), 0.5)  # one slope


# feature pruning ----------------------------------------------------------------------------------

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
    tree = DecisionTreeClassifier(random_state=0)
    pipe = prune_features(tree, digits.X_train, digits.y_train, 0.5)
    assert pipe.named_steps["select"].get_support().sum() == 32
    with pytest.raises(ValueError, match="`amount`"):
        prune_features(LogisticRegression(), digits.X_train, digits.y_train, 1.0)
    with pytest.raises(ValueError, match="NaN"):
        prune_features(LogisticRegression(), np.full((4, 2), np.nan), [0, 1, 0, 1], 0.5)
    with pytest.raises(TypeError, match="`estimator` must be a scikit-learn estimator"):
        prune_features("logreg", digits.X_train, digits.y_train, 0.5)


# devices ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("make", [lambda: mlp([784, 300, 100, 10], seed=0),
                                  lambda: cnn((28, 28), 10, batchnorm=True, seed=0)])
def test_prune_structured_keeps_every_tensor_on_the_models_device(make):
    "Parameters on the meta device stand in for CUDA: every index pruning builds must follow them."
    model = make().to("meta")
    small = prune_structured(model, 0.5)
    assert all(p.device.type == "meta" for p in small.parameters())
    assert small(torch.zeros(2, 784, device="meta")).shape == (2, 10)
    assert count_params(small) < count_params(make())


def test_unstructured_and_n_m_masks_stay_on_the_models_device():
    model = mlp([64, 32, 10], seed=0).to("meta")
    copies = (prune_unstructured(model, 0.5), prune_n_m(model), prune_structured(model, {"0": 0.5}))
    for pruned in copies:
        assert all(t.device.type == "meta" for t in [*pruned.parameters(), *pruned.buffers()])
