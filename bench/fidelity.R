# Fidelity study (issue #13): the TabNet paper's synthetic data sets Syn1-Syn6
# (Arik & Pfister 2021, Table 1; INVASE definitions), trained with the paper's
# hyperparameters by tabnetrs and by pytorch-tabnet 4.1.0 on the same bytes.
# Writes bench/results-fidelity.md (or --out FILE), rewritten after every run.
#
#   Rscript bench/fidelity.R [--iterations 1000] [--seeds 3] [--peer-seeds K]
#       [--data syn1,...,syn6] [--no-peer] [--tools tabnetrs,peer] [--jobs 1]
#       [--n-train 10000] [--n-test 10000] [--work bench/data/fidelity]
#       [--force] [--report-only] [--prepare] [--out bench/results-fidelity.md]
#
# --iterations: optimizer steps (the paper's "iterations"); epochs =
#   ceiling(iterations / steps per epoch), 4 steps per epoch at 10,000 rows and
#   B = 3000 (drop_last = FALSE: 3 x 3000 + 1000). --seeds K: tabnetrs trains
#   with seeds 0..K-1; --peer-seeds (default K) likewise for the peer.
# --jobs J: runs at most J training processes at once (each on 1 thread).
# Every run leaves a result JSON (+ test probabilities and test M_explain as
# float32) in --work/runs; existing ones are reused unless --force, so several
# invocations (e.g. one per tool, or a later --iterations 4000) add up, and the
# report always shows every run found in --work (grouped by iteration count).
# --report-only rewrites the report from them without training; --prepare only
# writes the data (run it first when several invocations share --work).
#
# The data are generated once per data set (float32 files in the format of
# bench/README.md, "Data format"); both tools read the same files.
args <- commandArgs(trailingOnly = TRUE)
opt <- function(name, default) {
  i <- match(name, args)
  if (is.na(i)) default else args[[i + 1]]
}

# ---------------------------------------------------------------------------
# The data sets and the paper's settings (spec sections 3.1 and 3.3)
# ---------------------------------------------------------------------------
f_syn1 <- function(x) x[, 1] * x[, 2]
f_syn2 <- function(x) x[, 3]^2 + x[, 4]^2 + x[, 5]^2 + x[, 6]^2 - 4
# the INVASE code's version (the INVASE text has -10 sin(2 X7) + 2|X8|)
f_syn3 <- function(x) -10 * sin(0.2 * x[, 7]) + abs(x[, 8]) + x[, 9] + exp(-x[, 10]) - 2.4
switch_f <- function(fa, fb) function(x) ifelse(x[, 11] < 0, fa(x), fb(x))
SYN <- list(
  syn1 = list(f = f_syn1, a = 1:2, b = NULL, n_steps = 4, gamma = 2.0, lambda = 0.02, paper = ".682 ± .005"),
  syn2 = list(f = f_syn2, a = 3:6, b = NULL, n_steps = 4, gamma = 2.0, lambda = 0.01, paper = ".892 ± .004"),
  syn3 = list(f = f_syn3, a = 7:10, b = NULL, n_steps = 4, gamma = 2.0, lambda = 0.01, paper = ".897 ± .003"),
  syn4 = list(f = switch_f(f_syn1, f_syn2), a = 1:2, b = 3:6, n_steps = 5, gamma = 1.5, lambda = 0.005,
              paper = ".776 ± .017"),
  syn5 = list(f = switch_f(f_syn1, f_syn3), a = 1:2, b = 7:10, n_steps = 5, gamma = 1.5, lambda = 0.005,
              paper = ".789 ± .009"),
  syn6 = list(f = switch_f(f_syn2, f_syn3), a = 3:6, b = 7:10, n_steps = 5, gamma = 1.5, lambda = 0.005,
              paper = ".878 ± .004")
)
# shared by all six (paper appendix); momentum in the PyTorch convention:
# the paper's m_B = 0.7 is TensorFlow's (moving = m * moving + (1 - m) * batch),
# PyTorch's running = (1 - m) * running + m * batch, so m = 1 - 0.7 = 0.3
COMMON <- list(n_d = 16L, n_a = 16L, batch_size = 3000L, virtual_batch_size = 100L, m_B = 0.7,
               momentum = 0.3, lr = 0.02, lr_decay = 0.7, decay_every = 200L, drop_last = FALSE)
