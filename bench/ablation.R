# Ablations for the fidelity study (issue #13): what stands between the
# paper's Syn1-Syn6 accuracy and tabnetrs at the paper's settings.
#
#   Rscript bench/fidelity.R --prepare          # writes the data once
#   Rscript bench/ablation.R [--data syn4] [--seeds 3] [--iterations 1000]
#       [--variants paper,bn_per_step,...] [--jobs 1] [--work bench/data/fidelity]
#       [--out bench/results-ablation.md]
#
# Every variant is the paper's configuration (bench/fidelity.R's) with one
# change. Each run is its own Rscript process on 1 thread; finished runs
# (JSON under --work/ablation) are reused, so invocations add up, and the
# report is rewritten from every run found.
args <- commandArgs(trailingOnly = TRUE)
arg <- function(name, default) {
  i <- match(name, args)
  if (is.na(i)) default else args[[i + 1]]
}
here <- function() {
  f <- sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE))
  normalizePath(dirname(f[1]))
}

# the paper's settings per data set (the TabNet paper's appendix; as in bench/fidelity.R)
SYN <- list(
  syn1 = list(n_steps = 4, gamma = 2.0, lambda = 0.02, paper = 0.682),
  syn2 = list(n_steps = 4, gamma = 2.0, lambda = 0.01, paper = 0.892),
  syn3 = list(n_steps = 4, gamma = 2.0, lambda = 0.01, paper = 0.897),
  syn4 = list(n_steps = 5, gamma = 1.5, lambda = 0.005, paper = 0.776),
  syn5 = list(n_steps = 5, gamma = 1.5, lambda = 0.005, paper = 0.789),
  syn6 = list(n_steps = 5, gamma = 1.5, lambda = 0.005, paper = 0.878)
)
BATCH <- 3000L
VBATCH <- 100L

# One change each from the paper's configuration (PyTorch BN convention).
VARIANTS <- list(
  paper = list(what = "the paper's settings, m_B = 0.7 as momentum 0.3 per ghost batch (bench/fidelity.R)",
               cfg = list()),
  # TensorFlow updates the moving statistics once per step with m = 0.7, from
  # the mean over the step's ghost batches (Keras virtual_batch_size). Per
  # ghost batch in PyTorch's convention the same memory is
  # (1 - m)^(B / B_V) = 0.7, m = 1 - 0.7^(1/30) = 0.0118.
  bn_per_step = list(what = "BN statistics with TensorFlow's memory: momentum 1 - 0.7^(1/30) = 0.0118 per ghost batch",
                     cfg = list(momentum = 1 - 0.7^(VBATCH / BATCH))),
  full_batches = list(what = "always-full batches (drop_last = TRUE; TF's input pipeline repeats the data)",
                      cfg = list(drop_last = TRUE)),
  entmax = list(what = "entmax-1.5 masks instead of sparsemax", cfg = list(mask_type = "entmax")),
  no_decay = list(what = "constant learning rate 0.02 (no staircase)", cfg = list(lr_scheduler = NULL)),
  valid_select = list(what = "model selection: 10 % validation split, best epoch by validation loss",
                      cfg = list(valid_split = 0.1, early_stopping_patience = 100000L)),
  entmax_valid = list(what = "entmax + valid_select (10 % validation split, best epoch by validation loss)",
                      cfg = list(mask_type = "entmax", valid_split = 0.1, early_stopping_patience = 100000L)),
  bn_step_entmax = list(what = "bn_per_step + entmax",
                        cfg = list(momentum = 1 - 0.7^(VBATCH / BATCH), mask_type = "entmax")),
  # the sparsity term: the same normalisation (mean over rows, sum over
  # features, mean over steps) in TF, pytorch-tabnet and tabnetrs; only the
  # epsilon inside log(M + epsilon) differs
  epsilon_tf = list(what = "TF's epsilon in the sparsity term, log(M + 1e-5) instead of log(M + 1e-15)",
                    cfg = list(epsilon = 1e-5)),
  glorot = list(what = "TF's initialisation: Glorot-uniform instead of pytorch-tabnet's Xavier-normal gains",
                cfg = list(init = "glorot_uniform")),
  tf_code = list(what = "everything above the TF code does differently at once: bn_per_step + full_batches + epsilon_tf + glorot",
                 cfg = list(momentum = 1 - 0.7^(VBATCH / BATCH), drop_last = TRUE, epsilon = 1e-5,
                            init = "glorot_uniform"))
)

