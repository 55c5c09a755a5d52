#!/usr/bin/python3
"""Peer benchmark: pytorch-tabnet 4.1.0 (Dreamquark) on Debian's torch, CPU only.

Reads the shared binary data set written by the R side (see bench/README.md),
trains TabNetClassifier with a fixed configuration and measures fit time per
epoch, predict_proba / explain throughput, peak RSS and holdout accuracy/AUC.

    PYTHONPATH=bench/.peer /usr/bin/python3 bench/peer_pytorch_tabnet.py \
        --data DIR --config defaults --epochs 5 --threads 2 --out result.json

    # self test on generated Syn2-like data (no R needed)
    PYTHONPATH=bench/.peer /usr/bin/python3 bench/peer_pytorch_tabnet.py \
        --selftest --selftest-n 100000 --selftest-p 10 \
        --config defaults --epochs 2 --threads 2 --out /tmp/st.json
"""

import argparse
import hashlib
import json
import math
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import _benchcommon as bc  # noqa: E402  (no torch import at module level)

SCHEMA_VERSION = 1

# ---------------------------------------------------------------------------
# Configurations.  model_params go to TabNetClassifier(...), fit_params to fit().
# ---------------------------------------------------------------------------
CONFIGS = {
    # tabnet / tabnetrs defaults.  NB: pytorch-tabnet's own default clip_value is 1;
    # we override it to None (no gradient clipping) to match the R defaults.
    "defaults": dict(
        model_params=dict(n_d=8, n_a=8, n_steps=3, gamma=1.3, momentum=0.02,
                          lambda_sparse=1e-3, clip_value=None, lr=0.02),
        fit_params=dict(batch_size=1024, virtual_batch_size=128),
    ),
    # TabNet-S for Higgs from the TabNet paper (Arik & Pfister, Table/Appendix):
    # N_d=24, N_a=26, N_steps=5, gamma=1.5, B=16384, B_V=512, m_B=0.6 (TF
    # convention) -> torch momentum 1-0.6 = 0.4, lambda_sparse=1e-6, lr=0.02.
    # The paper's lr decay schedule is NOT applied (constant lr, as in R).
    "tabnet_s": dict(
        model_params=dict(n_d=24, n_a=26, n_steps=5, gamma=1.5, momentum=0.4,
                          lambda_sparse=1e-6, clip_value=None, lr=0.02),
        fit_params=dict(batch_size=16384, virtual_batch_size=512),
    ),
}


# ---------------------------------------------------------------------------
# Data format: see bench/README.md
# ---------------------------------------------------------------------------
def validate_data_dir(data_dir):
    """Cheap checks (no numpy/torch): files present, meta.json sane, sizes match."""
    if not os.path.isdir(data_dir):
        bc.die("data directory %r does not exist (expected X.f32, y.i32, meta.json; "
               "see bench/README.md)" % data_dir)
    meta_path = os.path.join(data_dir, "meta.json")
    x_path = os.path.join(data_dir, "X.f32")
    y_path = os.path.join(data_dir, "y.i32")
    for pth in (meta_path, x_path, y_path):
        if not os.path.isfile(pth):
            bc.die("missing file %s (data dir must contain X.f32, y.i32, meta.json)" % pth)
    try:
        with open(meta_path) as f:
            meta = json.load(f)
    except (OSError, ValueError) as e:
        bc.die("cannot parse %s: %s" % (meta_path, e))
    if not isinstance(meta, dict):
        bc.die("meta.json must be a JSON object {\"n_train\":..,\"n_test\":..,\"p\":..}")
    for k in ("n_train", "n_test", "p"):
        v = meta.get(k)
        # tolerate jsonlite without auto_unbox ([80000]) and integral floats (8e4)
        if isinstance(v, list) and len(v) == 1:
            v = v[0]
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        if not isinstance(v, int) or isinstance(v, bool) or v < 0:
            bc.die("meta.json: %r must be a non-negative integer, got %r" % (k, meta.get(k)))
        meta[k] = v
    n_train, n_test, p = meta["n_train"], meta["n_test"], meta["p"]
    if n_train < 2 or n_test < 1 or p < 1:
        bc.die("meta.json: need n_train >= 2, n_test >= 1, p >= 1 (got %d, %d, %d)"
               % (n_train, n_test, p))
    n = n_train + n_test
    want_x, want_y = 4 * n * p, 4 * n
    got_x, got_y = os.path.getsize(x_path), os.path.getsize(y_path)
    if got_x != want_x:
        bc.die("X.f32 has %d bytes, expected 4*n*p = 4*%d*%d = %d" % (got_x, n, p, want_x))
    if got_y != want_y:
        bc.die("y.i32 has %d bytes, expected 4*n = 4*%d = %d" % (got_y, n, want_y))
    return meta, x_path, y_path


