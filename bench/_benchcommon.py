"""Shared helpers for the Python side of the tabnetrs benchmark.

IMPORTANT: this module must not import torch at module level, because the
thread-count environment variables have to be set *before* torch (and with it
libgomp / OpenBLAS) is loaded.  Call ``set_thread_env()`` first, then
``import_torch()``.
"""

import ctypes
import datetime
import json
import os
import platform
import re
import resource
import subprocess
import sys
import time

THREAD_ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                   "GOTO_NUM_THREADS", "BLIS_NUM_THREADS")

# libraries whose presence in /proc/self/maps tells us which BLAS / threading
# runtime actually got loaded into the process
_MAPS_PATTERN = re.compile(r"(blas|lapack|mkl|dnnl|mkldnn|gomp|iomp|omp5|blis|atlas)",
                           re.IGNORECASE)


def die(msg, code=2):
    sys.stderr.write("error: %s\n" % msg)
    sys.exit(code)


# recorded (never changed) because they change how idle OpenMP threads wait
WAIT_ENV_VARS = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "OMP_PROC_BIND", "OMP_PLACES")


def set_thread_env(threads, blas_threads=None):
    """Set OpenMP / BLAS thread env vars before torch is imported.

    OMP_NUM_THREADS (torch's intra-op OpenMP pool) = threads; the BLAS pools
    (OpenBLAS-pthread has its own pool, separate from OpenMP) = blas_threads
    (default: threads).  Returns the previous values."""
    if blas_threads is None:
        blas_threads = threads
    previous = {k: os.environ.get(k) for k in THREAD_ENV_VARS}
    for k in THREAD_ENV_VARS:
        os.environ[k] = str(int(threads if k == "OMP_NUM_THREADS" else blas_threads))
    return previous


def wait_env():
    return {k: os.environ.get(k) for k in WAIT_ENV_VARS}


def import_torch():
    try:
        import torch  # noqa: F401
    except ImportError as e:
        die("cannot import torch (%s). Run with the Debian interpreter /usr/bin/python3 "
            "after `apt-get install -y python3-torch` (the pyenv python on PATH has no torch). "
            "Interpreter used: %s" % (e, sys.executable))
    return torch