P <- 11L

# relevant features of each row (Syn4-6: X11 and the branch's set)
relevant <- function(s, x) {
  if (is.null(s$b)) return(matrix(seq_len(P) %in% s$a, nrow(x), P, byrow = TRUE))
  left <- x[, 11] < 0
  ra <- seq_len(P) %in% c(s$a, 11L)
  rb <- seq_len(P) %in% c(s$b, 11L)
  m <- matrix(FALSE, nrow(x), P)
  m[left, ] <- rep(ra, each = sum(left))
  m[!left, ] <- rep(rb, each = sum(!left))
  m
}
union_set <- function(s) sort(unique(c(s$a, s$b, if (!is.null(s$b)) 11L)))

# AUC as the Mann-Whitney statistic (ties get half credit)
auc <- function(score, y) {
  pos <- y == 1
  r <- rank(score)
  (sum(r[pos]) - sum(pos) * (sum(pos) + 1) / 2) / (sum(pos) * sum(!pos))
}

to_f32 <- function(v) readBin(writeBin(as.vector(v), raw(), size = 4, endian = "little"),
                              "numeric", length(v), size = 4, endian = "little")
read_f32 <- function(path, n) readBin(path, "numeric", n, size = 4, endian = "little")
loadavg <- function() as.numeric(strsplit(readLines("/proc/loadavg"), " ")[[1]][1:3])
# CPU seconds used by all processes (from /proc/stat)
system_busy <- function() {
  v <- as.numeric(strsplit(readLines("/proc/stat", n = 1), " +")[[1]][-1])
  sum(v[c(1:3, 6:7)]) / 100
}

# train and test rows from different seeds; X rounded to float32 first, so the
# true probability and Y are those of the values both tools read
gen_rows <- function(s, n, seed) {
  set.seed(seed)
  x <- matrix(to_f32(rnorm(n * P)), n, P)
  prob <- 1 / (1 + exp(s$f(x)))
  list(x = x, y = stats::rbinom(n, 1, prob), prob = prob)
}
make_data <- function(name, n_train, n_test, dir) {
  s <- SYN[[name]]
  k <- match(name, names(SYN))
  seeds <- c(train = 1000L * k + 1L, test = 1000L * k + 2L)
  truth_path <- paste0(dir, ".truth.rds")   # beside the data directory, which holds only the three files
  if (file.exists(truth_path)) return(readRDS(truth_path))
  dir.create(dir, showWarnings = FALSE, recursive = TRUE)
  tr <- gen_rows(s, n_train, seeds[["train"]])
  te <- gen_rows(s, n_test, seeds[["test"]])
  x <- rbind(tr$x, te$x)
  con <- file(file.path(dir, "X.f32"), "wb")
  writeBin(as.vector(t(x)), con, size = 4, endian = "little")
  close(con)
  con <- file(file.path(dir, "y.i32"), "wb")
  writeBin(as.integer(c(tr$y, te$y)), con, size = 4, endian = "little")
  close(con)
  truth <- list(name = name, seeds = seeds, n_train = n_train, n_test = n_test,
                bayes_auc_test = auc(te$prob, te$y), bayes_auc_train = auc(tr$prob, tr$y),
                y_mean_test = mean(te$y), relevant_test = relevant(s, te$x), union = union_set(s))
  writeLines(jsonlite::toJSON(list(n_train = n_train, n_test = n_test, p = P,
                                   source = paste0("tabnetrs bench/fidelity.R ", name),
                                   seeds = as.list(seeds), bayes_auc_test = truth$bayes_auc_test),
                              auto_unbox = TRUE, digits = NA),
             file.path(dir, "meta.json"))
  saveRDS(truth, truth_path)
  truth
}

read_data <- function(dir) {
  meta <- jsonlite::fromJSON(file.path(dir, "meta.json"))
  n <- meta$n_train + meta$n_test
  x <- matrix(read_f32(file.path(dir, "X.f32"), n * meta$p), n, meta$p, byrow = TRUE)
  y <- readBin(file.path(dir, "y.i32"), "integer", n, size = 4, endian = "little")
  list(x = x, y = y, meta = meta)
}

