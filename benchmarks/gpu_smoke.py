"""Run each module's main path on a CUDA device (or any device given) and check that it works there.

    python benchmarks/gpu_smoke.py              # on CUDA; says so and exits 0 if there is none
    python benchmarks/gpu_smoke.py --device cpu # the same path on the CPU (the tests run this)

Every check is small (scikit-learn's digits), so the script takes seconds on a GPU. It exits 1
and names the step that failed when something does not run on the device or answers wrongly.
"""

import argparse
import pickle
import sys
import time

import numpy as np
import torch


def check(name: str, ok: bool, detail: str = "") -> None:
    "Print one result line; raise on failure so the step is named."
    print(f"{'ok  ' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}", flush=True)
    if not ok:
        raise AssertionError(name)


def core_path(device, data):
    "fit and predict_proba on the device; a TorchClassifier fitted there pickles to the CPU."
    from modelopt_nb.core import TorchClassifier, fit, mlp, model_device, predict_proba

    net = fit(mlp([64, 64, 10], seed=0), data.X_train, data.y_train, epochs=3, device=device)
    check("core.fit trains on the device", model_device(net).type == device.type)
    proba = predict_proba(net, data.X_test)
    check(
        "core.predict_proba returns float64 rows summing to 1",
        proba.dtype == np.float64 and np.allclose(proba.sum(axis=1), 1),
    )
    clf = TorchClassifier(epochs=2, device=device).fit(data.X_train, data.y_train)
    restored = pickle.loads(pickle.dumps(clf))
    check("TorchClassifier pickles to the CPU", model_device(restored.module_).type == "cpu")
    check(
        "... and predicts the same there",
        np.allclose(restored.predict_proba(data.X_test), clf.predict_proba(data.X_test), atol=1e-5),
    )
    return net


def measure_path(device, data, net):
    "latency on the device, synchronised by the copy back to the host; macs on the device."
    from modelopt_nb.measure import latency, macs

    timing = latency(net, data.X_test, batch_size=256, repeats=7)
    check("measure.latency times the device model", timing.median > 0, f"{timing}")
    check(
        "measure.latency records the device", timing.environment["device"].startswith(device.type)
    )
    check("measure.macs runs on the device", macs(net, (64,)) == 64 * 64 + 64 * 10)


def pruning_path(device, data, net):
    "Unstructured and structured pruning of a model on the device, then fine-tuning there."
    from modelopt_nb.core import cnn, fit, model_device
    from modelopt_nb.pruning import prune_structured, prune_unstructured, sparsity

    pruned = prune_unstructured(net, 0.8)
    fit(pruned, data.X_train, data.y_train, epochs=1, device=device)
    check(
        "pruning.prune_unstructured keeps its zeros through fine-tuning on the device",
        abs(sparsity(pruned) - 0.8) < 1e-3,
        f"sparsity {sparsity(pruned):.4f}",
    )
    conv = fit(
        cnn((8, 8), 10, batchnorm=True, seed=0), data.X_train, data.y_train, epochs=1, device=device
    )
    small = prune_structured(conv, 0.5)
    check(
        "pruning.prune_structured shrinks a CNN on the device",
        model_device(small).type == device.type,
    )
    fit(small, data.X_train, data.y_train, epochs=1, device=device)


def distillation_path(device, data, net):
    "A student on the device distilled from a teacher on the device."
    from modelopt_nb.core import fit, mlp, model_device
    from modelopt_nb.distillation import distill

    student = distill(
        mlp([64, 16, 10], seed=0), net, data.X_train, data.y_train, epochs=2, device=device
    )
    check(
        "distillation.distill trains the student on the device",
        model_device(student).type == device.type,
    )
    fit(student, data.X_train, data.y_train, epochs=1, device=device)


def ensembles_path(device, data):
    "Ensembles and stacking whose torch members train on the device."
    from sklearn.linear_model import LogisticRegression

    from modelopt_nb.core import TorchClassifier, mlp
    from modelopt_nb.ensembles import VotingEnsemble, train_ensemble
    from modelopt_nb.stacking import StackingEnsemble

    deep = train_ensemble(
        lambda seed: mlp([64, 32, 10]),
        data.X_train,
        data.y_train,
        n_members=3,
        fit_kwargs=dict(epochs=2, device=device),
    )
    check(
        "ensembles.train_ensemble trains members on the device",
        deep.predict(data.X_test).shape == (450,),
    )
    members = [
        ("net", TorchClassifier(epochs=2, device=device)),
        ("lr", LogisticRegression(max_iter=500)),
    ]
    vote = VotingEnsemble(members).fit(data.X_train, data.y_train)
    stack = StackingEnsemble(members, cv=3).fit(data.X_train, data.y_train)
    for name, model in (("VotingEnsemble", vote), ("StackingEnsemble", stack)):
        restored = pickle.loads(pickle.dumps(model))
        check(
            f"{name} with a device member pickles and predicts on the CPU",
            np.array_equal(restored.predict(data.X_test), model.predict(data.X_test)),
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", default="cuda", help="torch device to run on (default: cuda)")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("no CUDA device here: nothing checked (--device cpu checks the same path on the CPU)")
        return 0
    from modelopt_nb.core import load_dataset

    data = load_dataset("digits")
    start = time.perf_counter()
    print(f"modelopt_nb GPU smoke test on {device} (torch {torch.__version__})")
    try:
        net = core_path(device, data)
        measure_path(device, data, net)
        pruning_path(device, data, net)
        distillation_path(device, data, net)
        ensembles_path(device, data)
    except AssertionError as failed:
        print(f"failed: {failed}", file=sys.stderr)
        return 1
    print(f"all checks passed on {device} in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