def read_dataset(data_dir):
    import numpy as np
    meta, x_path, y_path = validate_data_dir(data_dir)
    n_train, n_test, p = meta["n_train"], meta["n_test"], meta["p"]
    n = n_train + n_test
    X = np.fromfile(x_path, dtype="<f4", count=n * p).reshape(n, p)
    y = np.fromfile(y_path, dtype="<i4", count=n)
    X = X.astype(np.float32, copy=False)  # native order (no-op on x86-64)
    y = y.astype(np.int64, copy=False)
    if not np.isfinite(X).all():
        bc.die("X.f32 contains non-finite values (NaN/Inf); the benchmark needs complete data")
    bad = np.setdiff1d(np.unique(y), [0, 1])
    if bad.size:
        bc.die("y.i32 must contain only class labels 0/1; found %s" % bad[:10].tolist())
    ytr = y[:n_train]
    if np.unique(ytr).size != 2:
        bc.die("training labels (first n_train rows) contain only one class")
    return X, y, meta


def file_sha256(path, chunk=1 << 24):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def make_selftest_data(out_dir, n, p, test_frac, seed):
    """Syn2-like: p iid N(0,1) features, y = 1{V3+V4+V5+V6 > 0} (1-based)."""
    import numpy as np
    if p < 6:
        bc.die("--selftest-p must be >= 6 (label uses V3..V6)")
    n_test = int(round(n * test_frac))
    n_train = n - n_test
    if n_train < 2 or n_test < 1:
        bc.die("--selftest-n too small for --selftest-test-frac")
    os.makedirs(out_dir, exist_ok=True)
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, p), dtype=np.float32)
    y = (X[:, 2].astype(np.float64) + X[:, 3] + X[:, 4] + X[:, 5] > 0).astype("<i4")
    X.astype("<f4", copy=False).tofile(os.path.join(out_dir, "X.f32"))
    y.tofile(os.path.join(out_dir, "y.i32"))
    with open(os.path.join(out_dir, "meta.json"), "w") as f:
        json.dump({"n_train": n_train, "n_test": n_test, "p": p,
                   "source": "peer_pytorch_tabnet.py selftest generator (Syn2-like, "
                             "y = V3+V4+V5+V6 > 0), numpy default_rng(%d)" % seed}, f)


# ---------------------------------------------------------------------------
def parse_args(argv):
    ap = argparse.ArgumentParser(
        description="pytorch-tabnet 4.1.0 peer benchmark (see bench/README.md)")
    src = ap.add_mutually_exclusive_group(required=True)
    src.add_argument("--data", metavar="DIR", help="directory with X.f32, y.i32, meta.json")
    src.add_argument("--selftest", action="store_true",
                     help="generate Syn2-like data into a temp dir and benchmark on it")
    src.add_argument("--make-selftest-data", metavar="DIR",
                     help="only write Syn2-like data (same generator as --selftest) to DIR and exit")
    ap.add_argument("--selftest-n", type=int, default=100000, help="total rows (default 100000)")
    ap.add_argument("--selftest-p", type=int, default=10, help="features (default 10, >= 6)")
    ap.add_argument("--selftest-test-frac", type=float, default=0.2,
                    help="holdout fraction (default 0.2)")
    ap.add_argument("--selftest-seed", type=int, default=1)
    ap.add_argument("--keep-data", action="store_true", help="keep the selftest temp data dir")
    ap.add_argument("--config", choices=sorted(CONFIGS), default="defaults")
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0, help="TabNetClassifier seed (default 0)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--blas-threads", type=int, default=None,
                    help="OpenBLAS pool size (OPENBLAS_NUM_THREADS + openblas_set_num_threads); "
                         "default = --threads.  Debian's OpenBLAS-pthread pool is separate from "
                         "torch's OpenMP pool, see README")
    ap.add_argument("--repeats", type=int, default=3,
                    help="timed repetitions of predict_proba / explain (default 3)")
    ap.add_argument("--wait-idle", type=float, default=0, metavar="SECONDS",
                    help="before measuring, wait up to SECONDS until other processes use "
                         "< 0.5 core (default 0 = don't wait); contention is recorded anyway")
    ap.add_argument("--no-hash", action="store_true", help="skip sha256 of the data files")
    ap.add_argument("--out", default="-", help="result JSON path ('-' = stdout, default)")
    a = ap.parse_args(argv)
    if a.make_selftest_data is None:
        if a.epochs < 1:
            ap.error("--epochs must be >= 1")
        if a.threads < 1:
            ap.error("--threads must be >= 1")
        if a.repeats < 1:
            ap.error("--repeats must be >= 1")
        if a.blas_threads is None:
            a.blas_threads = a.threads
        if a.blas_threads < 1:
            ap.error("--blas-threads must be >= 1")
    if not (0.0 < a.selftest_test_frac < 1.0):
        ap.error("--selftest-test-frac must be in (0, 1)")
    return a


