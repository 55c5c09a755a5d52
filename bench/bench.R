# tabnetrs vs pytorch-tabnet 4.1.0 on the same data and configuration, in one
# run, each tool at every thread count asked for; the report puts each tool's
# best setting beside the other's (best vs best) and the same-thread figures.
# Writes bench/results.md (or --out FILE).
#
#   Rscript bench/bench.R [--threads 1,2] [--seeds 3] [--coretype NAME] [--configs defaults,tabnet_s]
#                         [--epochs N] [--quick] [--higgs] [--no-peer] [--out FILE]
#
# --threads: comma-separated thread counts tried for both tools (default: 1
#   and all cores). --seeds K: each side trains K times per thread count
#   (seeds 0..K-1): times and rates are medians, accuracy the mean and standard
#   deviation. --coretype NAME: run both tools (and the sgemm probe) with
#   OPENBLAS_CORETYPE=NAME, e.g. to compare OpenBLAS's fallback kernels with the
#   CPU's own (see bench/README.md). --configs: only these configurations;
#   --epochs N: train every configuration N epochs (default 3 and 5), e.g.
#   `--configs defaults --threads 1 --seeds 10 --epochs 10` to test an
#   accuracy difference on more seeds and longer training.
#
# Each measurement runs in its own process (fresh peak RSS). The peer needs
# `bash tools/setup.sh --bench` (Debian's python3-torch, ...) and the
# pytorch-tabnet wheel unpacked in bench/.peer, which this script does itself
# from ../shared/wheels when it is missing (see bench/README.md). Without a
# working peer it stops before measuring anything (or pass --no-peer).
args <- commandArgs(trailingOnly = TRUE)
opt <- function(name, default) {
  i <- match(name, args)
  if (is.na(i)) default else args[[i + 1]]
}
cores <- parallel::detectCores()
thread_counts <- sort(unique(as.integer(strsplit(opt("--threads", paste(unique(c(1L, cores)), collapse = ",")), ",")[[1]])))
seeds <- seq_len(as.integer(opt("--seeds", "3"))) - 1L
coretype <- opt("--coretype", "")
quick <- "--quick" %in% args
run_peer <- !"--no-peer" %in% args
higgs <- "--higgs" %in% args
root <- normalizePath(".")
if (!file.exists(file.path(root, "bench", "bench.R"))) stop("run from the repository root")
work <- file.path(tempdir(), "tabnet-bench")
dir.create(work, showWarnings = FALSE)
# The peer, checked before the first measurement: a run of 20 minutes whose
# peer columns all read n/a is no benchmark.
peer_dir <- file.path(root, "bench", ".peer")
peer_wheel <- file.path(dirname(root), "shared", "wheels", "pytorch_tabnet-4.1.0-py3-none-any.whl")
peer_import_ok <- function() {
  status <- suppressWarnings(system2("/usr/bin/python3", c("-c", shQuote("import torch, sklearn, pytorch_tabnet")),
                                     env = paste0("PYTHONPATH=", peer_dir), stdout = FALSE, stderr = FALSE))
  identical(status, 0L)
}
if (run_peer && !peer_import_ok()) {
  if (!dir.exists(file.path(peer_dir, "pytorch_tabnet")) && file.exists(peer_wheel)) {
    message("unpacking ", basename(peer_wheel), " into bench/.peer")
    system2("/usr/bin/python3", c("-m", "zipfile", "-e", peer_wheel, peer_dir))
  }
  if (!peer_import_ok()) {
    stop("pytorch-tabnet cannot be imported by /usr/bin/python3 with PYTHONPATH=bench/.peer: run ",
         "`bash tools/setup.sh --bench` and unpack ", peer_wheel, " into bench/.peer ",
         "(bench/README.md), or pass --no-peer", call. = FALSE)
  }
}
blas_env <- if (nzchar(coretype)) paste0("OPENBLAS_CORETYPE=", coretype) else character()
suppressPackageStartupMessages(library(tabnetrs))

