"""`modelopt_nb.distillation`: `kd_loss` against the formula and its gradient scale; `distill`'s two
paths (precomputed logits, and the teacher run on each augmented batch) and unlabelled transfer
sets; `fidelity` against a reference; `random_shift`, `label_loss`, `pruned_student`, `gap_closed`;
bad input for every public function; teachers of every kind; and the notebook's dark-knowledge
demonstration."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy.stats import entropy
from sklearn.ensemble import RandomForestClassifier, VotingClassifier
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split

from modelopt_nb.core import TorchClassifier, fit, load_dataset, mlp, predict
from modelopt_nb.distillation import (
    distill,
    fidelity,
    gap_closed,
    kd_loss,
    label_loss,
    pruned_student,
    random_shift,
    soft_targets,
    teacher_logits,
)
from modelopt_nb.measure import accuracy
from modelopt_nb.pruning import prune_structured


def by_hand(s, t, y, T, alpha):
    "The distillation loss, term by term, in float64 numpy."

    def log_softmax(z):
        z = z - z.max(axis=1, keepdims=True)
        return z - np.log(np.exp(z).sum(axis=1, keepdims=True))

    log_p, log_q = log_softmax(t / T), log_softmax(s / T)
    kl = np.mean(np.sum(np.exp(log_p) * (log_p - log_q), axis=1))
    ce = -np.mean(log_softmax(s)[np.arange(len(y)), y])
    return alpha * T**2 * kl + (1 - alpha) * ce


@pytest.mark.parametrize("temperature", [0.5, 1.0, 3.0, 8.0, 20.0])
@pytest.mark.parametrize("alpha", [0.0, 0.3, 0.9, 1.0])
def test_kd_loss_equals_the_formula(temperature, alpha):
    rng = np.random.default_rng(int(temperature * 10) + int(alpha * 100))
    s, t, y = 4 * rng.normal(size=(50, 7)), 4 * rng.normal(size=(50, 7)), rng.integers(0, 7, 50)
    ours = kd_loss(
        torch.tensor(s), torch.tensor(t), torch.tensor(y), temperature=temperature, alpha=alpha
    ).item()
    assert ours == pytest.approx(by_hand(s, t, y, temperature, alpha), rel=1e-10, abs=1e-12)


def test_kd_loss_without_targets_is_the_soft_term():
    rng = np.random.default_rng(3)
    s, t = torch.tensor(rng.normal(size=(20, 5))), torch.tensor(rng.normal(size=(20, 5)))
    y = torch.zeros(20, dtype=torch.long)
    assert kd_loss(s, t, temperature=3, alpha=1.0).item() == pytest.approx(
        kd_loss(s, t, y, temperature=3, alpha=1.0).item(), rel=1e-12
    )


def test_kd_loss_float32_and_zero_when_student_equals_teacher():
    t = torch.randn(16, 10, generator=torch.Generator().manual_seed(0))
    y = torch.zeros(16, dtype=torch.long)
    assert kd_loss(t, t, y, temperature=5, alpha=1.0).item() == pytest.approx(0.0, abs=1e-6)
    half_ce = 0.5 * F.cross_entropy(t, y).item()
    assert kd_loss(t, t, y, temperature=5, alpha=0.5).item() == pytest.approx(half_ce, rel=1e-5)


def test_kd_loss_gradient_does_not_shrink_with_temperature():
    "Without T² the soft gradient falls as 1/T²; with it, it tends to (s - t) / (N · batch)."
    rng = np.random.default_rng(1)
    s, t = rng.normal(size=(20, 10)), rng.normal(size=(20, 10))
    s, t = s - s.mean(1, keepdims=True), t - t.mean(1, keepdims=True)
    limit = np.linalg.norm((s - t) / 10 / 20)
    norms = []
    for T in (25.0, 50.0, 100.0):
        student = torch.tensor(s, requires_grad=True)
        kd_loss(student, torch.tensor(t), temperature=T, alpha=1.0).backward()
        norms.append(student.grad.norm().item())
    assert norms == pytest.approx([limit] * 3, rel=0.03)
    unscaled = [n / T**2 for n, T in zip(norms, (25.0, 50.0, 100.0))]
    assert unscaled[0] / unscaled[2] == pytest.approx(16, rel=0.05)


def test_kd_loss_does_not_backpropagate_into_the_teacher():
    s, t = torch.randn(4, 3, requires_grad=True), torch.randn(4, 3, requires_grad=True)
    kd_loss(s, t, torch.tensor([0, 1, 2, 0])).backward()
    assert s.grad is not None and t.grad is None


logits10, logits3 = torch.zeros(8, 10), torch.zeros(8, 3)
labels = torch.zeros(8, dtype=torch.long)
BAD_LOSS = [
    (
        "classes differ",
        lambda: kd_loss(logits10, logits3, labels),
        "student (8, 10) and teacher (8, 3)",
    ),
    ("batches differ", lambda: kd_loss(logits10, torch.zeros(5, 10), labels), "teacher (5, 10)"),
    ("1-D logits", lambda: kd_loss(torch.zeros(10), torch.zeros(10), labels), "student (10,)"),
    ("targets length", lambda: kd_loss(logits10, logits10, labels[:3]), "`targets` must be (8,)"),
    ("no targets, alpha < 1", lambda: kd_loss(logits10, logits10, alpha=0.5), "`targets` is None"),
    ("temperature 0", lambda: kd_loss(logits10, logits10, labels, temperature=0), "got 0"),
    ("temperature < 0", lambda: kd_loss(logits10, logits10, labels, temperature=-2.0), "got -2.0"),
    (
        "temperature NaN",
        lambda: kd_loss(logits10, logits10, labels, temperature=float("nan")),
        "`temperature`",
    ),
    (
        "temperature bool",
        lambda: kd_loss(logits10, logits10, labels, temperature=True),
        "`temperature`",
    ),
    ("alpha > 1", lambda: kd_loss(logits10, logits10, labels, alpha=1.01), "in [0, 1], got 1.01"),
    ("alpha < 0", lambda: kd_loss(logits10, logits10, labels, alpha=-0.5), "`alpha`"),
    ("soft_targets T", lambda: soft_targets(logits10, 0.0), "`temperature`"),
    ("shift < 0", lambda: random_shift((28, 28), -1), "`max_shift` must be a non-negative"),
    ("shift float", lambda: random_shift((28, 28), 1.5), "`max_shift`"),
    ("smoothing 1", lambda: label_loss(label_smoothing=1.0), "`label_smoothing` must be in [0, 1)"),
    ("gap shapes", lambda: gap_closed(0.9, [0.8, 0.8], [0.85]), "one accuracy per seed"),
    ("no gap", lambda: gap_closed(0.8, [0.81, 0.79], [0.85, 0.87]), "must beat `alone`"),
]


@pytest.mark.parametrize("call, message", [b[1:] for b in BAD_LOSS], ids=[b[0] for b in BAD_LOSS])
def test_bad_input_names_the_argument(call, message):
    with pytest.raises(ValueError) as info:
        call()
    assert message in str(info.value)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def logreg(digits):
    return LogisticRegression(max_iter=2000).fit(digits.X_train, digits.y_train)


@pytest.fixture(scope="module")
def torch_teacher(digits):
    return fit(mlp([64, 64, 10], seed=0), digits.X_train, digits.y_train, epochs=20, seed=0)


BAD_DISTILL = [
    (
        "classes differ",
        dict(student=mlp([64, 4])),
        ValueError,
        r"student \(2, 4\) and teacher \(2, 10\)",
    ),
    ("lengths differ", dict(y="short"), ValueError, "X has 1347 rows, y has 1346 labels"),
    ("unknown labels", dict(y="shifted"), ValueError, "outside the teacher's classes"),
    ("temperature", dict(temperature=0), ValueError, "`temperature`"),
    ("alpha", dict(alpha=2), ValueError, "`alpha`"),
    ("y None, alpha < 1", dict(y=None, alpha=0.9), ValueError, "`y` is None but alpha=0.9 < 1"),
    (
        "student not torch",
        dict(student=LogisticRegression()),
        TypeError,
        "`student` must be a torch",
    ),
    ("NaN in X", dict(X="nan"), ValueError, "NaN"),
    ("augment not callable", dict(augment="flip"), TypeError, "`augment` must be a callable"),
    ("augment reshapes", dict(augment=lambda xb: xb[:, :10]), ValueError, "`augment` must return"),
    ("augment no tensor", dict(augment=lambda xb: xb.numpy()), ValueError, "`augment` must return"),
    ("unfitted teacher", dict(teacher=LogisticRegression()), NotFittedError, None),
]


@pytest.mark.parametrize(
    "change, error, message", [b[1:] for b in BAD_DISTILL], ids=[b[0] for b in BAD_DISTILL]
)
def test_distill_bad_input_fails_before_training(change, error, message, digits, logreg):
    X, y = digits.X_train, digits.y_train
    values = {"y": {"short": y[:-1], "shifted": y + 10}, "X": {"nan": np.where(X == 0, np.nan, X)}}
    args = dict(student=mlp([64, 10], seed=0), teacher=logreg, X=X, y=y)
    for key, value in change.items():
        args[key] = values[key][value] if isinstance(value, str) and key in values else value
    student, teacher, X, y = (args.pop(k) for k in ("student", "teacher", "X", "y"))
    before = (
        [p.detach().clone() for p in student.parameters()]
        if isinstance(student, torch.nn.Module)
        else []
    )
    with pytest.raises(error, match=message):
        distill(student, teacher, X, y, epochs=1, **args)
    if before:  # the student is untouched
        assert all(torch.equal(a, b) for a, b in zip(before, student.parameters()))


def test_teacher_logits_of_a_classifier_are_its_log_probabilities(digits, logreg):
    logits = teacher_logits(logreg, digits.X_test)
    np.testing.assert_allclose(
        torch.softmax(logits.double(), 1).numpy(), logreg.predict_proba(digits.X_test), atol=1e-6
    )
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(
        digits.X_train, digits.y_train
    )
    assert torch.isfinite(teacher_logits(forest, digits.X_test)).all()  # zeros are clipped


@pytest.mark.parametrize("kind", ["torch", "sklearn", "ensemble"])
def test_any_teacher_works_and_is_left_unchanged(kind, digits, logreg, torch_teacher):
    X, y = digits.X_train, digits.y_train
    if kind == "torch":
        teacher = torch_teacher
    elif kind == "sklearn":
        teacher = logreg
    else:
        members = [(str(s), TorchClassifier(epochs=10, seed=s)) for s in range(2)]
        teacher = VotingClassifier(members, voting="soft").fit(X, y)
    before = teacher_logits(teacher, digits.X_test)
    student = distill(mlp([64, 32, 10], seed=0), teacher, X, y, temperature=4, epochs=20, seed=0)
    torch.testing.assert_close(teacher_logits(teacher, digits.X_test), before)
    assert fidelity(teacher, student, digits.X_test).agreement > 0.9 and not student.training


def test_distill_is_seeded_and_uses_labels_through_the_teacher_classes(digits):
    "Non-contiguous sklearn labels: the student's column j is the teacher's `classes_[j]`."
    X, y = digits.X_train, digits.y_train
    keep = y < 3
    teacher = LogisticRegression(max_iter=2000).fit(X[keep], y[keep] * 2)  # classes_ = [0, 2, 4]
    a = distill(mlp([64, 3], seed=0), teacher, X[keep], y[keep] * 2, epochs=15, seed=1)
    b = distill(mlp([64, 3], seed=0), teacher, X[keep], y[keep] * 2, epochs=15, seed=1)
    assert torch.equal(a[0].weight, b[0].weight)
    assert accuracy(a, X[keep], y[keep]) > 0.9  # column j of the student predicts class index j


class Recorder(torch.nn.Module):
    "A teacher that records every batch it is shown."

    def __init__(self, teacher):
        super().__init__()
        self.teacher, self.seen = teacher, []

    def forward(self, x):
        self.seen.append(x.clone())
        return self.teacher(x)


@pytest.mark.parametrize("batch_size, epochs", [(64, 1), (100, 3), (1000, 2)])
def test_augment_runs_once_per_batch_and_the_teacher_sees_its_output(
    batch_size, epochs, digits, torch_teacher
):
    X, y = digits.X_train, digits.y_train
    made = []

    def augment(xb):
        made.append(xb + 0.01 * torch.randn_like(xb))
        return made[-1]

    spy = Recorder(torch_teacher)
    distill(
        mlp([64, 16, 10], seed=0), spy, X, y, epochs=epochs, batch_size=batch_size, augment=augment
    )
    n_batches = epochs * -(-len(X) // batch_size)
    assert len(made) == n_batches + 1  # +1: the two-row shape check before training
    assert len(spy.seen) == n_batches + 1  # +1: the two-row class-count check
    for shown, augmented in zip(spy.seen[1:], made[1:]):
        assert torch.equal(shown, augmented)


def test_without_augment_the_teacher_runs_once_on_the_original_rows(digits, torch_teacher):
    spy = Recorder(torch_teacher)
    distill(mlp([64, 16, 10], seed=0), spy, digits.X_train, digits.y_train, epochs=3)
    assert torch.equal(torch.cat(spy.seen[1:]), torch.from_numpy(digits.X_train))


def test_augment_with_a_sklearn_teacher_and_the_global_rng_untouched(digits, logreg):
    state = torch.random.get_rng_state()
    X, y, shift = digits.X_train, digits.y_train, random_shift((8, 8), 1)
    runs = [
        distill(mlp([64, 16, 10], seed=0), logreg, X, y, epochs=20, augment=shift, seed=3)
        for _ in range(2)
    ]
    assert torch.equal(torch.random.get_rng_state(), state)
    assert torch.equal(runs[0][0].weight, runs[1][0].weight)
    assert accuracy(runs[0], digits.X_test, digits.y_test) > 0.8


def test_unlabelled_transfer_set_needs_no_labels(digits, torch_teacher):
    "y=None with alpha=1 equals training with any labels at all: the hard term is never read."
    X, wrong_labels = digits.X_train, (digits.y_train + 1) % 10
    settings = dict(alpha=1.0, epochs=20, seed=0)
    none = distill(mlp([64, 16, 10], seed=0), torch_teacher, X, None, **settings)
    wrong = distill(mlp([64, 16, 10], seed=0), torch_teacher, X, wrong_labels, **settings)
    assert torch.equal(none[0].weight, wrong[0].weight)
    assert accuracy(none, digits.X_test, digits.y_test) > 0.8


def test_fidelity_agreement_is_the_share_of_equal_argmaxes_and_kl_matches_scipy(
    digits, logreg, torch_teacher
):
    models = [logreg, torch_teacher] + [mlp([64, 10], seed=s) for s in range(3)]
    for teacher in models:
        for student in models:
            result = fidelity(teacher, student, digits.X_test)
            same = np.mean(predict(teacher, digits.X_test) == predict(student, digits.X_test))
            assert result.agreement == pytest.approx(same, abs=1e-12)
            p = torch.softmax(teacher_logits(teacher, digits.X_test).double(), 1).numpy()
            q = torch.softmax(teacher_logits(student, digits.X_test).double(), 1).numpy()
            assert result.kl == pytest.approx(np.mean(entropy(p, q, axis=1)), rel=1e-6, abs=1e-9)
            assert result.kl >= 0
    assert fidelity(torch_teacher, torch_teacher, digits.X_test) == (1.0, 0.0)
    with pytest.raises(ValueError, match="different numbers of classes: 10 and 3"):
        fidelity(torch_teacher, mlp([64, 3]), digits.X_test)
    with pytest.raises(ValueError, match="NaN"):
        fidelity(torch_teacher, logreg, np.full((3, 64), np.nan))


def test_random_shift_moves_each_image_by_its_own_whole_pixel_offset():
    image = torch.zeros(1, 5, 5)
    image[0, 2, 2] = 1.0  # one lit pixel in the centre
    batch = image.repeat(400, 1, 1).reshape(400, 25)
    torch.manual_seed(0)
    moved = random_shift((5, 5), 2)(batch).reshape(400, 5, 5)
    positions = {tuple(torch.nonzero(m)[0].tolist()) for m in moved}
    assert positions == {(r, c) for r in range(5) for c in range(5)}  # every offset, no blur
    assert torch.equal(moved.sum((1, 2)), torch.ones(400))
    edge = torch.zeros(1, 25)
    edge[0, 0] = 1.0
    shifted = random_shift((5, 5), 2)(edge.repeat(200, 1))
    assert (shifted.sum(1) <= 1).all() and (shifted.sum(1) == 0).any()  # zero-filled, no wrap


def test_label_loss_is_cross_entropy_with_smoothing_and_augmentation():
    net = mlp([4, 3], seed=0)
    xb, yb = (
        torch.randn(6, 4, generator=torch.Generator().manual_seed(1)),
        torch.tensor([0, 1, 2, 0, 1, 2]),
    )
    expected = F.cross_entropy(net(xb), yb, label_smoothing=0.2)
    assert label_loss(label_smoothing=0.2)(net, xb, yb).item() == pytest.approx(expected.item())
    doubled = label_loss(augment=lambda x: 2 * x)(net, xb, yb)
    assert doubled.item() == pytest.approx(F.cross_entropy(net(2 * xb), yb).item())
    with pytest.raises(TypeError, match="`augment` must be a callable"):
        label_loss(augment=3)


def test_pruned_student_is_prune_structured_without_dropout(digits):
    teacher = fit(
        mlp([64, 128, 64, 10], dropout=0.3, seed=0), digits.X_train, digits.y_train, epochs=3
    )
    weights = teacher[0].weight.detach().clone()
    student = pruned_student(teacher, 0.75)
    assert [type(m).__name__ for m in student] == ["Linear", "ReLU", "Linear", "ReLU", "Linear"]
    assert [m.out_features for m in student if isinstance(m, torch.nn.Linear)] == [32, 16, 10]
    reference = prune_structured(teacher, 0.75).eval()
    X = torch.from_numpy(digits.X_test)
    torch.testing.assert_close(student(X), reference(X))
    assert torch.equal(teacher[0].weight, weights)
    with pytest.raises(TypeError, match="`teacher` must be an nn.Sequential"):
        pruned_student(LogisticRegression(), 0.5)


def test_gap_closed_is_the_mean_per_seed_fraction_with_a_t_interval():
    teacher, alone, student = [0.9, 0.92, 0.91], [0.8, 0.82, 0.8], [0.85, 0.86, 0.87]
    fractions = (np.array(student) - alone) / (np.array(teacher) - alone)
    result = gap_closed(teacher, alone, student)
    assert result.mean == pytest.approx(fractions.mean())
    assert result.sd == pytest.approx(fractions.std(ddof=1))
    assert result.low < result.mean < result.high and result.n == 3


@pytest.mark.slow
def test_dark_knowledge_a_student_without_threes_recognises_threes():
    "The notebook's demonstration: no 3 and no label in the transfer set, most test 3s right."
    mnist = load_dataset("mnist")
    teacher = fit(
        mlp([784, 1024, 10], dropout=0.2, seed=0),
        mnist.X_train,
        mnist.y_train,
        epochs=30,
        batch_size=64,
        seed=0,
        loss_fn=label_loss(augment=random_shift((28, 28), 2)),
    )
    X_fit, X_val, y_fit, y_val = train_test_split(
        mnist.X_train, mnist.y_train, test_size=750, random_state=0, stratify=mnist.y_train
    )
    keep = y_fit != 3
    student = distill(
        mlp([784, 32, 10], seed=0),
        teacher,
        X_fit[keep],
        None,
        alpha=1.0,
        temperature=4,
        epochs=30,
        seed=0,
    )
    threes = mnist.y_test == 3
    best = max(
        np.arange(0, 10.5, 0.5),
        key=lambda b: np.mean(
            np.argmax(teacher_logits(student, X_val).numpy() + b * np.eye(10)[3], 1) == y_val
        ),
    )
    logits = teacher_logits(student, mnist.X_test).numpy() + best * np.eye(10)[3]
    assert np.mean(np.argmax(logits[threes], 1) == 3) > 0.5