def timed_repeats(fn, repeats, rows):
    times = []
    res = None
    cont = bc.Contention()
    for _ in range(repeats):
        t0 = time.perf_counter()
        res = fn()
        times.append(time.perf_counter() - t0)
    best, med = min(times), statistics.median(times)
    return res, {"rows": int(rows), "times_s": [round(t, 6) for t in times],
                 "best_s": round(best, 6), "median_s": round(med, 6),
                 "rows_per_s_best": round(rows / best, 1),
                 "rows_per_s_median": round(rows / med, 1), "contention": cont.stop()}


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)

    if args.make_selftest_data:
        make_selftest_data(args.make_selftest_data, args.selftest_n, args.selftest_p,
                           args.selftest_test_frac, args.selftest_seed)
        print("wrote selftest data to %s" % args.make_selftest_data)
        return 0

    # --- selftest: generate data in a child process so the generator's memory
    #     does not count towards this process' peak RSS
    import importlib.util
    missing = [m for m in ("numpy", "torch", "sklearn", "scipy")
               if importlib.util.find_spec(m) is None]
    if missing:
        bc.die("python %s lacks %s. Use Debian's /usr/bin/python3 after `apt-get install -y "
               "python3-torch python3-sklearn python3-scipy python3-tqdm python3-pandas` "
               "(not the pyenv python3 on PATH)" % (sys.executable, ", ".join(missing)))
    tmp_dir = None
    selftest_info = None
    data_dir = args.data
    try:
        if args.selftest:
            tmp_dir = tempfile.mkdtemp(prefix="tabnet_peer_selftest_")
            data_dir = tmp_dir
            cmd = [sys.executable, os.path.abspath(__file__), "--make-selftest-data", tmp_dir,
                   "--selftest-n", str(args.selftest_n), "--selftest-p", str(args.selftest_p),
                   "--selftest-test-frac", str(args.selftest_test_frac),
                   "--selftest-seed", str(args.selftest_seed)]
            r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               universal_newlines=True)
            if r.returncode != 0:
                bc.die("selftest data generation failed:\n" + r.stdout)
            selftest_info = {"n": args.selftest_n, "p": args.selftest_p,
                             "test_frac": args.selftest_test_frac, "seed": args.selftest_seed,
                             "generator": "Syn2-like: iid N(0,1), y = V3+V4+V5+V6 > 0",
                             "dir": tmp_dir, "kept": bool(args.keep_data)}
        validate_data_dir(data_dir)  # fail fast, before torch is imported
        return run(args, data_dir, selftest_info)
    finally:
        if tmp_dir and not args.keep_data:
            shutil.rmtree(tmp_dir, ignore_errors=True)


