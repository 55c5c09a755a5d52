#!/usr/bin/python3
"""torch float32 GEMM throughput (GFLOP/s) on the Debian torch used by the peer.

    /usr/bin/python3 bench/sgemm.py --threads 2 [--min-time 1.0] [--out sgemm.json]

Shapes (M x K) . (K x N), flops = 2*M*K*N per call:
  square_2048      : 2048x2048 . 2048x2048
  tabnet_s_fwd     : 16384x50  . 50x100     (TabNet-S GLU layer, B=16384, n_d+n_a=50)
  tabnet_s_bwd_in  : 16384x100 . 100x50     (its grad w.r.t. the input)
  tabnet_s_bwd_w   : 50x16384  . 16384x100  (its grad w.r.t. the weight; transposed view)
The first two are the required cross-check figures; the backward shapes are extra.
Each shape: warm-up, then timed blocks of calls, each block running for >= --min-time/--blocks
seconds; reports best and median GFLOP/s over the blocks.  torch.mm(a, b, out=c) with a
preallocated c, so only the GEMM is timed.
"""

import argparse
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import _benchcommon as bc  # noqa: E402

SHAPES = [  # name, M, K, N, transpose_a
    ("square_2048", 2048, 2048, 2048, False),
    ("tabnet_s_fwd", 16384, 50, 100, False),
    ("tabnet_s_bwd_in", 16384, 100, 50, False),
    ("tabnet_s_bwd_w", 50, 16384, 100, True),
]


def bench_shape(torch, name, M, K, N, trans_a, min_time, blocks):
    g = torch.Generator().manual_seed(0)
    if trans_a:  # A stored as K x M and used transposed (as in autograd's grad_W = X^T G)
        a = torch.randn(K, M, generator=g).t()
    else:
        a = torch.randn(M, K, generator=g)
    b = torch.randn(K, N, generator=g)
    c = torch.empty(M, N)
    flops = 2.0 * M * K * N
    # warm-up & calibrate calls per block
    reps = 1
    while True:
        t0 = time.perf_counter()
        for _ in range(reps):
            torch.mm(a, b, out=c)
        dt = time.perf_counter() - t0
        if dt >= 0.05 or reps >= 1 << 20:
            break
        reps *= 2
    per_block = max(min_time / blocks, 0.05)
    reps = max(1, int(round(reps * per_block / max(dt, 1e-9))))
    gf = []
    cont = bc.Contention()
    for _ in range(blocks):
        t0 = time.perf_counter()
        for _ in range(reps):
            torch.mm(a, b, out=c)
        dt = time.perf_counter() - t0
        gf.append(flops * reps / dt / 1e9)
    # sanity check of the result against float64
    ref = (a[:64].double() @ b.double())
    err = float((c[:64].double() - ref).abs().max() / ref.abs().max())
    return {"shape": "%dx%d . %dx%d" % (M, K, K, N), "transposed_a": trans_a,
            "flops_per_call": flops, "calls_per_block": reps, "blocks": blocks,
            "gflops_best": round(max(gf), 2), "gflops_median": round(statistics.median(gf), 2),
            "gflops_blocks": [round(x, 2) for x in gf], "rel_err_vs_f64": err,
            "contention": cont.stop()}


def main():
    ap = argparse.ArgumentParser(description="torch sgemm GFLOP/s (see bench/README.md)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--blas-threads", type=int, default=None,
                    help="OpenBLAS pool size (default = --threads)")
    ap.add_argument("--min-time", type=float, default=2.0,
                    help="seconds of timed work per shape (default 2)")
    ap.add_argument("--blocks", type=int, default=5, help="timed blocks per shape (default 5)")
    ap.add_argument("--wait-idle", type=float, default=0, metavar="SECONDS",
                    help="wait up to SECONDS for other processes to go idle first (default 0)")
    ap.add_argument("--out", default="-", help="JSON path, '-' = stdout (default)")
    a = ap.parse_args()
    if a.threads < 1 or a.blocks < 1 or a.min_time <= 0:
        ap.error("--threads, --blocks must be >= 1 and --min-time > 0")

    if a.blas_threads is None:
        a.blas_threads = a.threads
    prev_env = bc.set_thread_env(a.threads, a.blas_threads)
    torch = bc.import_torch()
    torch.set_num_threads(a.threads)
    ob = bc.set_openblas_threads(a.blas_threads)
    blas = bc.blas_info(torch)
    blas.pop("torch_config_show")  # keep the sgemm JSON short; parsed fields remain

    idle = bc.wait_for_idle(a.wait_idle) if a.wait_idle > 0 else None
    res = {}
    for name, M, K, N, t in SHAPES:
        res[name] = bench_shape(torch, name, M, K, N, t, a.min_time, a.blocks)

    out = {
        "tool": "sgemm.py", "timestamp_utc": bc.utc_now(), "command": [sys.executable] + sys.argv,
        "threads": {"requested": a.threads, "blas_threads_requested": a.blas_threads,
                    "torch_num_threads": torch.get_num_threads(),
                    "openblas_num_threads": (ob or {}).get("num_threads"),
                    "env_previous": prev_env, "wait_env": bc.wait_env()},
        "results": res,
        "system_load": {"wait_idle": idle, "after": bc.load_snapshot(),
                        "contended": bc.contended([r["contention"] for r in res.values()],
                                          max(a.threads, a.blas_threads))},
        "summary": {"threads": a.threads, "blas": blas["detected"],
                    "gflops_2048": res["square_2048"]["gflops_median"],
                    "gflops_tabnet_s_16384x50x100": res["tabnet_s_fwd"]["gflops_median"],
                    "contended": bc.contended([r["contention"] for r in res.values()],
                                          max(a.threads, a.blas_threads))},
        "blas": blas, "versions": bc.torch_versions(torch), "machine": bc.machine_info(),
    }
    bc.write_json(out, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
