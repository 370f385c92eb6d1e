"""Structured pruning through graphs (`modelopt_nb.graph_pruning`): the smaller network equals the
original with the removed channels zeroed, on residual, concatenating, depthwise and flattening
architectures, in eval and train mode; exact zeros prune to identical outputs; counts; refusals; the
input left alone; save and load; the same result as Torch-Pruning for the same channels."""
import copy
import io

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from modelopt_nb.core import cnn
from modelopt_nb.graph_pruning import (
    GraphPruningError,
    ResidualBlock,
    check_equivalence,
    dependency_groups,
    load_smaller,
    plan_removal,
    prune_groups,
    resnet,
)
from modelopt_nb.measure import count_params, macs
from modelopt_nb.pruning import prune_structured


class ResidualMLP(nn.Module):
    "A residual stream of odd width 7, two blocks of 11 hidden units, 3 outputs."
    def __init__(self, n_in=13, width=7, hidden=11, n_out=3):
        super().__init__()
        self.stem, self.head = nn.Linear(n_in, width), nn.Linear(width, n_out)
        self.blocks = nn.ModuleList(
            nn.Sequential(nn.Linear(width, hidden), nn.ReLU(), nn.Linear(hidden, width))
            for _ in range(2))

    def forward(self, x):
        h = F.relu(self.stem(x))
        for block in self.blocks: h = h + block(h)
        return self.head(h)


class DenseBlockNet(nn.Module):
    "Concatenation: `cat([h, conv(h)])` twice (DenseNet style), BatchNorm, a flatten to Linear."
    def __init__(self):
        super().__init__()
        self.stem, self.grow1, self.grow2 = (nn.Conv2d(1, 5, 3, padding=1),
                                             nn.Conv2d(5, 3, 3, padding=1),
                                             nn.Conv2d(8, 3, 3, padding=1))
        self.norm, self.head = nn.BatchNorm2d(11), nn.Linear(11 * 3 * 3, 4)

    def forward(self, x):
        h = F.relu(self.stem(x.view(x.size(0), 1, 7, 7)))
        h = torch.cat([h, F.relu(self.grow1(h))], dim=1)
        h = torch.cat([h, F.relu(self.grow2(h))], 1)
        h = F.max_pool2d(self.norm(h), 2)
        return self.head(h.view(h.shape[0], -1))


class InvertedResidual(nn.Module):
    "MobileNet-v2 style: 1×1 expand, depthwise 3×3, 1×1 project, added to the input stream."
    def __init__(self, width=5, expanded=9):
        super().__init__()
        self.stem = nn.Sequential(nn.Unflatten(1, (1, 6, 6)), nn.Conv2d(1, width, 3, padding=1),
                                  nn.BatchNorm2d(width))
        self.expand = nn.Sequential(nn.Conv2d(width, expanded, 1), nn.BatchNorm2d(expanded),
                                    nn.ReLU6())
        self.depthwise = nn.Sequential(nn.Conv2d(expanded, expanded, 3, padding=1, groups=expanded),
                                       nn.BatchNorm2d(expanded), nn.PReLU(expanded))
        self.project = nn.Sequential(nn.Conv2d(expanded, width, 1), nn.BatchNorm2d(width))
        self.head = nn.Linear(width, 3)

    def forward(self, x):
        h = self.stem(x)
        h = h + self.project(self.depthwise(self.expand(h)))
        return self.head(torch.flatten(h.mean((2, 3)), 1))


ARCHITECTURES = {
    "residual MLP": (lambda: ResidualMLP(), 13),
    "residual CNN, BatchNorm": (lambda: resnet((9, 9), 3, widths=(5, 7, 9), seed=0), 81),
    "concatenation": (lambda: DenseBlockNet(), 49),
    "depthwise": (lambda: InvertedResidual(), 36),
    "flatten to Linear": (lambda: cnn((8, 8), 3, channels=(5, 7), batchnorm=True, seed=0), 64),
}


def _random_norms(model):
    "BatchNorm statistics and affine parameters away from 0 and 1, so zeroing shows everywhere."
    generator = torch.Generator().manual_seed(1)
    uniform = lambda t, a, b: t.copy_(a + (b - a) * torch.rand(t.shape, generator=generator))
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
                uniform(m.running_mean, -1, 1), uniform(m.running_var, 0.5, 2)
                uniform(m.weight, 0.5, 2), uniform(m.bias, -1, 1)
    return model