steps_per_epoch <- function(n_train) {
  if (COMMON$drop_last) n_train %/% COMMON$batch_size else ceiling(n_train / COMMON$batch_size)
}

# ---------------------------------------------------------------------------
# Worker: one tabnetrs fit in this (fresh) process
#   Rscript bench/fidelity.R --worker-tabnetrs SPEC.json
# ---------------------------------------------------------------------------
worker_tabnetrs <- function(spec_path) {
  spec <- jsonlite::fromJSON(spec_path)
  suppressPackageStartupMessages(library(tabnetrs))
  d <- read_data(spec$data)
  n_train <- d$meta$n_train
  df <- as.data.frame(d$x)
  names(df) <- paste0("X", seq_len(ncol(df)))
  itr <- seq_len(n_train)
  xtr <- df[itr, ]
  xte <- df[-itr, ]
  ytr <- factor(d$y[itr], levels = c(0, 1))
  yte <- d$y[-itr]
  epochs <- ceiling(spec$iterations / steps_per_epoch(n_train))
  load0 <- loadavg()
  busy0 <- system_busy()
  cpu0 <- proc.time()
  t <- system.time(
    fit <- tabnet_fit(xtr, ytr, decision_width = COMMON$n_d, attention_width = COMMON$n_a,
                      num_steps = spec$n_steps, feature_reusage = spec$gamma, penalty = spec$lambda,
                      batch_size = COMMON$batch_size, virtual_batch_size = COMMON$virtual_batch_size,
                      momentum = COMMON$momentum, learn_rate = COMMON$lr, lr_scheduler = "exponential",
                      lr_decay = COMMON$lr_decay, step_size = COMMON$decay_every, drop_last = COMMON$drop_last,
                      epochs = epochs, mask_type = "sparsemax", num_independent = 2, num_shared = 2,
                      checkpoint_epochs = 0, seed = spec$seed, num_threads = spec$threads, verbose = FALSE)
  )[["elapsed"]]
  own <- sum((proc.time() - cpu0)[c("user.self", "sys.self")])
  foreign <- max(0, system_busy() - busy0 - own)
  load1 <- loadavg()
  sched <- fit$fit$schedule[[length(fit$fit$schedule)]]
  imp <- tabnet_importance(fit)
  imp <- imp$Importance[match(names(df), imp$Variable)]
  prob <- predict(fit, xte, type = "prob")$.pred_1
  mexp <- as.matrix(tabnet_explain(fit, xte)$M_explain)[, names(df)]
  writeBin(as.vector(prob), file.path(paste0(spec$out, ".prob.f32")), size = 4, endian = "little")
  writeBin(as.vector(t(mexp)), file.path(paste0(spec$out, ".mexp.f32")), size = 4, endian = "little")
  res <- list(tool = "tabnetrs", version = as.character(utils::packageVersion("tabnetrs")),
              timestamp_utc = format(Sys.time(), "%Y-%m-%dT%H:%M:%SZ", tz = "UTC"),
              data = list(dir = spec$data, n_train = n_train, n_test = d$meta$n_test, p = d$meta$p,
                          x_sum_f64 = sum(d$x)),
              settings = spec, epochs = epochs, steps_per_epoch = steps_per_epoch(n_train),
              steps = sched$steps, lr_final = sched$lr, fit_s = t, cpu_s = own,
              contention = list(foreign_cpu_s = foreign, foreign_cores_avg = foreign / t),
              load_before = list(loadavg = load0), load_after = list(loadavg = load1),
              n_params = fit$fit$n_parameters, importance = imp,
              installed = format(file.mtime(system.file("libs", package = "tabnetrs")), tz = "UTC", usetz = TRUE),
              threads = list(num_threads = spec$threads, OMP_NUM_THREADS = Sys.getenv("OMP_NUM_THREADS")))
  jsonlite::write_json(res, spec$out, auto_unbox = TRUE, digits = NA, pretty = TRUE)
  message(sprintf("tabnetrs %s seed %d: AUC %.4f, %d steps, %.1f s", basename(spec$data), spec$seed,
                  auc(prob, yte), as.integer(sched$steps), t))
  invisible(0)
}