def utc_now():
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def rss_now_kib():
    """Current resident set size (VmRSS) in KiB, or None."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def peak_rss_kib():
    """Peak RSS of this process (ru_maxrss is KiB on Linux)."""
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def mem_snapshot():
    cur = rss_now_kib()
    pk = peak_rss_kib()
    return {"rss_mib": None if cur is None else round(cur / 1024.0, 1),
            "peak_rss_mib": round(pk / 1024.0, 1)}


def cpu_times():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime


def _cmd(args):
    try:
        p = subprocess.run(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           universal_newlines=True, timeout=20)
        return p.stdout.strip()
    except Exception as e:  # command missing etc.
        return "unavailable: %s" % e


def _dpkg_version(pkg):
    out = _cmd(["dpkg-query", "-W", "-f=${Version}", pkg])
    return None if ("unavailable" in out or "no packages found" in out) else out


def _alternative(name):
    """Parse `update-alternatives --query NAME` into {value, status, raw}."""
    raw = _cmd(["update-alternatives", "--query", name])
    value = status = None
    for line in raw.splitlines():
        if line.startswith("Value:"):
            value = line.split(":", 1)[1].strip()
        elif line.startswith("Status:"):
            status = line.split(":", 1)[1].strip()
    return {"value": value, "status": status, "raw": raw}


def mapped_libraries():
    """Real paths of BLAS/LAPACK/OpenMP/oneDNN shared objects mapped in this process."""
    libs = set()
    try:
        with open("/proc/self/maps") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 6 and parts[5].startswith("/"):
                    path = parts[5]
                    base = os.path.basename(path)
                    if base.startswith("lib") and _MAPS_PATTERN.search(base):
                        libs.add(path)
    except OSError:
        pass
    return sorted(libs)


def _openblas_runtime(libs):
    """Query the loaded OpenBLAS through its C API (same handle as torch's)."""
    cands = [p for p in libs if "openblas" in os.path.basename(p).lower()]
    for path in cands:
        try:
            lib = ctypes.CDLL(path)  # already loaded -> same handle, no second copy
        except OSError:
            continue
        info = {"path": path}
        for fn, restype in (("openblas_get_config", ctypes.c_char_p),
                            ("openblas_get_corename", ctypes.c_char_p),
                            ("openblas_get_num_threads", ctypes.c_int),
                            ("openblas_get_parallel", ctypes.c_int)):
            try:
                f = getattr(lib, fn)
                f.restype = restype
                v = f()
                info[fn.replace("openblas_get_", "")] = v.decode() if isinstance(v, bytes) else v
            except AttributeError:
                pass
        if "parallel" in info:
            info["parallel"] = {0: "sequential", 1: "pthreads", 2: "openmp"}.get(
                info["parallel"], info["parallel"])
        return lib, info
    return None, None


def set_openblas_threads(threads):
    """Also set OpenBLAS' own pool via its API (env var is set too). Returns info or None."""
    lib, info = _openblas_runtime(mapped_libraries())
    if lib is None:
        return None
    try:
        lib.openblas_set_num_threads(ctypes.c_int(int(threads)))
    except AttributeError:
        pass
    _, info = _openblas_runtime(mapped_libraries())
    return info


def blas_info(torch):
    """Which BLAS is really used by torch.  Runs a matmul first so lazy loads happen."""
    a = torch.randn(256, 256)
    (a @ a).sum().item()
    cfg = torch.__config__.show()
    m = re.search(r"BLAS_INFO=([^,\s]+)", cfg)
    ml = re.search(r"LAPACK_INFO=([^,\s]+)", cfg)
    libs = mapped_libraries()
    _, ob = _openblas_runtime(libs)
    names = " ".join(os.path.basename(p).lower() for p in libs)
    dirs = " ".join(libs).lower()
    if "mkl" in names:
        detected = "MKL"
    elif ob is not None or "openblas" in dirs:
        detected = "OpenBLAS"
        if ob and ob.get("parallel"):
            detected += " (%s)" % ob["parallel"]
        if ob and ob.get("config"):
            detected += " " + ob["config"]
    elif "blis" in names:
        detected = "BLIS"
    elif "/blas/libblas.so" in dirs:
        detected = "reference BLAS (netlib, /usr/lib/x86_64-linux-gnu/blas)"
    elif "libblas" in names:
        detected = "unknown libblas.so.3 provider"
    else:
        detected = "no external BLAS mapped (torch internal / static)"
    return {
        "detected": detected,
        "torch_blas_info": m.group(1) if m else None,
        "torch_lapack_info": ml.group(1) if ml else None,
        "mkl_available": bool(torch.backends.mkl.is_available()),
        "mkldnn_available": bool(torch.backends.mkldnn.is_available()),
        "openmp_available": bool(torch.backends.openmp.is_available()),
        "openblas_runtime": ob,
        "mapped_libraries": libs,
        "alternatives": {
            "libblas.so.3-x86_64-linux-gnu": _alternative("libblas.so.3-x86_64-linux-gnu"),
            "liblapack.so.3-x86_64-linux-gnu": _alternative("liblapack.so.3-x86_64-linux-gnu"),
        },
        "torch_config_show": cfg,
        "torch_parallel_info": torch.__config__.parallel_info(),
    }


def machine_info():
    model = None
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    flags = []
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    fl = line.split(":", 1)[1].split()
                    flags = [x for x in ("avx", "avx2", "fma", "avx512f") if x in fl]
                    break
    except OSError:
        pass
    return {"cpu_model": model, "simd_flags": flags, "nproc_online": os.cpu_count(),
            "affinity_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "platform": platform.platform(), "python": sys.version.split()[0],
            "python_executable": sys.executable}


def torch_versions(torch):
    import numpy
    return {"torch": torch.__version__, "numpy": numpy.__version__,
            "debian_python3-torch": _dpkg_version("python3-torch"),
            "debian_libopenblas0-pthread": _dpkg_version("libopenblas0-pthread")}


def write_json(obj, path):
    """Write JSON atomically (tmp file + rename); '-' means stdout."""
    text = json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n"
    if path in (None, "-"):
        sys.stdout.write(text)
        return
    d = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(d, exist_ok=True)
    except OSError as e:
        die("cannot create output directory %s: %s" % (d, e))
    tmp = path + ".tmp%d" % os.getpid()
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)