def _build(name):
    make, n_features = ARCHITECTURES[name]
    torch.manual_seed(0)
    return _random_norms(make()), torch.randn(6, n_features)


@pytest.mark.parametrize("mode", ["eval", "train"])
@pytest.mark.parametrize("amount", [0.3, 0.5, 0.8])
@pytest.mark.parametrize("name", ARCHITECTURES)
def test_pruned_network_equals_the_zeroed_reference(name, amount, mode):
    model, X = _build(name)
    removal = plan_removal(model, amount)
    assert any(removal.removed), "something must be removed for the test to mean anything"
    small, reference = removal.apply(), removal.zeroed()
    assert count_params(small) < count_params(model)
    for net in (small, reference, model): getattr(net, mode)()
    with torch.no_grad():
        out, expected, original = small(X), reference(X), model(X)
    assert out.shape == original.shape
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(expected, original, atol=1e-3), "the zeroing must change the output"


@pytest.mark.parametrize("name", ARCHITECTURES)
def test_channels_already_zero_prune_to_identical_outputs(name):
    model, X = _build(name)
    removal = plan_removal(model, 0.5)
    doomed = removal.doomed()
    find = removal.analysis.ties.find
    with torch.no_grad():  # zero every removed channel where it is made and where it is carried
        for table in (removal.analysis.produced, removal.analysis.carried):
            for layer_name, channels in table.items():
                rows = [i for i, c in enumerate(channels) if find(c) in doomed]
                layer = model.get_submodule(layer_name)
                for tensor in (layer.weight, getattr(layer, "bias", None)):
                    if tensor is not None: tensor[rows] = 0
    again = plan_removal(model, 0.5)
    assert again.removed == removal.removed  # all-zero sets score lowest
    small = again.apply()
    with torch.no_grad():
        torch.testing.assert_close(small.eval()(X), model.eval()(X), rtol=0, atol=1e-6)


def test_parameter_counts_by_hand():
    small = prune_groups(ResidualMLP(), 0.5)  # stream 7 - round(3.5) = 3; hidden 11 - 6 = 5
    stem, blocks, head = 13 * 3 + 3, 2 * ((3 * 5 + 5) + (5 * 3 + 3)), 3 * 3 + 3
    assert count_params(small) == stem + blocks + head == 130
    half = prune_structured(resnet((28, 28), 10, seed=0), 0.5)
    narrow = resnet((28, 28), 10, widths=(8, 16, 32))  # what half of every group must leave
    assert count_params(half) == count_params(narrow) == 19_810
    assert macs(half, (784,)) == macs(narrow, (784,))
    assert [p.shape for p in half.parameters()] == [p.shape for p in narrow.parameters()]


def test_groups_of_the_residual_cnn():
    groups = dependency_groups(resnet((28, 28), 10))
    assert [g.producers for g in groups] == [
        ["1", "4.conv2"], ["4.conv1"], ["5.conv1"], ["5.conv2", "5.shortcut.0"], ["6.conv1"],
        ["6.conv2", "6.shortcut.0"], ["9"]]
    assert groups[0].carriers == ["2", "4.bn2"]
    assert groups[0].consumers == ["4.conv1", "5.conv1", "5.shortcut.0"]
    assert [(g.width, g.free) for g in groups] == [(16, 16), (16, 16), (32, 32), (32, 32),
                                                   (64, 64), (64, 64), (10, 0)]


class Square(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x): return x * x

    @staticmethod
    def backward(ctx, grad): return grad


class Stream(nn.Module):
    "A residual MLP whose stream goes through `step` before the head."
    def __init__(self, step, layer=None):
        super().__init__()
        self.net, self.step, self.layer = ResidualMLP(), step, layer

    def forward(self, x):
        h = F.relu(self.net.stem(x))
        h = self.step(h + self.net.blocks[0](h))
        return self.net.head(self.layer(h) if self.layer is not None else h)