# Syn2-like data: p standard normals, y = 1{V03 + V04 + V05 + V06 > 0}, float32 on disk.
write_data <- function(dir, n_train, n_test, p, seed) {
  dir.create(dir, showWarnings = FALSE, recursive = TRUE)
  set.seed(seed)
  n <- n_train + n_test
  x <- matrix(rnorm(n * p), n, p)
  y <- as.integer(rowSums(x[, 3:6]) > 0)
  con <- file(file.path(dir, "X.f32"), "wb")
  writeBin(as.vector(t(x)), con, size = 4, endian = "little")
  close(con)
  con <- file(file.path(dir, "y.i32"), "wb")
  writeBin(y, con, size = 4, endian = "little")
  close(con)
  writeLines(jsonlite::toJSON(list(n_train = n_train, n_test = n_test, p = p), auto_unbox = TRUE),
             file.path(dir, "meta.json"))
  dir
}

rscript <- file.path(R.home("bin"), "Rscript")
run_ours <- function(dir, config, epochs, seed, threads) {
  out <- file.path(work, paste0("ours-", config, "-", threads, "-", seed, ".json"))
  status <- system2(rscript, c(file.path(root, "bench", "tabnetrs_run.R"), dir, config, epochs, threads, out, seed),
                    env = c(paste0("OMP_NUM_THREADS=", threads), blas_env))
  if (status != 0) stop("tabnetrs run failed for ", config)
  jsonlite::fromJSON(out)
}
run_theirs <- function(dir, config, epochs, seed, threads) {
  if (!run_peer) return(NULL)
  out <- file.path(work, paste0("peer-", config, "-", threads, "-", seed, ".json"))
  status <- system2("/usr/bin/python3", c(file.path(root, "bench", "peer_pytorch_tabnet.py"), "--data", dir,
                                          "--config", config, "--epochs", epochs, "--threads", threads,
                                          "--seed", seed, "--out", out),
                    env = c(paste0("PYTHONPATH=", file.path(root, "bench", ".peer")), blas_env))
  if (status != 0) {
    warning("pytorch-tabnet run failed for ", config)
    return(NULL)
  }
  jsonlite::fromJSON(out)
}

# The machine's sgemm rate, measured once by one probe: bench/sgemm.py on
# Debian's torch, which is the same libtorch 1.13.1 and OpenBLAS tabnetrs links.
sgemm <- function(threads) {
  out <- file.path(work, paste0("sgemm-", threads, ".json"))
  status <- system2("/usr/bin/python3", c(file.path(root, "bench", "sgemm.py"), "--threads", threads,
                                          "--min-time", "1", "--out", out), env = blas_env)
  if (status != 0) return(c(square_2048 = NA_real_, tabnet_s = NA_real_))
  s <- jsonlite::fromJSON(out)$summary
  c(square_2048 = s$gflops_2048, tabnet_s = s$gflops_tabnet_s_16384x50x100)
}

# FLOPs of one TabNet-S training row: every FC is 2·in·out per row forward;
# training ≈ 3 × forward (forward, input gradient, weight gradient).
tabnet_flops_per_row <- function(p, n_d, n_a, steps, n_shared = 2, n_ind = 2, out = 2) {
  h <- n_d + n_a
  glu <- function(i) 2 * i * 2 * h
  ft_shared <- glu(p) + (n_shared - 1) * glu(h)
  ft_ind <- n_ind * glu(h)
  fwd <- (steps + 1) * (ft_shared + ft_ind) + steps * 2 * n_a * p + 2 * n_d * out
  3 * fwd
}