if (identical(args[1], "--worker-tabnetrs")) {
  worker_tabnetrs(args[2])
  quit(save = "no", status = 0)
}

# ---------------------------------------------------------------------------
# Harness
# ---------------------------------------------------------------------------
root <- normalizePath(".")
if (!file.exists(file.path(root, "bench", "fidelity.R"))) stop("run from the repository root")
iterations <- as.integer(opt("--iterations", "1000"))
n_seeds <- as.integer(opt("--seeds", "3"))
n_peer_seeds <- as.integer(opt("--peer-seeds", as.character(n_seeds)))
data_names <- strsplit(opt("--data", paste(names(SYN), collapse = ",")), ",")[[1]]
if (!all(data_names %in% names(SYN))) stop("--data: unknown data set(s) ", paste(setdiff(data_names, names(SYN)), collapse = ", "))
tools <- strsplit(opt("--tools", "tabnetrs,peer"), ",")[[1]]
if ("--no-peer" %in% args) tools <- setdiff(tools, "peer")
jobs <- as.integer(opt("--jobs", "1"))
threads <- as.integer(opt("--threads", "1"))
n_train <- as.integer(opt("--n-train", "10000"))
n_test <- as.integer(opt("--n-test", "10000"))
work <- opt("--work", file.path(root, "bench", "data", "fidelity"))
out_md <- opt("--out", file.path(root, "bench", "results-fidelity.md"))
force <- "--force" %in% args
report_only <- "--report-only" %in% args
dir.create(file.path(work, "runs"), showWarnings = FALSE, recursive = TRUE)
peer_path <- Sys.getenv("PYTHONPATH", file.path(root, "bench", ".peer"))
if (!nzchar(peer_path)) peer_path <- file.path(root, "bench", ".peer")
rscript <- file.path(R.home("bin"), "Rscript")

data_dir <- function(name) file.path(work, sprintf("%s-n%d-%d", name, n_train, n_test))
run_file <- function(tool, name, seed) {
  file.path(work, "runs", sprintf("%s-%s-n%d-%d-it%d-s%d.json", tool, name, n_train, n_test, iterations, seed))
}

run_one <- function(task) {
  s <- SYN[[task$data]]
  out <- run_file(task$tool, task$data, task$seed)
  if (file.exists(out) && !force) return(out)
  dir <- data_dir(task$data)
  env <- c(paste0("OMP_NUM_THREADS=", threads), paste0("OPENBLAS_NUM_THREADS=", threads),
           paste0("MKL_NUM_THREADS=", threads))
  tmp <- paste0(out, ".part")
  if (task$tool == "tabnetrs") {
    spec <- list(data = dir, n_steps = s$n_steps, gamma = s$gamma, lambda = s$lambda,
                 iterations = iterations, seed = task$seed, threads = threads, out = tmp)
    spec_path <- paste0(out, ".spec.json")
    jsonlite::write_json(spec, spec_path, auto_unbox = TRUE, digits = NA)
    status <- system2(rscript, c(file.path(root, "bench", "fidelity.R"), "--worker-tabnetrs", spec_path), env = env)
    if (status != 0) {   # e.g. the package was being reinstalled: one more try
      Sys.sleep(60)
      status <- system2(rscript, c(file.path(root, "bench", "fidelity.R"), "--worker-tabnetrs", spec_path), env = env)
    }
    unlink(spec_path)
  } else {
    a <- c(file.path(root, "bench", "peer_fidelity.py"), "--data", dir,
           "--n-d", COMMON$n_d, "--n-a", COMMON$n_a, "--n-steps", s$n_steps, "--gamma", s$gamma,
           "--lambda-sparse", s$lambda, "--momentum", COMMON$momentum, "--batch-size", COMMON$batch_size,
           "--virtual-batch-size", COMMON$virtual_batch_size, "--lr", COMMON$lr, "--lr-decay", COMMON$lr_decay,
           "--decay-every", COMMON$decay_every, "--iterations", iterations, "--seed", task$seed,
           "--threads", threads, "--out", tmp, if (COMMON$drop_last) "--drop-last")
    status <- system2("/usr/bin/python3", a, env = c(env, paste0("PYTHONPATH=", peer_path)))
  }
  if (status != 0 || !file.exists(tmp)) {
    warning(sprintf("%s failed on %s, seed %d (status %s)", task$tool, task$data, task$seed, status))
    return(NA_character_)
  }
  for (ext in c(".prob.f32", ".mexp.f32")) file.rename(paste0(tmp, ext), paste0(out, ext))
  file.rename(tmp, out)
  write_report()
  out
}