@pytest.mark.parametrize("step, layer, message", [
    (lambda h: Square.apply(h), None, "node 'square_apply' (test_graph_pruning.Square.apply)"),
    (lambda h: h.view(-1, 7, 1).view(h.size(0), 7), None, "a reshape that may mix channels"),
    (lambda h: h[:, :5].repeat(1, 2)[:, :7], None, "indexing or slicing"),
    (lambda h: h.softmax(1), None, "method .softmax()"),
    (lambda h: h if h.sum() > 0 else -h, None, "torch.fx cannot trace the model"),
    (lambda h: h, nn.LayerNorm(7), "LayerNorm 'layer'"),
    (lambda h: h.sum(), None, "it reduces over every dim"),
])
def test_operations_without_a_rule_are_refused_by_name(step, layer, message):
    with pytest.raises(GraphPruningError, match="cannot") as error:
        prune_groups(Stream(step, layer), 0.5)
    assert message in str(error.value)


def test_other_refusals():
    grouped = nn.Sequential(nn.Unflatten(1, (4, 4, 4)), nn.Conv2d(4, 6, 3), nn.ReLU(),
                            nn.Conv2d(6, 6, 3, groups=2), nn.Flatten(), nn.Linear(24, 2))
    with pytest.raises(GraphPruningError, match=r"node '_3' \(Conv2d '3'\): grouped convolution"):
        prune_groups(grouped, 0.5)

    class Twice(nn.Module):
        def __init__(self): super().__init__(); self.a, self.b = nn.Linear(4, 4), nn.Linear(4, 2)
        def forward(self, x): return self.b(self.a(self.a(x)))
    with pytest.raises(GraphPruningError, match="called twice"):
        prune_groups(Twice(), 0.5)
    images = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 4, 3), nn.Flatten(),
                           nn.Linear(16, 2))
    with pytest.raises(GraphPruningError, match="rank 2, not 4"):
        prune_groups(images, 0.5)  # a model that reads images: say so with `example`
    example = torch.randn(3, 1, 6, 6)
    small = prune_groups(images, 0.5, example=example)
    assert small[0].out_channels == 2 and small(example).shape == (3, 2)
    with pytest.raises(ValueError, match="no prunable channel group"):
        prune_groups(nn.Linear(4, 2), 0.5)
    with pytest.raises(ValueError, match="no prunable channel group"):
        prune_groups(nn.Sequential(nn.Linear(4, 3)), 0.5)
    with pytest.raises(TypeError, match="must be a torch nn.Module"):
        dependency_groups("a network")


def test_check_equivalence_catches_a_wrong_network():
    model, X = _build("residual CNN, BatchNorm")
    removal = plan_removal(model, 0.5)
    small = removal.apply()
    assert check_equivalence(removal, small, X) < 1e-5
    with torch.no_grad(): small.get_submodule("5.conv2").weight[0, 0, 1, 1] += 0.1
    with pytest.raises(RuntimeError, match="differs from the zeroed reference"):
        check_equivalence(removal, small, X)


def test_the_input_model_is_left_untouched():
    model, X = _build("residual CNN, BatchNorm")
    before = copy.deepcopy(model.state_dict())
    with torch.no_grad(): expected = model.eval()(X)
    for prune in (lambda: prune_groups(model, 0.5), lambda: prune_structured(model, 0.75),
                  lambda: prune_groups(model, 0.5, importance="taylor", X=X,
                                       y=torch.arange(6) % 3)):
        prune()
    assert before.keys() == model.state_dict().keys()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with torch.no_grad(): torch.testing.assert_close(model.eval()(X), expected, rtol=0, atol=0)


def test_save_and_load_the_smaller_model(tmp_path):
    model, X = _build("residual CNN, BatchNorm")
    small = prune_groups(model, 0.5).eval()
    buffer = io.BytesIO()
    torch.save(small.state_dict(), buffer)
    buffer.seek(0)
    fresh = resnet((9, 9), 3, widths=(5, 7, 9))
    with pytest.raises(RuntimeError, match="size mismatch"):
        copy.deepcopy(fresh).load_state_dict(small.state_dict())
    rebuilt = load_smaller(fresh, torch.load(buffer, weights_only=True)).eval()
    torch.save(small, tmp_path / "small.pt")  # the whole module pickles too
    whole = torch.load(tmp_path / "small.pt", weights_only=False).eval()
    with torch.no_grad():
        assert torch.equal(rebuilt(X), small(X)) and torch.equal(whole(X), small(X))
    depthwise = prune_groups(InvertedResidual(), 0.5)
    again = load_smaller(InvertedResidual(), depthwise.state_dict())
    assert again.depthwise[0].groups == depthwise.depthwise[0].groups == 5  # 9 - round(4.5)