auc <- function(score, y) {
  pos <- y == 1
  r <- rank(score)
  (sum(r[pos]) - sum(pos) * (sum(pos) + 1) / 2) / (sum(pos) * sum(!pos))
}
read_data <- function(dir) {
  meta <- jsonlite::fromJSON(file.path(dir, "meta.json"))
  n <- meta$n_train + meta$n_test
  x <- matrix(readBin(file.path(dir, "X.f32"), "numeric", n * meta$p, size = 4, endian = "little"),
              n, meta$p, byrow = TRUE)
  y <- readBin(file.path(dir, "y.i32"), "integer", n, size = 4, endian = "little")
  list(x = x, y = y, meta = meta)
}

# ---- worker: one fit --------------------------------------------------------
worker <- function(spec_path) {
  spec <- jsonlite::fromJSON(spec_path)
  suppressPackageStartupMessages(library(tabnetrs))
  d <- read_data(spec$data)
  s <- SYN[[spec$set]]
  v <- VARIANTS[[spec$variant]]
  n_train <- d$meta$n_train
  df <- as.data.frame(d$x)
  names(df) <- paste0("X", seq_len(ncol(df)))
  itr <- seq_len(n_train)
  drop_last <- isTRUE(v$cfg$drop_last)
  n_fit <- if (!is.null(v$cfg$valid_split)) n_train - floor(n_train * v$cfg$valid_split) else n_train
  steps <- if (drop_last) n_fit %/% BATCH else ceiling(n_fit / BATCH)
  epochs <- ceiling(spec$iterations / steps)
  cfg <- list(decision_width = 16L, attention_width = 16L, num_steps = s$n_steps, feature_reusage = s$gamma,
              penalty = s$lambda, batch_size = BATCH, virtual_batch_size = VBATCH, momentum = 0.3,
              learn_rate = 0.02, lr_scheduler = "exponential", lr_decay = 0.7, step_size = 200L,
              drop_last = FALSE, mask_type = "sparsemax", epochs = epochs, checkpoint_epochs = 0,
              seed = spec$seed, num_threads = 1L, verbose = FALSE)
  for (k in names(v$cfg)) cfg[k] <- list(v$cfg[[k]])
  t <- system.time(fit <- do.call(tabnet_fit, c(list(df[itr, ], factor(d$y[itr], levels = c(0, 1))), cfg)))
  prob <- predict(fit, df[-itr, ], type = "prob")$.pred_1
  res <- list(set = spec$set, variant = spec$variant, seed = spec$seed, iterations = spec$iterations,
              epochs = epochs, best_epoch = fit$fit$best_epoch %||% NA, auc = auc(prob, d$y[-itr]),
              seconds = t[["elapsed"]])
  # written whole, then renamed: a driver never reads half a file
  tmp <- paste0(spec$out, ".tmp")
  jsonlite::write_json(res, tmp, auto_unbox = TRUE, digits = NA)
  file.rename(tmp, spec$out)
}
`%||%` <- function(a, b) if (is.null(a)) b else a

if (identical(args[1], "--worker")) {
  worker(args[2])
  quit(save = "no")
}

# ---- driver -----------------------------------------------------------------
work <- arg("--work", file.path(here(), "data", "fidelity"))
out_md <- arg("--out", file.path(here(), "results-ablation.md"))
sets <- strsplit(arg("--data", "syn4"), ",")[[1]]
variants <- strsplit(arg("--variants", paste(names(VARIANTS), collapse = ",")), ",")[[1]]
seeds <- seq_len(as.integer(arg("--seeds", "3"))) - 1L
iterations <- as.integer(arg("--iterations", "1000"))
jobs <- as.integer(arg("--jobs", "1"))
stopifnot(all(sets %in% names(SYN)), all(variants %in% names(VARIANTS)))
dir.create(file.path(work, "ablation"), showWarnings = FALSE, recursive = TRUE)
data_dir <- function(set) {
  d <- list.files(work, pattern = paste0("^", set, "-n"), full.names = TRUE)
  d <- d[dir.exists(d)]
  if (!length(d)) stop("no data for ", set, " under ", work, ": run Rscript bench/fidelity.R --prepare")
  d[1]
}