configs <- if (quick) {
  list(list(name = "defaults", n = 20000, p = 10, epochs = 1), list(name = "tabnet_s", n = 40000, p = 28, epochs = 1))
} else {
  list(list(name = "defaults", n = 100000, p = 10, epochs = 3), list(name = "tabnet_s", n = 200000, p = 28, epochs = 5))
}
only <- opt("--configs", "")
if (nzchar(only)) {
  wanted <- strsplit(only, ",")[[1]]
  unknown <- setdiff(wanted, vapply(configs, `[[`, "", "name"))
  if (length(unknown)) stop("unknown configuration(s): ", paste(unknown, collapse = ", "), call. = FALSE)
  configs <- Filter(function(cf) cf$name %in% wanted, configs)
}
epochs_override <- opt("--epochs", "")
if (nzchar(epochs_override)) configs <- lapply(configs, function(cf) {
  cf$epochs <- as.integer(epochs_override)
  cf
})
rows <- list()
for (cf in configs) {
  n_test <- cf$n %/% 5
  dir <- write_data(file.path(work, cf$name), cf$n, n_test, cf$p, seed = 42)
  for (threads in thread_counts) {
    message("running ", cf$name, " (", cf$n, " x ", cf$p, ") on ", threads, " thread(s)")
    # the host's speed drifts (15-20 % within an hour on a shared machine): the
    # TabNet-S FLOP rate is also put against sgemm probes run just before and
    # just after tabnetrs's runs
    probe <- function() if (identical(cf$name, "tabnet_s")) sgemm(max(thread_counts))[["square_2048"]]
    around <- probe()
    ours <- lapply(seeds, function(sd) run_ours(dir, cf$name, cf$epochs, sd, threads))
    around <- c(around, probe())
    theirs <- Filter(Negate(is.null), lapply(seeds, function(sd) run_theirs(dir, cf$name, cf$epochs, sd, threads)))
    rows[[paste(cf$name, threads)]] <- list(cf = cf, threads = threads, ours = ours, theirs = theirs,
                                            sgemm_around = around)
  }
}
rates <- lapply(stats::setNames(thread_counts, thread_counts), sgemm)
best_rate <- max(vapply(rates, function(r) r[["square_2048"]], numeric(1)), na.rm = TRUE)

# median (or `f`) over the runs of one side of a value at `path`
over_runs <- function(runs, path, f = stats::median) {
  v <- vapply(runs, function(x) mean(peer_val(x, path)), numeric(1))
  if (!length(v)) NA_real_ else f(v)
}
peer_val <- function(x, path) {
  for (k in path) {
    if (is.null(x)) return(NA_real_)
    x <- x[[k]]
  }
  if (is.null(x)) NA_real_ else as.numeric(x)
}
fmt <- function(x, d = 2) ifelse(is.na(x), "n/a", formatC(x, digits = d, format = "f", big.mark = ","))
sd_runs <- function(runs, path) {
  v <- vapply(runs, function(x) mean(peer_val(x, path)), numeric(1))
  if (length(v) < 2) NA_real_ else stats::sd(v)
}
# Welch's two-sample t-test of one measure between the two sides' runs
# (", Welch p = …"), or nothing with fewer than two runs on a side.
welch_cell <- function(ours, ours_path, theirs, theirs_path) {
  vals <- function(runs, path) vapply(runs, function(x) mean(peer_val(x, path)), numeric(1))
  a <- vals(ours, ours_path)
  b <- if (is.null(theirs)) numeric() else vals(theirs, theirs_path)
  if (length(a) < 2 || length(b) < 2 || stats::sd(a) + stats::sd(b) == 0) return("")
  sprintf(", Welch p = %.2f", stats::t.test(a, b)$p.value)
}
# measures: name, path in our JSON, path in the peer's JSON, higher is better, digits
measures <- list(
  list("train s/epoch", "per_epoch_s", c("fit", "epoch_times_s"), FALSE, 2),
  list("fit total s", "fit_total_s", c("fit", "total_s"), FALSE, 2),
  list("predict rows/s", "predict_holdout_rows_per_s", c("predict_proba", "holdout", "rows_per_s_median"), TRUE, 0),
  list("explain rows/s", "explain_rows_per_s", c("explain", "holdout", "rows_per_s_median"), TRUE, 0),
  # whole calls on the data frame (tabnetrs) / array (peer) of every row, best of the repeats
  list("predict() whole call s, all rows", "predict_whole_s", c("predict_proba", "all", "best_s"), FALSE, 3),
  list("predict rows/s, training-size frame", "predict_all_rows_per_s", c("predict_proba", "all", "rows_per_s_best"), TRUE, 0)
)
ours_core <- tabnetrs:::rs_blas_info()
lines <- c(
  "# tabnetrs vs pytorch-tabnet 4.1.0",
  "",
  sprintf("Run %s on %s (%d cores, %s), R %s, libtorch 1.13.1 (Debian) for both; thread counts tried: %s.",
          format(Sys.time(), "%Y-%m-%d %H:%M UTC", tz = "UTC"), Sys.info()[["nodename"]], cores,
          trimws(sub(".*: ", "", grep("model name", readLines("/proc/cpuinfo"), value = TRUE)[1])),
          getRversion(), paste(thread_counts, collapse = ", ")),
  sprintf("OpenBLAS kernels: %s (OPENBLAS_CORETYPE %s; the best kernel family this CPU can run: %s; %s).",
          if (nzchar(coretype)) coretype else ours_core$core,
          if (nzchar(coretype)) paste("set to", coretype) else "unset", ours_core$best,
          if (nzchar(coretype)) "chosen by hand"
          else if (isTRUE(ours_core$fallback)) "OpenBLAS fell back to older kernels"
          else "not a fallback"),
  sprintf("BLAS in the tabnetrs process: %s; the fused encoder's products: %s (TABNETRS_KERNELS %s).",
          rows[[1]]$ours[[1]]$blas,
          switch(if (is.null(rows[[1]]$ours[[1]]$kernels)) "?" else rows[[1]]$ours[[1]]$kernels,
                 avx512 = "own AVX-512 micro-kernels", avx2 = "own AVX2 micro-kernels", blas = "BLAS", "?"),
          if (nzchar(Sys.getenv("TABNETRS_KERNELS"))) paste("set to", Sys.getenv("TABNETRS_KERNELS")) else "unset"),
  sprintf("BLAS in the pytorch-tabnet process: %s.",
          if (length(rows[[1]]$theirs)) rows[[1]]$theirs[[1]]$summary$blas else "n/a"),
  sprintf("Seeds per side and setting: %d (times and rates: median over the runs; accuracy: mean ± sd).", length(seeds)),
  paste0("sgemm (bench/sgemm.py, same libtorch and OpenBLAS): ", paste(vapply(names(rates), function(t)
    sprintf("%s thread(s) %.1f GFLOP/s (2048²), %.1f GFLOP/s (16384×50·50×100)", t, rates[[t]][["square_2048"]],
            rates[[t]][["tabnet_s"]]), ""), collapse = "; "), "."),
  "train s/epoch: mean of each tool's own per-epoch timer (fit setup excluded; `fit total s` includes it).",
  ""
)
acc_cell <- function(runs, path) sprintf("%s ± %s", fmt(over_runs(runs, path, mean), 4), fmt(sd_runs(runs, path), 4))

