#!/usr/bin/python3
"""Peer side of bench/fidelity.R: pytorch-tabnet 4.1.0 on one Syn data set.

Trains TabNetClassifier with the TabNet paper's synthetic-data settings
(Arik & Pfister 2021, appendix; see bench/README.md "Fidelity study") on the
first n_train rows of a data set in the shared format (bench/README.md "Data
format"), then writes

  OUT            result JSON (settings, fit time, steps, final lr, AUC, importances)
  OUT.prob.f32   P(Y=1) for the n_test holdout rows, float32 little-endian
  OUT.mexp.f32   explain(X_test) M_explain (not normalised), n_test x p float32 row-major

so that bench/fidelity.R computes the AUC and the mask shares of both tools
with the same code.

    PYTHONPATH=bench/.peer /usr/bin/python3 bench/peer_fidelity.py --data DIR \
        --n-d 16 --n-a 16 --n-steps 4 --gamma 2.0 --lambda-sparse 0.02 \
        --momentum 0.3 --batch-size 3000 --virtual-batch-size 100 \
        --lr 0.02 --lr-decay 0.7 --decay-every 200 --iterations 1000 \
        --seed 0 --threads 1 --out res.json
"""

import argparse
import math
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import _benchcommon as bc  # noqa: E402  (no torch at module level)
from peer_pytorch_tabnet import read_dataset, file_sha256  # noqa: E402  (no torch either)


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", required=True)
    ap.add_argument("--n-d", type=int, default=16)
    ap.add_argument("--n-a", type=int, default=16)
    ap.add_argument("--n-steps", type=int, required=True)
    ap.add_argument("--gamma", type=float, required=True)
    ap.add_argument("--lambda-sparse", type=float, required=True)
    ap.add_argument("--momentum", type=float, default=0.3,
                    help="torch convention (paper m_B = 0.7 -> 0.3)")
    ap.add_argument("--batch-size", type=int, default=3000)
    ap.add_argument("--virtual-batch-size", type=int, default=100)
    ap.add_argument("--drop-last", action="store_true")
    ap.add_argument("--lr", type=float, default=0.02)
    ap.add_argument("--lr-decay", type=float, default=0.7)
    ap.add_argument("--decay-every", type=int, default=200, help="optimizer steps")
    ap.add_argument("--iterations", type=int, required=True, help="optimizer steps wanted")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", required=True)
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    bc.set_thread_env(args.threads)               # before torch is imported
    torch = bc.import_torch()
    import numpy as np
    torch.set_num_threads(args.threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    from pytorch_tabnet.tab_model import TabNetClassifier
    from pytorch_tabnet.callbacks import Callback
    from sklearn.metrics import roc_auc_score
    try:
        from importlib.metadata import version as _pkgver
        ptn_version = _pkgver("pytorch-tabnet")
    except Exception:
        ptn_version = None

    X, y, meta = read_dataset(args.data)
    n_train, n_test, p = meta["n_train"], meta["n_test"], meta["p"]
    Xtr, ytr, Xte, yte = X[:n_train], y[:n_train], X[n_train:], y[n_train:]

    if args.drop_last:
        steps_per_epoch = n_train // args.batch_size
    else:
        steps_per_epoch = math.ceil(n_train / args.batch_size)
    epochs = math.ceil(args.iterations / steps_per_epoch)

    model_params = dict(
        n_d=args.n_d, n_a=args.n_a, n_steps=args.n_steps, gamma=args.gamma,
        n_independent=2, n_shared=2, lambda_sparse=args.lambda_sparse,
        momentum=args.momentum, mask_type="sparsemax", clip_value=None,
        optimizer_fn=torch.optim.Adam, optimizer_params=dict(lr=args.lr),
        # the paper's staircase decay, per optimizer step: StepLR stepped after
        # every batch (LRSchedulerCallback.on_batch_end with is_batch_level)
        scheduler_fn=torch.optim.lr_scheduler.StepLR,
        scheduler_params=dict(step_size=args.decay_every, gamma=args.lr_decay,
                              is_batch_level=True),
        seed=args.seed, verbose=0, device_name="cpu")
    fit_params = dict(eval_set=None, max_epochs=epochs, patience=0,
                      batch_size=args.batch_size, virtual_batch_size=args.virtual_batch_size,
                      drop_last=args.drop_last, num_workers=0, pin_memory=False,
                      weights=0, compute_importance=True)

    class Counter(Callback):
        def __init__(self):
            super().__init__()
            self.batches = 0
            self.lr_after = None

        def on_batch_end(self, batch, logs=None):
            self.batches += 1

        def on_train_end(self, logs=None):
            self.lr_after = self.trainer._optimizer.param_groups[0]["lr"]

    counter = Counter()
    load0 = bc.load_snapshot()
    clf, fit_s, fit_cont, c0, c1, fit_warnings = bc.timed_fit(
        lambda: TabNetClassifier(**dict(model_params, scheduler_params=dict(model_params["scheduler_params"]))),
        Xtr, ytr, [counter], fit_params)
    load1 = bc.load_snapshot()

    pos = int(np.where(np.asarray(clf.classes_) == 1)[0][0])
    prob = clf.predict_proba(Xte)[:, pos].astype("<f4")
    m_explain, _ = clf.explain(Xte, normalize=False)
    prob.tofile(args.out + ".prob.f32")
    np.ascontiguousarray(m_explain, dtype="<f4").tofile(args.out + ".mexp.f32")

    res = {
        "tool": "pytorch-tabnet", "version": ptn_version, "timestamp_utc": bc.utc_now(),
        "data": {"dir": os.path.abspath(args.data), "n_train": n_train, "n_test": n_test, "p": p,
                 "sha256": {"X.f32": file_sha256(os.path.join(args.data, "X.f32")),
                            "y.i32": file_sha256(os.path.join(args.data, "y.i32"))},
                 "x_sum_f64": float(X.sum(dtype=np.float64))},
        "settings": {k: v for k, v in vars(args).items() if k not in ("data", "out")},
        "model_params": {k: (v.__module__ + "." + v.__name__ if callable(v) else v)
                         for k, v in model_params.items()},
        "fit_params": fit_params,
        "epochs": epochs, "steps_per_epoch": steps_per_epoch,
        "steps": counter.batches, "lr_final": counter.lr_after,
        "fit_s": round(fit_s, 3),
        "cpu_s": round((c1[0] - c0[0]) + (c1[1] - c0[1]), 3),
        "contention": fit_cont, "load_before": load0, "load_after": load1,
        "n_params": int(sum(q.numel() for q in clf.network.parameters())),
        "auc_sklearn": float(roc_auc_score(yte, prob)),
        "importance": [float(v) for v in clf.feature_importances_],
        "threads": {"torch": torch.get_num_threads(), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS")},
        "warnings": fit_warnings,
    }
    bc.write_json(res, args.out)
    sys.stderr.write("peer %s seed %d: AUC %.4f, %d steps, %.1f s\n"
                     % (os.path.basename(args.data), args.seed, res["auc_sklearn"], res["steps"], fit_s))
    return 0


if __name__ == "__main__":
    sys.exit(main())