# ---------------------------------------------------------------------------
# Report: every run found in work/runs
# ---------------------------------------------------------------------------
fmt <- function(x, d = 3) if (length(x) == 0 || all(is.na(x))) "–" else formatC(x, format = "f", digits = d)
mean_sd <- function(x, d = 3) {
  x <- x[!is.na(x)]
  if (length(x) == 0) return("–")
  if (length(x) == 1) return(sprintf("%s (1)", fmt(x, d)))
  sprintf("%s ± %s (%d)", fmt(mean(x), d), fmt(stats::sd(x), d), length(x))
}

collect_runs <- function() {
  files <- list.files(file.path(work, "runs"), pattern = "^(tabnetrs|peer)-syn[1-6]-.*\\.json$", full.names = TRUE)
  files <- files[!grepl("\\.(spec|part)\\.json$|\\.part$", files)]
  if (length(files) == 0) return(NULL)
  truths <- list()
  rows <- lapply(files, function(f) {
    m <- regmatches(basename(f), regexec("^(tabnetrs|peer)-(syn[1-6])-n([0-9]+)-([0-9]+)-it([0-9]+)-s([0-9]+)\\.json$", basename(f)))[[1]]
    if (length(m) == 0) return(NULL)
    r <- jsonlite::fromJSON(f)
    tdir <- file.path(work, sprintf("%s-n%s-%s", m[3], m[4], m[5]))
    key <- basename(tdir)
    if (is.null(truths[[key]])) truths[[key]] <<- readRDS(paste0(tdir, ".truth.rds"))
    truth <- truths[[key]]
    nt <- truth$n_test
    yte <- readBin(file.path(tdir, "y.i32"), "integer", truth$n_train + nt, size = 4, endian = "little")[truth$n_train + seq_len(nt)]
    prob <- read_f32(paste0(f, ".prob.f32"), nt)
    mexp <- matrix(read_f32(paste0(f, ".mexp.f32"), nt * P), nt, P, byrow = TRUE)
    tot <- rowSums(mexp)
    inst <- rowSums(mexp * truth$relevant_test) / tot
    la <- c(r$load_before$loadavg[1], r$load_after$loadavg[1])
    foreign <- r$contention$foreign_cores_avg
    if (is.null(foreign)) foreign <- NA_real_
    data.frame(tool = m[2], data = m[3], n_train = as.integer(m[4]), n_test = as.integer(m[5]),
               iterations = as.integer(m[6]), seed = as.integer(m[7]),
               auc = auc(prob, yte), bayes = truth$bayes_auc_test,
               share_global = sum(r$importance[truth$union]),
               share_instance = mean(inst[tot > 0]), zero_rows = sum(tot <= 0),
               fit_s = r$fit_s, steps = r$steps, epochs = r$epochs, lr_final = r$lr_final,
               n_params = r$n_params, load_max = max(la), foreign_cores = foreign,
               contended = max(la) > 2 || (!is.na(foreign) && foreign > 1.1),
               timestamp = r$timestamp_utc, installed = if (is.null(r$installed)) NA_character_ else r$installed,
               importance = I(list(r$importance)), stringsAsFactors = FALSE)
  })
  do.call(rbind, rows[!vapply(rows, is.null, logical(1))])
}

