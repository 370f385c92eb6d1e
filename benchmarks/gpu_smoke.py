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
    "Unstructured, N:M and structured pruning on the device; 2:4 sparse tensor cores timed on CUDA."
    import io

    from modelopt_nb.core import cnn, fit, model_device
    from modelopt_nb.pruning import (
        load_sparse,
        prune_n_m,
        prune_structured,
        prune_unstructured,
        save_sparse,
        sparsity,
    )

    pruned = prune_unstructured(net, 0.8)
    fit(pruned, data.X_train, data.y_train, epochs=1, device=device)
    check(
        "pruning.prune_unstructured keeps its zeros through fine-tuning on the device",
        abs(sparsity(pruned) - 0.8) < 1e-3,
        f"sparsity {sparsity(pruned):.4f}",
    )
    buffer = io.BytesIO()
    save_sparse(pruned, buffer)
    buffer.seek(0)
    reloaded = load_sparse(buffer, net)
    X = torch.from_numpy(data.X_test).to(device)
    with torch.no_grad():
        same = torch.equal(reloaded(X), pruned(X))
    check("pruning.save_sparse / load_sparse round-trip a device model exactly", same)
    n_m = prune_n_m(net, 2, 4)
    fit(n_m, data.X_train, data.y_train, epochs=1, device=device)
    groups = n_m[0].weight.detach().reshape(n_m[0].weight.shape[0], -1, 4)
    check(
        "pruning.prune_n_m keeps 2 of every 4 weights through fine-tuning on the device",
        bool(((groups != 0).sum(-1) <= 2).all()) and model_device(n_m).type == device.type,
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
    semi_structured_timing(device)


def graph_pruning_path(device, data):
    "A residual network pruned by tied channel groups on the device, checked against its reference."
    from modelopt_nb.core import fit, model_device
    from modelopt_nb.graph_pruning import check_equivalence, plan_removal, resnet

    net = resnet((8, 8), 10, widths=(8, 16), seed=0)
    fit(net, data.X_train, data.y_train, epochs=1, device=device)
    removal = plan_removal(net, 0.5)
    small = removal.apply()
    gap = check_equivalence(removal, small, torch.from_numpy(data.X_test[:256]).to(device))
    check(
        "graph_pruning: a ResNet pruned by groups on the device equals its zeroed reference",
        model_device(small).type == device.type,
        f"largest |difference| {gap:.2g}",
    )
    fit(small, data.X_train, data.y_train, epochs=1, device=device)


def _median_ms(run, device, repeats: int = 25) -> float:
    "Median milliseconds of `run()` on `device`, after warm-up, synchronised on CUDA."
    for _ in range(5):
        run()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        run()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return 1e3 * float(np.median(times))


def semi_structured_timing(device, size: int = 4096):
    "A 2:4-pruned fp16 Linear layer, dense against `to_sparse_semi_structured` (CUDA, Ampere+)."
    from torch import nn

    from modelopt_nb.pruning import make_permanent, prune_n_m

    if device.type != "cuda":
        print(f"skip 2:4 sparse tensor-core timing: needs CUDA, running on {device.type}")
        return
    major, minor = torch.cuda.get_device_capability(device)
    if major < 8:
        print(f"skip 2:4 sparse tensor-core timing: needs compute capability 8.0+, "
              f"this GPU has {major}.{minor}")
        return
    from torch.sparse import SparseSemiStructuredTensor, to_sparse_semi_structured

    if not torch.backends.cusparselt.is_available():
        SparseSemiStructuredTensor._FORCE_CUTLASS = True  # the kernels torch ships without it
    layer = make_permanent(prune_n_m(nn.Sequential(nn.Linear(size, size)), 2, 4))[0]
    weight = layer.weight.detach().half().to(device).contiguous()
    bias = layer.bias.detach().half().to(device)
    x = torch.randn(size, size, dtype=torch.half, device=device)
    try:
        sparse_weight = to_sparse_semi_structured(weight)
        nn.functional.linear(x, sparse_weight, bias)
    except (RuntimeError, NotImplementedError) as error:  # this torch build lacks the kernels
        print(f"skip 2:4 sparse tensor-core timing: {str(error).splitlines()[0]}")
        return
    with torch.no_grad():
        dense_out = nn.functional.linear(x, weight, bias)
        sparse_out = nn.functional.linear(x, sparse_weight, bias)
        close = torch.allclose(dense_out.float(), sparse_out.float(), rtol=1e-2, atol=1e-1)
        dense_ms = _median_ms(lambda: nn.functional.linear(x, weight, bias), device)
        sparse_ms = _median_ms(lambda: nn.functional.linear(x, sparse_weight, bias), device)
    check(
        f"2:4 semi-structured Linear ({size}x{size}, fp16) computes what the dense one does",
        close,
        f"dense {dense_ms:.3f} ms, 2:4 sparse {sparse_ms:.3f} ms: "
        f"{dense_ms / sparse_ms:.2f}x speedup (median of 25)",
    )


def distillation_path(device, data, net):
    "A student on the device distilled from a teacher there: fixed logits, augment=, y=None."
    from modelopt_nb.core import fit, mlp, model_device
    from modelopt_nb.distillation import distill, fidelity, random_shift

    student = distill(
        mlp([64, 16, 10], seed=0), net, data.X_train, data.y_train, epochs=2, device=device
    )
    check(
        "distillation.distill trains the student on the device",
        model_device(student).type == device.type,
    )
    fit(student, data.X_train, data.y_train, epochs=1, device=device)
    shift, batches = random_shift((8, 8), 1), []

    def augment(xb):
        batches.append(xb.device.type)
        return shift(xb)

    consistent = distill(
        mlp([64, 16, 10], seed=0),
        net,
        data.X_train,
        data.y_train,
        epochs=2,
        batch_size=128,
        augment=augment,
        device=device,
    )
    check(
        "distill(augment=) augments every batch on the device and the teacher runs there",
        batches[1:] == [device.type] * 2 * -(-len(data.X_train) // 128)
        and model_device(consistent).type == device.type,
        f"{len(batches) - 1} batches",
    )
    unlabelled = distill(
        mlp([64, 16, 10], seed=0), net, data.X_train, None, alpha=1.0, epochs=5, device=device
    )
    agreement = fidelity(net, unlabelled, data.X_test).agreement
    check(
        "distill(y=None, alpha=1) learns the teacher on the device without labels",
        model_device(unlabelled).type == device.type and agreement > 0.5,
        f"agreement {agreement:.3f}",
    )


def ensembles_path(device, data):
    "Ensembles and stacking whose torch members train, calibrate and snapshot on the device."
    from sklearn.linear_model import LogisticRegression

    from modelopt_nb.core import TorchClassifier, mlp, model_device
    from modelopt_nb.ensembles import (
        TemperatureScaled,
        VotingEnsemble,
        snapshot_ensemble,
        train_ensemble,
    )
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
        all(model_device(m).type == device.type for m in deep.estimators_)
        and deep.predict(data.X_test).shape == (len(data.X_test),),
    )
    held_out, rest = slice(0, 200), slice(200, None)  # a temperature is fitted on held-out rows
    scaled = TemperatureScaled(deep).fit(data.X_test[held_out], data.y_test[held_out])
    check(
        "ensembles.TemperatureScaled fits a temperature for members on the device",
        scaled.temperature_ > 0
        and np.array_equal(scaled.predict(data.X_test[rest]), deep.predict(data.X_test[rest])),
        f"T = {scaled.temperature_:.3f}",
    )
    snapshots = snapshot_ensemble(
        mlp([64, 32, 10], seed=0),
        data.X_train,
        data.y_train,
        n_snapshots=2,
        epochs_per_cycle=1,
        device=device,
    )
    check(
        "ensembles.snapshot_ensemble saves snapshots on the device",
        len(snapshots.estimators_) == 2
        and all(model_device(m).type == device.type for m in snapshots.estimators_),
    )
    members = [
        ("net", TorchClassifier(epochs=2, device=device)),
        ("lr", LogisticRegression(max_iter=500)),
    ]
    vote = VotingEnsemble(members).fit(data.X_train, data.y_train)
    stack = StackingEnsemble(members, cv=3).fit(data.X_train, data.y_train)
    check(
        "StackingEnsemble.transform gives the members' probabilities",
        stack.transform(data.X_test).shape == (len(data.X_test), 20),
    )
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
        graph_pruning_path(device, data)
        distillation_path(device, data, net)
        ensembles_path(device, data)
    except AssertionError as failed:
        print(f"failed: {failed}", file=sys.stderr)
        return 1
    print(f"all checks passed on {device} in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
