# tabnetrs vs pytorch-tabnet 4.1.0, same data, same configuration, same
# thread count, in one run. Writes bench/results.md (or --out FILE).
#
#   Rscript bench/bench.R [--threads 2] [--seeds 3] [--quick] [--higgs] [--no-peer] [--out FILE]
#
# With --seeds K each side trains K times (seeds 0..K-1): times and rates are
# the median over the runs, accuracy the mean (one seed's accuracy moves by
# about 0.01 on these data, on both sides).
#
# Each measurement runs in its own process (fresh peak RSS). The peer needs
# `bash tools/setup.sh --bench` and the wheel unpacked in bench/.peer (see
# bench/README.md).
args <- commandArgs(trailingOnly = TRUE)
opt <- function(name, default) {
  i <- match(name, args)
  if (is.na(i)) default else args[[i + 1]]
}
threads <- as.integer(opt("--threads", "2"))
seeds <- seq_len(as.integer(opt("--seeds", "1"))) - 1L
quick <- "--quick" %in% args
run_peer <- !"--no-peer" %in% args
higgs <- "--higgs" %in% args
root <- normalizePath(".")
if (!file.exists(file.path(root, "bench", "bench.R"))) stop("run from the repository root")
work <- file.path(tempdir(), "tabnet-bench")
dir.create(work, showWarnings = FALSE)
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
run_ours <- function(dir, config, epochs, seed) {
  out <- file.path(work, paste0("ours-", config, "-", seed, ".json"))
  status <- system2(rscript, c(file.path(root, "bench", "tabnetrs_run.R"), dir, config, epochs, threads, out, seed),
                    env = c(paste0("OMP_NUM_THREADS=", threads)))
  if (status != 0) stop("tabnetrs run failed for ", config)
  jsonlite::fromJSON(out)
}
run_theirs <- function(dir, config, epochs, seed) {
  if (!run_peer) return(NULL)
  out <- file.path(work, paste0("peer-", config, "-", seed, ".json"))
  status <- system2("/usr/bin/python3", c(file.path(root, "bench", "peer_pytorch_tabnet.py"), "--data", dir,
                                          "--config", config, "--epochs", epochs, "--threads", threads,
                                          "--seed", seed, "--out", out),
                    env = c(paste0("PYTHONPATH=", file.path(root, "bench", ".peer"))))
  if (status != 0) {
    warning("pytorch-tabnet run failed for ", config)
    return(NULL)
  }
  jsonlite::fromJSON(out)
}

