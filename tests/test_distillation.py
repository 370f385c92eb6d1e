"""`modelopt_nb.distillation`: `kd_loss` against the formula and its gradient scale, bad input for every public
function, teachers of every kind (torch, scikit-learn, an ensemble), and the main claim of the notebook: on the
stated MNIST setup, the distilled student beats the same student trained alone."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from sklearn.ensemble import RandomForestClassifier, VotingClassifier
from sklearn.exceptions import NotFittedError
from sklearn.linear_model import LogisticRegression

from modelopt_nb.core import TorchClassifier, cnn, fit, load_dataset, mlp
from modelopt_nb.distillation import distill, kd_loss, soft_targets, teacher_logits
from modelopt_nb.measure import accuracy


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
    ours = kd_loss(torch.tensor(s), torch.tensor(t), torch.tensor(y), temperature=temperature, alpha=alpha).item()
    assert ours == pytest.approx(by_hand(s, t, y, temperature, alpha), rel=1e-10, abs=1e-12)


def test_kd_loss_float32_and_zero_when_student_equals_teacher():
    t = torch.randn(16, 10, generator=torch.Generator().manual_seed(0))
    y = torch.zeros(16, dtype=torch.long)
    assert kd_loss(t, t, y, temperature=5, alpha=1.0).item() == pytest.approx(0.0, abs=1e-6)
    assert kd_loss(t, t, y, temperature=5, alpha=0.5).item() == pytest.approx(0.5 * F.cross_entropy(t, y).item(), rel=1e-5)


def test_kd_loss_gradient_does_not_shrink_with_temperature():
    "Without T² the soft gradient falls as 1/T²; with it, it tends to (s - t) / (N · batch)."
    rng = np.random.default_rng(1)
    s, t = rng.normal(size=(20, 10)), rng.normal(size=(20, 10))
    s, t = s - s.mean(1, keepdims=True), t - t.mean(1, keepdims=True)
    limit = np.linalg.norm((s - t) / 10 / 20)
    norms = []
    for T in (25.0, 50.0, 100.0):
        student = torch.tensor(s, requires_grad=True)
        kd_loss(student, torch.tensor(t), torch.zeros(20, dtype=torch.long), temperature=T, alpha=1.0).backward()
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
    ("classes differ", lambda: kd_loss(logits10, logits3, labels), "student (8, 10) and teacher (8, 3)"),
    ("batches differ", lambda: kd_loss(logits10, torch.zeros(5, 10), labels), "student (8, 10) and teacher (5, 10)"),
    ("1-D logits", lambda: kd_loss(torch.zeros(10), torch.zeros(10), labels), "student (10,) and teacher (10,)"),
    ("targets length", lambda: kd_loss(logits10, logits10, labels[:3]), "`targets` must be (8,)"),
    ("temperature 0", lambda: kd_loss(logits10, logits10, labels, temperature=0), "positive number, got 0"),
    ("temperature < 0", lambda: kd_loss(logits10, logits10, labels, temperature=-2.0), "got -2.0"),
    ("temperature NaN", lambda: kd_loss(logits10, logits10, labels, temperature=float("nan")), "`temperature`"),
    ("alpha > 1", lambda: kd_loss(logits10, logits10, labels, alpha=1.01), "`alpha` must be a number in [0, 1], got 1.01"),
    ("alpha < 0", lambda: kd_loss(logits10, logits10, labels, alpha=-0.5), "`alpha`"),
    ("soft_targets T", lambda: soft_targets(logits10, 0.0), "`temperature`"),
]


@pytest.mark.parametrize("call, message", [b[1:] for b in BAD_LOSS], ids=[b[0] for b in BAD_LOSS])
def test_kd_loss_bad_input(call, message):
    with pytest.raises(ValueError) as info:
        call()
    assert message in str(info.value)


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="module")
def logreg(digits):
    return LogisticRegression(max_iter=2000).fit(digits.X_train, digits.y_train)


def test_distill_bad_input(digits, logreg):
    X, y = digits.X_train, digits.y_train
    with pytest.raises(ValueError, match=r"student \(2, 4\) and teacher \(2, 10\)"):
        distill(mlp([64, 4]), logreg, X, y)
    with pytest.raises(ValueError, match="X has 1347 rows, y has 1346 labels"):
        distill(mlp([64, 10]), logreg, X, y[:-1])
    with pytest.raises(ValueError, match="outside the teacher's classes"):
        distill(mlp([64, 10]), logreg, X, y + 10)
    with pytest.raises(ValueError, match="`temperature`"):
        distill(mlp([64, 10]), logreg, X, y, temperature=0)
    with pytest.raises(ValueError, match="`alpha`"):
        distill(mlp([64, 10]), logreg, X, y, alpha=2)
    with pytest.raises(TypeError, match="`student` must be a torch nn.Module"):
        distill(LogisticRegression(), logreg, X, y)
    with pytest.raises(ValueError, match="NaN"):
        distill(mlp([64, 10]), logreg, np.where(X == 0, np.nan, X), y)
    with pytest.raises(NotFittedError):
        distill(mlp([64, 10]), LogisticRegression(), X, y)


def test_teacher_logits_of_a_classifier_are_its_log_probabilities(digits, logreg):
    logits = teacher_logits(logreg, digits.X_test)
    np.testing.assert_allclose(torch.softmax(logits.double(), 1).numpy(), logreg.predict_proba(digits.X_test), atol=1e-6)
    forest = RandomForestClassifier(n_estimators=5, random_state=0).fit(digits.X_train, digits.y_train)
    assert torch.isfinite(teacher_logits(forest, digits.X_test)).all()  # a tree's zero probabilities are clipped


@pytest.mark.parametrize("kind", ["torch", "sklearn", "ensemble"])
def test_any_teacher_works_and_is_left_unchanged(kind, digits, logreg):
    X, y = digits.X_train, digits.y_train
    if kind == "torch": teacher = fit(mlp([64, 64, 10], seed=0), X, y, epochs=20, seed=0)
    elif kind == "sklearn": teacher = logreg
    else: teacher = VotingClassifier([(str(s), TorchClassifier(epochs=10, seed=s)) for s in range(2)], voting="soft").fit(X, y)
    before = teacher_logits(teacher, digits.X_test)
    student = distill(mlp([64, 32, 10], seed=0), teacher, X, y, temperature=4, epochs=20, seed=0)
    torch.testing.assert_close(teacher_logits(teacher, digits.X_test), before)
    agreement = np.mean(student(torch.from_numpy(digits.X_test)).argmax(1).numpy() == before.argmax(1).numpy())
    assert agreement > 0.9 and not student.training


def test_distill_is_seeded_and_uses_labels_through_the_teacher_classes(digits):
    "Non-contiguous sklearn labels: the student's column j is the teacher's `classes_[j]`."
    X, y = digits.X_train, digits.y_train
    keep = y < 3
    teacher = LogisticRegression(max_iter=2000).fit(X[keep], y[keep] * 2)  # classes_ = [0, 2, 4]
    a = distill(mlp([64, 3], seed=0), teacher, X[keep], y[keep] * 2, epochs=15, seed=1)
    b = distill(mlp([64, 3], seed=0), teacher, X[keep], y[keep] * 2, epochs=15, seed=1)
    assert torch.equal(a[0].weight, b[0].weight)
    assert accuracy(a, X[keep], y[keep]) > 0.9  # column j of the student predicts class index j


def jitter_loss(model, xb, yb, max_shift=2):
    dy, dx = torch.randint(-max_shift, max_shift + 1, (2,)).tolist()
    images = torch.roll(xb.view(-1, 1, 28, 28), shifts=(dy, dx), dims=(2, 3))
    return F.cross_entropy(model(images.flatten(1)), yb)


def test_distilled_student_beats_the_student_alone_on_mnist():
    "The notebook's setup, seed 0: jittered CNN teacher, MLP 784-256-10 student, 2,000 images, 60 epochs, T = 8."
    mnist = load_dataset("mnist")
    X, y = mnist.X_train[:2000], mnist.y_train[:2000]
    teacher = fit(cnn(mnist.image_shape, 10, channels=(16, 32), batchnorm=True, seed=0), X, y, epochs=20, seed=0,
                  loss_fn=jitter_loss, device="cpu")
    alone = fit(mlp([784, 256, 10], seed=0), X, y, epochs=60, seed=0, device="cpu")
    distilled = distill(mlp([784, 256, 10], seed=0), teacher, X, y, temperature=8, alpha=0.9, epochs=60, seed=0, device="cpu")
    acc = {name: accuracy(m, mnist.X_test, mnist.y_test) for name, m in
           (("teacher", teacher), ("alone", alone), ("distilled", distilled))}
    assert acc["distilled"] >= acc["alone"] + 0.005, acc
    assert acc["teacher"] > acc["distilled"], acc