MACHINE <- NULL
machine_lines <- function() {
  if (!is.null(MACHINE)) return(MACHINE)
  cpu <- sub(".*: ", "", grep("^model name", readLines("/proc/cpuinfo"), value = TRUE)[1])
  os <- tryCatch(sub('^PRETTY_NAME="?([^"]*)"?$', "\\1", grep("^PRETTY_NAME", readLines("/etc/os-release"), value = TRUE)),
                 error = function(e) "?")
  tv <- tryCatch(as.character(utils::packageVersion("tabnetrs")), error = function(e) "?")
  pv <- tryCatch(system2("/usr/bin/python3", c("-c", shQuote("import torch; print(torch.__version__)")),
                         stdout = TRUE, stderr = FALSE), error = function(e) "?")
  c(sprintf("* Machine: %s, %d logical CPUs, %s; %s.", cpu, parallel::detectCores(), os, R.version.string),
    sprintf("* tabnetrs %s (libtorch 1.13.1 via tch); pytorch-tabnet 4.1.0 on Debian's torch %s.", tv, pv[1]),
    sprintf("* Each run: its own process, %d thread(s) (`num_threads` / `torch.set_num_threads()`, `OMP_NUM_THREADS`), at most %d processes at once.", threads, jobs))
}

write_report <- function() {
  runs <- collect_runs()
  L <- c("# Fidelity: TabNet paper Syn1–Syn6, tabnetrs vs pytorch-tabnet 4.1.0", "",
         sprintf("Generated by `Rscript bench/fidelity.R` (issue #13); last written %s UTC. Partial results are written as runs finish.",
                 format(Sys.time(), "%Y-%m-%d %H:%M", tz = "UTC")), "",
         "## Settings", "",
         "* Data (INVASE definitions, Yoon et al. 2019; TabNet paper §4.1): X ~ N(0, I₁₁), P(Y=1|X) = 1/(1+exp(f(X))), Y ~ Bernoulli(P). Syn1 f = X1·X2; Syn2 f = X3²+X4²+X5²+X6²−4; Syn3 f = −10·sin(0.2·X7)+|X8|+X9+exp(−X10)−2.4 (INVASE code version); Syn4: X11<0 → Syn1's f else Syn2's; Syn5: X11<0 → Syn1 else Syn3; Syn6: X11<0 → Syn2 else Syn3.",
         sprintf("* %s train rows and %s test rows drawn with different seeds (R's `set.seed(1000·k + 1)` resp. `1000·k + 2` for Syn k; X drawn with `rnorm` and rounded to float32 *before* P and Y are computed, so the true P is that of the bytes both tools read). Written once as `X.f32`/`y.i32`/`meta.json` (bench/README.md, \"Data format\"); both tools train on the first n_train rows and are scored on the rest.",
                 format(n_train, big.mark = ","), format(n_test, big.mark = ",")),
         "* Hyperparameters (TabNet paper, appendix): N_d = N_a = 16; N_steps 4, γ 2.0 (Syn1–3) / N_steps 5, γ 1.5 (Syn4–6); λ_sparse 0.02 (Syn1), 0.01 (Syn2–3), 0.005 (Syn4–6); B = 3000, B_V = 100; 2 shared + 2 step-dependent GLU layers; sparsemax; Adam, lr 0.02 multiplied by 0.7 every 200 optimizer steps (staircase); no gradient clipping; no validation set, no early stopping.",
         "* Batch-norm momentum: the paper's m_B = 0.7 is TensorFlow's convention (moving ← m·moving + (1−m)·batch); both tools use PyTorch's (running ← (1−m)·running + m·batch), so **momentum = 1 − 0.7 = 0.3** was passed to both.",
         "* Iterations = optimizer steps. drop_last = FALSE: an epoch of 10,000 rows is 4 steps (3 × 3000 + 1000; the 1000-row batch is cut into 10 ghost batches of 100, the 3000-row ones into 30), so epochs = ⌈iterations / 4⌉ (1000 iterations = 250 epochs = exactly 1000 steps). The paper's TF input pipeline repeats the data, so its batches are always 3000 rows.",
         "* tabnetrs: `tabnet_fit(x, y, decision_width = 16, attention_width = 16, num_steps, feature_reusage = γ, penalty = λ, batch_size = 3000, virtual_batch_size = 100, momentum = 0.3, learn_rate = 0.02, lr_scheduler = \"exponential\", lr_decay = 0.7, step_size = 200, drop_last = FALSE, epochs, checkpoint_epochs = 0, seed, num_threads = 1)`; `\"exponential\"` multiplies the lr by `lr_decay` after every `step_size`-th optimizer step.",
         "* pytorch-tabnet: `TabNetClassifier(n_d = 16, n_a = 16, n_steps, gamma, n_independent = 2, n_shared = 2, lambda_sparse, momentum = 0.3, mask_type = \"sparsemax\", clip_value = None, optimizer_fn = Adam, optimizer_params = {lr: 0.02}, scheduler_fn = StepLR, scheduler_params = {step_size: 200, gamma: 0.7, is_batch_level: True}, seed)`, `fit(eval_set = None, max_epochs = epochs, patience = 0, batch_size = 3000, virtual_batch_size = 100, drop_last = False, compute_importance = True)` (`bench/peer_fidelity.py`). `is_batch_level` (4.1.0 `LRSchedulerCallback`) steps StepLR after every batch, i.e. per optimizer step; the last steps' count and final lr are checked in the run table below.",
         "* Measures: test AUC of P(Y=1) (Mann–Whitney, computed in R for both tools from the probabilities each wrote); **Bayes AUC** = AUC of the true P(Y=1|X) on the same test rows (the ceiling); fit time = wall time of `tabnet_fit()` resp. `fit()` (both include the global importance on the training rows); **mask share (global)** = share of the fit-time mask importance (`tabnet_importance(fit)` / `feature_importances_`, column sums of M_explain over the training rows) on the generating features (Syn4–6: X11 and both branches' sets); **mask share (instance)** = mean over test rows of the row's normalised M_explain on *that row's* generating features (Syn4–6: X11 plus the branch X11 selects).",
         machine_lines(), "")
  if (!is.null(runs) && any(runs$tool == "tabnetrs")) {
    inst <- table(ifelse(is.na(runs$installed[runs$tool == "tabnetrs"]), "not recorded", runs$installed[runs$tool == "tabnetrs"]))
    L <- c(L[-length(L)], sprintf("* tabnetrs runs by the build time of the installed package (`tabnetrs/libs`): %s.",
                                  paste(sprintf("%s: %d", names(inst), as.integer(inst)), collapse = "; ")), "")
  }
  if (is.null(runs) || nrow(runs) == 0) {
    L <- c(L, "No runs finished yet.")
  } else {
    runs <- runs[order(runs$iterations, runs$data, runs$tool, runs$seed), ]
    for (it in sort(unique(runs$iterations))) {
      R <- runs[runs$iterations == it, ]
      L <- c(L, sprintf("## %d iterations (%d epochs)", it, R$epochs[1]), "",
             "Cells: mean ± sd (number of seeds). Seeds 0, 1, 2, … per tool.", "",
             "| data | Bayes AUC (true P) | paper TabNet | tabnetrs AUC | pytorch-tabnet AUC | Δ (tabnetrs − peer) |",
             "|---|---|---|---|---|---|")
      for (d in intersect(names(SYN), R$data)) {
        a <- R$auc[R$data == d & R$tool == "tabnetrs"]
        b <- R$auc[R$data == d & R$tool == "peer"]
        delta <- if (length(a) && length(b)) fmt(mean(a) - mean(b)) else "–"
        L <- c(L, sprintf("| %s | %s | %s | %s | %s | %s |", d, fmt(R$bayes[R$data == d][1]), SYN[[d]]$paper,
                          mean_sd(a), mean_sd(b), delta))
      }
      L <- c(L, "", "| data | tabnetrs fit s | pytorch-tabnet fit s | peer/ours | uniform masks (global / instance) | mask share global: tabnetrs | peer | mask share instance: tabnetrs | peer |",
             "|---|---|---|---|---|---|---|---|---|")
      for (d in intersect(names(SYN), R$data)) {
        A <- R[R$data == d & R$tool == "tabnetrs", ]
        B <- R[R$data == d & R$tool == "peer", ]
        ft <- function(X) if (nrow(X) == 0) "–" else sprintf("%s%s", mean_sd(X$fit_s, 1), if (any(X$contended)) " †" else "")
        ratio <- if (nrow(A) && nrow(B)) sprintf("%.1f×", stats::median(B$fit_s) / stats::median(A$fit_s)) else "–"
        sy <- SYN[[d]]
        uniform <- sprintf("%.2f / %.2f", length(union_set(sy)) / P,
                           if (is.null(sy$b)) length(sy$a) / P else (1 + (length(sy$a) + length(sy$b)) / 2) / P)
        L <- c(L, sprintf("| %s | %s | %s | %s | %s | %s | %s | %s | %s |", d, ft(A), ft(B), ratio, uniform,
                          mean_sd(A$share_global), mean_sd(B$share_global),
                          mean_sd(A$share_instance), mean_sd(B$share_instance)))
      }
      L <- c(L, "", "Uniform masks: the share a model attending to all 11 features equally would get (the chance level of the two mask shares). † at least one of these runs was *contended*: the 1-minute load average exceeded 2 before or after the fit, or other processes used more than the one spare core on average during it (fit times not clean; AUC and masks are unaffected).", "",
             "Mean global mask importance per feature (X1 … X11), over seeds:", "",
             paste0("| data | tool | ", paste(paste0("X", 1:P), collapse = " | "), " |"),
             paste0("|---|---|", strrep("---|", P)))
      for (d in intersect(names(SYN), R$data)) for (tl in c("tabnetrs", "peer")) {
        X <- R[R$data == d & R$tool == tl, ]
        if (nrow(X) == 0) next
        m <- colMeans(do.call(rbind, X$importance))
        u <- union_set(SYN[[d]])
        cells <- ifelse(seq_len(P) %in% u, sprintf("**%.2f**", m), sprintf("%.2f", m))
        L <- c(L, sprintf("| %s | %s | %s |", d, tl, paste(cells, collapse = " | ")))
      }
      L <- c(L, "", "(bold: generating features)", "", "<details><summary>Every run</summary>", "",
             "| data | tool | seed | AUC | fit s | steps | epochs | final lr | params | share global | share instance | max load | foreign cores | finished (UTC) |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
      for (i in seq_len(nrow(R))) {
        r <- R[i, ]
        L <- c(L, sprintf("| %s | %s | %d | %.4f | %.1f%s | %d | %d | %.3g | %d | %.3f | %.3f | %.2f | %s | %s |",
                          r$data, r$tool, r$seed, r$auc, r$fit_s, if (r$contended) " †" else "", as.integer(r$steps),
                          as.integer(r$epochs), r$lr_final, as.integer(r$n_params), r$share_global, r$share_instance,
                          r$load_max, fmt(r$foreign_cores, 2), sub("T", " ", sub("Z$", "", r$timestamp))))
      }
      L <- c(L, "", "</details>", "")
    }
  }
  tmp <- paste0(out_md, ".tmp", Sys.getpid())
  writeLines(L, tmp)
  file.rename(tmp, out_md)
  invisible(out_md)
}

if (report_only) {
  write_report()
  quit(save = "no", status = 0)
}

for (d in data_names) make_data(d, n_train, n_test, data_dir(d))
MACHINE <- machine_lines()
if ("--prepare" %in% args) {
  message("data written under ", work)
  quit(save = "no", status = 0)
}
tasks <- list()
for (seed in seq_len(max(n_seeds, n_peer_seeds)) - 1L) for (tl in tools) for (d in data_names) {
  if ((tl == "tabnetrs" && seed < n_seeds) || (tl == "peer" && seed < n_peer_seeds)) {
    tasks[[length(tasks) + 1]] <- list(tool = tl, data = d, seed = seed)
  }
}
if ("peer" %in% tools && !dir.exists(file.path(strsplit(peer_path, ":")[[1]][1], "pytorch_tabnet"))) {
  stop("pytorch_tabnet not found under ", peer_path, " (unpack the wheel into bench/.peer or set PYTHONPATH)")
}
done <- if (jobs > 1) {
  parallel::mclapply(tasks, run_one, mc.cores = jobs, mc.preschedule = FALSE)
} else lapply(tasks, run_one)
write_report()
message("wrote ", out_md)