sgemm <- function() {
  tabnetrs:::use_threads(threads)
  c(square_2048 = tabnetrs:::rs_sgemm_gflops(2048, 2048, 2048, 5L),
    tabnet_s = tabnetrs:::rs_sgemm_gflops(16384, 50, 100, 20L))
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
rows <- list()
for (cf in configs) {
  n_test <- cf$n %/% 5
  dir <- write_data(file.path(work, cf$name), cf$n, n_test, cf$p, seed = 42)
  message("running ", cf$name, " (", cf$n, " x ", cf$p, ")")
  ours <- lapply(seeds, function(sd) run_ours(dir, cf$name, cf$epochs, sd))
  theirs <- Filter(Negate(is.null), lapply(seeds, function(sd) run_theirs(dir, cf$name, cf$epochs, sd)))
  rows[[cf$name]] <- list(cf = cf, ours = ours, theirs = theirs)
}
rates <- sgemm()

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
lines <- c(
  "# tabnetrs vs pytorch-tabnet 4.1.0",
  "",
  sprintf("Run %s on %s (%d cores, %s), R %s, libtorch 1.13.1 (Debian) for both, %d threads each.",
          format(Sys.time(), "%Y-%m-%d %H:%M UTC", tz = "UTC"), Sys.info()[["nodename"]], parallel::detectCores(),
          trimws(sub(".*: ", "", grep("model name", readLines("/proc/cpuinfo"), value = TRUE)[1])),
          getRversion(), threads),
  sprintf("BLAS in the tabnetrs process: %s.", rows[[1]]$ours[[1]]$blas),
  sprintf("BLAS in the pytorch-tabnet process: %s.",
          if (length(rows[[1]]$theirs)) rows[[1]]$theirs[[1]]$summary$blas else "n/a"),
  sprintf("Seeds per side: %d (times and rates: median over the runs; accuracy: mean).", length(seeds)),
  sprintf("sgemm with tabnetrs' libtorch: %.1f GFLOP/s (2048²), %.1f GFLOP/s (16384×50·50×100).",
          rates[["square_2048"]], rates[["tabnet_s"]]),
  "train s/epoch: mean of each tool's own per-epoch timer (fit setup excluded; `fit total s` includes it).",
  "",
  "| config | data | measure | tabnetrs | pytorch-tabnet | ratio |",
  "|---|---|---|---|---|---|"
)
for (r in rows) {
  o <- r$ours; t <- r$theirs; cf <- r$cf
  data <- sprintf("%s × %d", format(cf$n, big.mark = ","), cf$p)
  add <- function(what, a, b, higher_better = TRUE, d = 2) {
    ratio <- if (higher_better) a / b else b / a
    lines <<- c(lines, sprintf("| %s | %s | %s | %s | %s | %s |", cf$name, data, what, fmt(a, d), fmt(b, d),
                               ifelse(is.na(ratio), "n/a", sprintf("%.1f×", ratio))))
  }
  add("train s/epoch", over_runs(o, "per_epoch_s"), over_runs(t, c("fit", "epoch_times_s")), higher_better = FALSE)
  add("fit total s", over_runs(o, "fit_total_s"), over_runs(t, c("fit", "total_s")), higher_better = FALSE)
  add("predict rows/s", over_runs(o, "predict_holdout_rows_per_s"),
      over_runs(t, c("predict_proba", "holdout", "rows_per_s_median")), d = 0)
  add("explain rows/s", over_runs(o, "explain_rows_per_s"), over_runs(t, c("explain", "holdout", "rows_per_s_median")), d = 0)
  add("peak RSS MiB", over_runs(o, "peak_rss_mib", max), over_runs(t, c("memory", "peak_rss_mib"), max),
      higher_better = FALSE, d = 0)
  acc_o <- over_runs(o, "holdout_accuracy", mean)
  acc_t <- over_runs(t, c("metrics", "holdout_accuracy"), mean)
  lines <- c(lines, sprintf("| %s | %s | holdout accuracy | %.4f | %s | Δ %s |", cf$name, data, acc_o,
                            fmt(acc_t, 4), fmt(acc_o - acc_t, 4)))
}
s <- rows[["tabnet_s"]]
if (!is.null(s)) {
  flops <- tabnet_flops_per_row(s$cf$p, 24, 26, 5) * s$ours[[1]]$n_train
  achieved <- flops / over_runs(s$ours, "per_epoch_s") / 1e9
  lines <- c(lines, "", sprintf(
    "TabNet-S epoch: %.2f GFLOP of FC work (3 × forward), %.2f GFLOP/s achieved = %.1f %% of the 2048² sgemm rate (%.1f %% of the sgemm rate at TabNet-S's own shape).",
    flops / 1e9, achieved, 100 * achieved / rates[["square_2048"]], 100 * achieved / rates[["tabnet_s"]]))
}
if (higgs) {
  message("Higgs-size run: 10.5M x 28, one TabNet-S epoch")
  out <- file.path(work, "higgs.json")
  md <- file.path(work, "higgs.md")
  status <- system2(rscript, c(file.path(root, "bench", "higgs_run.R"), threads, out, md))
  if (status == 0) lines <- c(lines, "", readLines(md)[-(1:2)])
}
writeLines(lines, opt("--out", file.path(root, "bench", "results.md")))
cat(lines, sep = "\n")