report <- function() {
  files <- list.files(file.path(work, "ablation"), pattern = "\\.json$", full.names = TRUE)
  if (!length(files)) return(invisible())
  runs <- lapply(files, function(f) tryCatch(as.data.frame(jsonlite::fromJSON(f)), error = function(e) NULL))
  runs <- do.call(rbind, lapply(runs, function(r) if (!is.null(r)) r[c("set", "variant", "seed", "iterations", "auc")]))
  cell <- function(x) if (!length(x)) "" else if (length(x) == 1) sprintf("%.3f (1)", x) else
    sprintf("%.3f ± %.3f (%d)", mean(x), stats::sd(x), length(x))
  lines <- c("# Ablations: the paper's Syn1-Syn6 settings with one change each (issue #13)", "",
             sprintf("Generated by `Rscript bench/ablation.R`; last written %s UTC. Data: bench/fidelity.R's (10,000 train / 10,000 test rows); test AUC, mean ± sd (seeds). Each run 1 thread, its own process.",
                     format(Sys.time(), "%Y-%m-%d %H:%M", tz = "UTC")), "",
             "| variant | change |", "|---|---|",
             vapply(names(VARIANTS), function(v) sprintf("| `%s` | %s |", v, VARIANTS[[v]]$what), ""), "",
             "What the paper's TensorFlow code does the same way as pytorch-tabnet and tabnetrs (no run needed):", "",
             "* Where virtual batches are cut: Keras's `virtual_batch_size` reshapes a batch (B, d) to (B_V, B/B_V, d) and normalises over the first axis, so a ghost batch is rows j, j + B/B_V, j + 2B/B_V, ... (strided) where tabnetrs and pytorch-tabnet take contiguous runs. Every batch is a fresh random permutation of the rows, so both cuts give ghost batches with the same distribution (tabnetrs's autograd backend interleaves like TF and is tested equal to its fused pass on the same ghost batches, `core/tests/fused_vs_autograd.rs`). What does differ is the moving statistics' update, once per step from the ghost batches' mean (variant `bn_per_step`).",
             "* The sparsity term's normalisation: TF sums −M log(M + ε) over features, averages over the batch's rows and over its decision steps (its `num_decision_steps` is the paper's N_steps + 1, the first step has no mask); pytorch-tabnet and tabnetrs the same, with the sign folded into the penalty. Only ε differs (variant `epsilon_tf`).",
             "* The feature transformer's scaling: (GLU + residual) · √0.5 from the second layer on, in all three.",
             "* The learning-rate staircase: `tf.train.exponential_decay(0.02, step, 200, 0.7, staircase = TRUE)` is tabnetrs's `lr_scheduler = \"exponential\"` with `step_size = 200` counted in optimizer steps (the final learning rate is checked in bench/fidelity.R's run table); variant `no_decay` removes it.",
             "* Gradient clipping: TF clips each gradient value at ±2000 (a guard against blow-ups, not reproduced: these runs do not clip).", "")
  for (it in sort(unique(runs$iterations))) {
    r <- runs[runs$iterations == it, ]
    sets_here <- intersect(names(SYN), unique(r$set))
    lines <- c(lines, sprintf("## %d iterations", it), "",
               paste0("| variant | ", paste(sets_here, collapse = " | "), " |"),
               paste0("|---|", strrep("---|", length(sets_here))),
               paste0("| paper TabNet (4000 it.) | ", paste(sprintf("%.3f", vapply(SYN[sets_here], `[[`, 0, "paper")), collapse = " | "), " |"))
    for (v in intersect(names(VARIANTS), unique(r$variant))) {
      cells <- vapply(sets_here, function(s) cell(r$auc[r$variant == v & r$set == s]), "")
      lines <- c(lines, sprintf("| `%s` | %s |", v, paste(cells, collapse = " | ")))
    }
    lines <- c(lines, "")
  }
  writeLines(lines, out_md)
}

todo <- list()
for (set in sets) for (v in variants) for (s in seeds) {
  out <- file.path(work, "ablation", sprintf("%s-%s-it%d-seed%d.json", set, v, iterations, s))
  if (file.exists(out)) next
  spec <- list(set = set, variant = v, seed = s, iterations = iterations, data = data_dir(set), out = out)
  sp <- sub("\\.json$", ".spec", out)
  jsonlite::write_json(spec, sp, auto_unbox = TRUE)
  todo[[length(todo) + 1]] <- sp
}
rscript <- file.path(R.home("bin"), "Rscript")
me <- file.path(here(), "ablation.R")
running <- character()
failed <- character()
while (length(todo) || length(running)) {
  while (length(todo) && length(running) < jobs) {
    sp <- todo[[1]]
    todo <- todo[-1]
    message("run ", basename(sp))
    rc <- sub("\\.spec$", ".rc", sp)
    unlink(rc)
    cmd <- sprintf("OMP_NUM_THREADS=1 TABNETRS_THREADS=1 %s %s --worker %s > %s 2>&1; echo $? > %s",
                   shQuote(rscript), shQuote(me), shQuote(sp), shQuote(sub("\\.spec$", ".log", sp)), shQuote(rc))
    system2("sh", c("-c", shQuote(cmd)), wait = FALSE)
    running <- c(running, rc)
  }
  Sys.sleep(2)
  done <- file.exists(running)
  if (any(done)) {
    for (rc in running[done]) if (trimws(readLines(rc, warn = FALSE)[1]) != "0") failed <- c(failed, rc)
    running <- running[!done]
    report()
  }
}
report()
if (length(failed)) message("failed (see the .log beside each): ", paste(basename(failed), collapse = ", "))
message("wrote ", out_md)