# best vs best: per configuration and measure, each tool at its fastest thread count
lines <- c(lines, "## Best vs best (each tool at its own fastest thread count)", "",
           "| config | data | measure | tabnetrs | pytorch-tabnet | ratio |", "|---|---|---|---|---|---|")
for (cf in configs) {
  sub <- Filter(function(r) identical(r$cf$name, cf$name), rows)
  data <- sprintf("%s × %d", format(as.integer(cf$n), big.mark = ","), cf$p)
  pick <- function(side, path, higher) {
    v <- vapply(sub, function(r) over_runs(r[[side]], path), numeric(1))
    if (all(is.na(v))) return(list(value = NA_real_, threads = NA, row = NULL))
    i <- if (higher) which.max(v) else which.min(v)
    list(value = v[[i]], threads = sub[[i]]$threads, row = sub[[i]])
  }
  for (m in measures) {
    a <- pick("ours", m[[2]], m[[4]])
    b <- pick("theirs", m[[3]], m[[4]])
    ratio <- if (m[[4]]) a$value / b$value else b$value / a$value
    lines <- c(lines, sprintf("| %s | %s | %s | %s (%s thr) | %s (%s thr) | %s |", cf$name, data, m[[1]],
                              fmt(a$value, m[[5]]), a$threads, fmt(b$value, m[[5]]), b$threads,
                              ifelse(is.na(ratio), "n/a", sprintf("%.1f×", ratio))))
  }
  # accuracy at each tool's fastest training setting
  a <- pick("ours", "per_epoch_s", FALSE)
  b <- pick("theirs", c("fit", "epoch_times_s"), FALSE)
  lines <- c(lines, sprintf("| %s | %s | holdout accuracy | %s | %s | Δ %s%s |", cf$name, data,
                            acc_cell(a$row$ours, "holdout_accuracy"),
                            if (is.null(b$row)) "n/a" else acc_cell(b$row$theirs, c("metrics", "holdout_accuracy")),
                            fmt(over_runs(a$row$ours, "holdout_accuracy", mean) -
                                  if (is.null(b$row)) NA_real_ else over_runs(b$row$theirs, c("metrics", "holdout_accuracy"), mean), 4),
                            welch_cell(a$row$ours, "holdout_accuracy", b$row$theirs, c("metrics", "holdout_accuracy"))))
}