def test_ignored_and_output_layers_are_never_pruned():
    model = resnet((28, 28), 10, seed=0)
    small = prune_groups(model, 0.5, ignored_layers=["5.conv1"])
    layer, original = small.get_submodule("5.conv1"), model.get_submodule("5.conv1")
    assert layer.weight.shape == original.weight.shape
    assert small.get_submodule("9").weight.shape == (10, 32)  # the head keeps its 10 outputs
    with pytest.raises(ValueError, match="names no layer"):
        prune_groups(model, 0.5, ignored_layers=["5.conv9"])


def test_amounts_importances_and_seeds():
    model = resnet((28, 28), 10, seed=0)
    small = prune_groups(model, {"5.shortcut.0": 0.5})  # any producer names its group
    assert small.get_submodule("5.conv2").out_channels == 16
    assert small.get_submodule("4.conv1").out_channels == 16
    with pytest.raises(ValueError, match="tied layers"):
        prune_groups(model, {"5.conv2": 0.5, "5.shortcut.0": 0.25})
    with pytest.raises(ValueError, match="no prunable channels"):
        prune_groups(model, {"9": 0.5})
    with pytest.raises(ValueError, match=r"`amount` must be a fraction in \[0, 1\)"):
        prune_groups(model, 1.0)
    with pytest.raises(ValueError, match="needs data"):
        prune_groups(model, 0.5, importance="taylor")
    first, again, other = (plan_removal(model, 0.5, importance="random", seed=s).removed
                           for s in (3, 3, 4))
    assert first == again != other


def test_prune_structured_takes_graphs_and_keeps_stacks():
    model = resnet((28, 28), 10, seed=0)
    via_structured, direct = prune_structured(model, 0.5), prune_groups(model, 0.5)
    assert all(torch.equal(a, b) for a, b in zip(via_structured.state_dict().values(),
                                                 direct.state_dict().values()))
    stack = cnn((8, 8), 3, channels=(5, 7), batchnorm=True, seed=0)
    X = torch.rand(5, 64)
    sequential, graph = prune_structured(stack, 0.5), prune_groups(stack, 0.5)
    with torch.no_grad():  # the Sequential walk and the graph agree on a plain stack
        torch.testing.assert_close(sequential.eval()(X), graph.eval()(X), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ["residual CNN, BatchNorm", "concatenation", "depthwise"])
def test_the_same_channels_removed_by_torch_pruning_give_the_same_network(name):
    tp = pytest.importorskip("torch_pruning", reason="torch-pruning is a dev requirement")
    model, X = _build(name)
    removal = plan_removal(model, 0.5)
    ours, theirs = removal.apply(), copy.deepcopy(model)
    graph = tp.DependencyGraph().build_dependency(theirs, example_inputs=X[:2])
    find = removal.analysis.ties.find
    for group, removed in zip(removal.groups, removal.removed):
        if not removed: continue
        layer_name = group.producers[0]
        doomed = {group.units[i] for i in removed}
        channels = removal.analysis.produced[layer_name]
        idxs = [j for j, c in enumerate(channels) if find(c) in doomed]
        layer = theirs.get_submodule(layer_name)
        cut = tp.prune_linear_out_channels if isinstance(layer, nn.Linear) else \
            tp.prune_conv_out_channels
        graph.get_pruning_group(layer, cut, idxs=idxs).prune()
    mine, reference = ours.state_dict(), theirs.state_dict()
    assert mine.keys() == reference.keys()
    assert all(torch.equal(mine[k], reference[k]) for k in mine)


def test_residual_block_shapes():
    block = ResidualBlock(4, 6, stride=2)
    assert block(torch.randn(2, 4, 8, 8)).shape == (2, 6, 4, 4)
    assert isinstance(ResidualBlock(4, 4).shortcut, nn.Identity)


def test_round_to_keeps_every_width_a_multiple():
    model = resnet((28, 28), 10, widths=(24, 48, 96), seed=0)
    small = prune_groups(model, 0.25, round_to=16)  # 18, 36, 72 kept, rounded to 16, 32, 64
    assert count_params(small) == count_params(resnet((28, 28), 10, widths=(16, 32, 64)))
    plain = prune_groups(model, 0.25)
    assert plain.get_submodule("4.conv2").out_channels == 18
    with pytest.raises(ValueError, match="round_to"):
        prune_groups(model, 0.25, round_to=0)