def run(args, data_dir, selftest_info):
    T = args.threads
    prev_env = bc.set_thread_env(T, args.blas_threads)          # before torch / OpenBLAS are loaded
    torch = bc.import_torch()
    import numpy as np
    torch.set_num_threads(T)

    peer_path_added = None
    try:
        import pytorch_tabnet
    except ImportError:
        cand = os.path.join(HERE, ".peer")
        if os.path.isfile(os.path.join(cand, "pytorch_tabnet", "tab_model.py")):
            sys.path.insert(0, cand)
            peer_path_added = cand
            import pytorch_tabnet
        else:
            bc.die("cannot import pytorch_tabnet. Unpack the wheel: /usr/bin/python3 -m zipfile "
                   "-e ../shared/wheels/pytorch_tabnet-4.1.0-py3-none-any.whl bench/.peer "
                   "and run with PYTHONPATH=bench/.peer")
    from pytorch_tabnet.tab_model import TabNetClassifier
    from pytorch_tabnet.callbacks import Callback
    import sklearn
    import scipy
    from sklearn.metrics import roc_auc_score, accuracy_score, log_loss
    try:
        from importlib.metadata import version as _pkgver
        ptn_version = _pkgver("pytorch-tabnet")
    except Exception:
        ptn_version = getattr(pytorch_tabnet, "__version__", None)
    if ptn_version != "4.1.0":
        sys.stderr.write("warning: pytorch_tabnet version is %r, expected 4.1.0\n" % ptn_version)

    blas_threads_info = bc.set_openblas_threads(args.blas_threads)
    blas = bc.blas_info(torch)               # runs a matmul first
    mem = {"after_imports": bc.mem_snapshot()}
    idle = None
    if args.wait_idle > 0:
        idle = bc.wait_for_idle(args.wait_idle)
    load_before = bc.load_snapshot()

    # ---------------- data
    t0 = time.perf_counter()
    X, y, meta = read_dataset(data_dir)
    load_s = time.perf_counter() - t0
    n_train, n_test, p = meta["n_train"], meta["n_test"], meta["p"]
    Xtr, ytr = X[:n_train], y[:n_train]
    Xte, yte = X[n_train:], y[n_train:]
    data_info = {"dir": os.path.abspath(data_dir), "n_train": n_train, "n_test": n_test, "p": p,
                 "meta": meta, "load_s": round(load_s, 4),
                 "x_sum_f64": float(X.sum(dtype=np.float64)), "y_sum": int(y.sum()),
                 "y_train_mean": float(ytr.mean()), "y_test_mean": float(yte.mean()),
                 "selftest": selftest_info}
    if not args.no_hash:
        data_info["sha256"] = {"X.f32": file_sha256(os.path.join(data_dir, "X.f32")),
                               "y.i32": file_sha256(os.path.join(data_dir, "y.i32"))}
    mem["after_load"] = bc.mem_snapshot()

    # ---------------- model
    cfg = CONFIGS[args.config]
    mp = dict(cfg["model_params"])
    lr = mp.pop("lr")
    model_params = dict(mp, optimizer_fn=torch.optim.Adam, optimizer_params=dict(lr=lr),
                        scheduler_fn=None, mask_type="sparsemax", n_independent=2, n_shared=2,
                        seed=args.seed, verbose=0, device_name="cpu")
    fit_params = dict(cfg["fit_params"], max_epochs=args.epochs, patience=0, eval_set=None,
                      drop_last=False, num_workers=0, pin_memory=False,
                      compute_importance=False, weights=0)

    class EpochTimer(Callback):
        def __init__(self):
            super().__init__()
            self.epoch_times = []
            self.batches = 0
            self._t = None

        def on_epoch_begin(self, epoch, logs=None):
            self._t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            self.epoch_times.append(time.perf_counter() - self._t)

        def on_batch_end(self, batch, logs=None):
            self.batches += 1

    timer = EpochTimer()
    clf, fit_total, fit_cont, c0, c1, caught = bc.timed_fit(
        lambda: TabNetClassifier(**model_params), Xtr, ytr, [timer], fit_params)
    mem["after_fit"] = bc.mem_snapshot()

    et = timer.epoch_times
    fit_info = {
        "epochs": args.epochs, "epochs_run": len(et),
        "batches_per_epoch": math.ceil(n_train / fit_params["batch_size"]),
        "batches_total_seen": timer.batches,
        "total_s": round(fit_total, 4),
        "per_epoch_s": round(fit_total / args.epochs, 4),
        "epoch_times_s": [round(t, 4) for t in et],
        "first_epoch_s": round(et[0], 4) if et else None,
        "mean_epoch_after_first_s": round(statistics.mean(et[1:]), 4) if len(et) > 1 else None,
        "setup_overhead_s": round(fit_total - sum(et), 4),
        "train_rows_per_s": round(n_train * args.epochs / fit_total, 1),
        "cpu_user_s": round(c1[0] - c0[0], 3), "cpu_sys_s": round(c1[1] - c0[1], 3),
        "cpu_utilisation": round(((c1[0] - c0[0]) + (c1[1] - c0[1])) / fit_total, 3),
        "n_params": int(sum(q.numel() for q in clf.network.parameters())),
        "contention": fit_cont,
    }

    # ---------------- predict_proba
    pos = int(np.where(np.asarray(clf.classes_) == 1)[0][0])
    proba_te, pred_te_t = timed_repeats(lambda: clf.predict_proba(Xte), args.repeats, n_test)
    proba_all, pred_all_t = timed_repeats(lambda: clf.predict_proba(X), args.repeats, X.shape[0])
    mem["after_predict"] = bc.mem_snapshot()
    consistency = float(np.max(np.abs(proba_all[n_train:] - proba_te)))

    # ---------------- explain
    (m_explain, masks), expl_t = timed_repeats(lambda: clf.explain(Xte), args.repeats, n_test)
    mem["after_explain"] = bc.mem_snapshot()

    # ---------------- metrics
    p1_te = proba_te[:, pos]
    p1_tr = proba_all[:n_train, pos]
    metrics = {
        "holdout_accuracy": round(float(accuracy_score(yte, (p1_te > 0.5).astype(int))), 6),
        "holdout_auc": round(float(roc_auc_score(yte, p1_te)), 6),
        "holdout_logloss": round(float(log_loss(yte, np.clip(p1_te, 1e-7, 1 - 1e-7))), 6),
        "train_accuracy": round(float(accuracy_score(ytr, (p1_tr > 0.5).astype(int))), 6),
        "predict_consistency_maxabs": consistency,
        "explain_shape": list(m_explain.shape), "n_masks": len(masks),
    }

    pk = bc.peak_rss_kib()
    sections = [fit_cont, pred_te_t["contention"], pred_all_t["contention"], expl_t["contention"]]
    is_contended = bc.contended(sections, max(T, args.blas_threads))
    if is_contended:
        caught.append("CONTENDED: other processes used CPU during the measurement "
                      "beyond the cores left free (see */contention/foreign_cores_avg); "
                      "timings are not clean")
    result = {
        "tool": "peer_pytorch_tabnet", "schema_version": SCHEMA_VERSION,
        "timestamp_utc": bc.utc_now(),
        "command": [sys.executable] + sys.argv,
        "config": args.config,
        "model_params": {k: (v.__module__ + "." + v.__name__ if callable(v) else v)
                         for k, v in model_params.items()},
        "fit_params": fit_params,
        "threads": {"requested": T, "blas_threads_requested": args.blas_threads,
                    "torch_num_threads": torch.get_num_threads(),
                    "torch_num_interop_threads": torch.get_num_interop_threads(),
                    "env_set": {k: os.environ.get(k) for k in bc.THREAD_ENV_VARS},
                    "env_previous": prev_env, "wait_env": bc.wait_env(),
                    "openblas_num_threads": (blas_threads_info or {}).get("num_threads")},
        "data": data_info,
        "fit": fit_info,
        "predict_proba": {"batch_size": clf.batch_size, "holdout": pred_te_t, "all": pred_all_t},
        "explain": {"batch_size": clf.batch_size, "holdout": expl_t},
        "memory": {"peak_rss_kib": pk, "peak_rss_mib": round(pk / 1024.0, 1), "snapshots": mem},
        "metrics": metrics,
        "versions": dict(bc.torch_versions(torch), pytorch_tabnet=ptn_version,
                         pytorch_tabnet_path=os.path.dirname(sys.modules[TabNetClassifier.__module__].__file__),
                         pytorch_tabnet_path_auto_added=peer_path_added,
                         sklearn=sklearn.__version__, scipy=scipy.__version__),
        "blas": blas,
        "machine": bc.machine_info(),
        "system_load": {"wait_idle": idle, "before": load_before, "after": bc.load_snapshot(),
                        "contended": is_contended},
        "warnings": caught,
    }
    result["summary"] = {
        "config": args.config, "n_train": n_train, "n_test": n_test, "p": p,
        "threads": T, "blas_threads": args.blas_threads, "epochs": args.epochs,
        "fit_s_per_epoch": fit_info["per_epoch_s"],
        "first_epoch_s": fit_info["first_epoch_s"],
        "predict_holdout_rows_per_s": pred_te_t["rows_per_s_median"],
        "predict_all_rows_per_s": pred_all_t["rows_per_s_median"],
        "explain_holdout_rows_per_s": expl_t["rows_per_s_median"],
        "holdout_accuracy": metrics["holdout_accuracy"], "holdout_auc": metrics["holdout_auc"],
        "peak_rss_mib": result["memory"]["peak_rss_mib"],
        "blas": blas["detected"],
        "contended": is_contended,
        "foreign_cores_avg_max": max((c or {}).get("foreign_cores_avg", 0) for c in sections),
    }
    bc.write_json(result, args.out)
    if args.out not in (None, "-"):
        sys.stderr.write(json.dumps(result["summary"], indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