# ---------------------------------------------------------------------------
# CPU contention: how much CPU did *other* processes use while we measured?
# On a 2-core box a concurrent compile makes spinning OpenMP/OpenBLAS pools
# collapse, so every timed section records this.
# ---------------------------------------------------------------------------
_CLK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_stat_cpu():
    """(busy_s, steal_s) summed over all CPUs from /proc/stat, or None."""
    try:
        with open("/proc/stat") as f:
            parts = f.readline().split()
    except OSError:
        return None
    if not parts or parts[0] != "cpu":
        return None
    v = [int(x) for x in parts[1:]]
    v += [0] * (8 - len(v))
    user, nice, system, idle, iowait, irq, softirq, steal = v[:8]
    # guest time is already included in user/nice
    return (user + nice + system + irq + softirq) / _CLK, steal / _CLK


def load_snapshot():
    d = {}
    try:
        d["loadavg"] = [float(x) for x in open("/proc/loadavg").read().split()[:3]]
    except OSError:
        d["loadavg"] = None
    try:
        for line in open("/proc/pressure/cpu"):
            if line.startswith("some"):
                d["psi_cpu_some_avg10"] = float(line.split()[1].split("=")[1])
    except OSError:
        pass
    return d


class Contention:
    """Context-free helper: c = Contention(); ...; c.stop() -> dict."""

    def __init__(self):
        self.t0 = time.perf_counter()
        self.s0 = _proc_stat_cpu()
        u, s = cpu_times()
        self.own0 = u + s

    def stop(self):
        wall = time.perf_counter() - self.t0
        s1 = _proc_stat_cpu()
        u, s = cpu_times()
        own = u + s - self.own0
        out = {"wall_s": round(wall, 4), "own_cpu_s": round(own, 3)}
        if self.s0 and s1:
            busy = s1[0] - self.s0[0]
            foreign = max(0.0, busy - own)
            out.update({"system_busy_cpu_s": round(busy, 3),
                        "foreign_cpu_s": round(foreign, 3),
                        "foreign_cores_avg": round(foreign / wall, 3) if wall > 0 else None,
                        "steal_s": round(s1[1] - self.s0[1], 3)})
        return out


def n_cpus():
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


def contended(sections, threads_used, threshold=0.1):
    """True if, in any section, other processes used more than the cores we left
    free (n_cpus - threads_used) plus `threshold` cores on average."""
    spare = max(0, n_cpus() - int(threads_used))
    return any((s or {}).get("foreign_cores_avg", 0) > spare + threshold for s in sections)


def wait_for_idle(max_wait_s, max_load=0.5, quiet_s=10):
    """Wait (up to max_wait_s) until other processes use < max_load cores for quiet_s.
    Returns the number of seconds waited and whether the box became idle."""
    start = time.time()
    while True:
        c = Contention()
        time.sleep(quiet_s)
        r = c.stop()
        if r.get("foreign_cores_avg", 0) < max_load:
            return {"waited_s": round(time.time() - start, 1), "idle": True}
        if time.time() - start > max_wait_s:
            return {"waited_s": round(time.time() - start, 1), "idle": False}
        sys.stderr.write("waiting for idle CPU: other processes use %.2f cores\n"
                         % r.get("foreign_cores_avg", 0))


def timed_fit(make_clf, X, y, callbacks, fit_params):
    """Builds a classifier with make_clf() and fits it, timed, with warnings recorded.

    Returns (clf, fit seconds, Contention.stop() of the fit, cpu_times() before
    and after, the sorted distinct warning messages of construction and fit).
    """
    import warnings
    with warnings.catch_warnings(record=True) as wlist:
        warnings.simplefilter("always")
        clf = make_clf()
        c0 = cpu_times()
        cont = Contention()
        t0 = time.perf_counter()
        clf.fit(X, y, callbacks=callbacks, **fit_params)
        seconds = time.perf_counter() - t0
        fit_cont = cont.stop()
        c1 = cpu_times()
    return clf, seconds, fit_cont, c0, c1, sorted({str(w.message) for w in wlist})