lines <- c(lines, "", "## Same thread count", "",
           "| config | data | threads | measure | tabnetrs | pytorch-tabnet | ratio |", "|---|---|---|---|---|---|---|")
for (r in rows) {
  o <- r$ours; t <- r$theirs; cf <- r$cf
  data <- sprintf("%s × %d", format(as.integer(cf$n), big.mark = ","), cf$p)
  for (m in measures) {
    a <- over_runs(o, m[[2]]); b <- over_runs(t, m[[3]])
    ratio <- if (m[[4]]) a / b else b / a
    lines <- c(lines, sprintf("| %s | %s | %d | %s | %s | %s | %s |", cf$name, data, r$threads, m[[1]], fmt(a, m[[5]]),
                              fmt(b, m[[5]]), ifelse(is.na(ratio), "n/a", sprintf("%.1f×", ratio))))
  }
  lines <- c(lines, sprintf("| %s | %s | %d | peak RSS MiB | %s | %s | |", cf$name, data, r$threads,
                            fmt(over_runs(o, "peak_rss_mib", max), 0), fmt(over_runs(t, c("memory", "peak_rss_mib"), max), 0)),
             sprintf("| %s | %s | %d | holdout accuracy | %s | %s | |", cf$name, data, r$threads,
                     acc_cell(o, "holdout_accuracy"), acc_cell(t, c("metrics", "holdout_accuracy"))))
}
s_rows <- Filter(function(r) identical(r$cf$name, "tabnet_s"), rows)
if (length(s_rows)) {
  lines <- c(lines, "")
  # prediction: one forward pass per row, whole predict() calls on every row
  for (r in s_rows) {
    n_all <- r$ours[[1]]$n_train + r$ours[[1]]$n_test
    fwd <- tabnet_flops_per_row(r$cf$p, 24, 26, 5) / 3
    achieved <- fwd * n_all / over_runs(r$ours, "predict_whole_s") / 1e9
    here <- rates[[as.character(r$threads)]][["square_2048"]]
    lines <- c(lines, sprintf(
      "TabNet-S predict() on %d thread(s), whole call on %s rows: %.1f kFLOP of FC work per row, %.2f GFLOP/s achieved = %.1f %% of the %d-thread 2048² sgemm rate (%.1f GFLOP/s), %.1f %% of the %d-thread rate probed around tabnetrs's runs (%s GFLOP/s).",
      r$threads, format(n_all, big.mark = ","), fwd / 1e3, achieved, 100 * achieved / here, r$threads, here,
      100 * achieved / mean(r$sgemm_around), max(thread_counts),
      paste(sprintf("%.1f", r$sgemm_around), collapse = " and ")))
  }
  for (r in s_rows) {
    flops <- tabnet_flops_per_row(r$cf$p, 24, 26, 5) * r$ours[[1]]$n_train
    achieved <- flops / over_runs(r$ours, "per_epoch_s") / 1e9
    near <- mean(r$sgemm_around)
    lines <- c(lines, sprintf(
      "TabNet-S epoch on %d thread(s): %.2f GFLOP of FC work (3 × forward), %.2f GFLOP/s achieved = %.1f %% of the machine's best 2048² sgemm rate (%.1f GFLOP/s, probed after all runs); %.1f %% of the %d-thread 2048² rate probed just before and after these runs (%s GFLOP/s).",
      r$threads, flops / 1e9, achieved, 100 * achieved / best_rate, best_rate, 100 * achieved / near,
      max(thread_counts), paste(sprintf("%.1f", r$sgemm_around), collapse = " and ")))
  }
}
if (higgs) {
  message("Higgs-size run: 10.5M x 28, one TabNet-S epoch")
  out <- file.path(work, "higgs.json")
  md <- file.path(work, "higgs.md")
  status <- system2(rscript, c(file.path(root, "bench", "higgs_run.R"), max(thread_counts), out, md))
  if (status == 0) lines <- c(lines, "", readLines(md)[-(1:2)])
}
writeLines(lines, opt("--out", file.path(root, "bench", "results.md")))
cat(lines, sep = "\n")
