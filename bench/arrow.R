# Training from Arrow IPC files with bounded memory against the in-memory path.
#
#   Rscript bench/arrow.R [--rows N] [--seeds K] [--threads T] [--arrow-only] [--out FILE.md]
#
# Writes a Higgs-shaped data set (N rows x 28 numeric predictors + a string
# class, default 10.5M) as a directory of Arrow IPC stream files of 65,536 rows
# each, generated chunk by chunk (never the whole table in R), and a 200,000-row
# test set. Then, each in a fresh R process (so that peak RSS is its own):
#   * arrow:  tabnet_fit(class ~ ., tabnet_arrow(dir)), TabNet-S, 1 epoch;
#             predict(fit, tabnet_arrow(dir));
#   * memory: the same files read into a data frame, tabnet_fit(class ~ ., df);
#             predict(fit, df);
# for K seeds each, and reports epoch seconds, fit seconds, peak RSS (VmHWM),
# test accuracy and prediction rate.
args <- commandArgs(trailingOnly = TRUE)
arg <- function(name, default) {
  i <- match(name, args)
  if (is.na(i)) default else args[[i + 1L]]
}
if (length(args) && args[[1]] == "--child") {
  # ---- one measured run ------------------------------------------------------
  mode <- args[[2]]; dir <- args[[3]]; test_path <- args[[4]]; seed <- as.integer(args[[5]])
  threads <- as.integer(args[[6]]); out <- args[[7]]
  suppressPackageStartupMessages(library(tabnetrs))
  rss <- function(field) {
    s <- readLines("/proc/self/status")
    as.numeric(sub("[^0-9]*([0-9]+).*", "\\1", s[grepl(paste0("^", field), s)])) / 1024
  }
  read_dir <- function(dir) {
    files <- sort(list.files(dir, full.names = TRUE))
    parts <- lapply(files, function(f) as.data.frame(nanoarrow::read_nanoarrow(f)))
    df <- do.call(rbind, parts)
    df$class <- factor(df$class)
    df
  }
  test <- as.data.frame(nanoarrow::read_nanoarrow(test_path))
  test$class <- factor(test$class)
  data <- if (mode == "arrow") tabnet_arrow(dir) else read_dir(dir)
  invisible(gc())
  rss_before <- rss("VmRSS")
  t_fit <- system.time(fit <- tabnet_fit(class ~ ., data, epochs = 1, decision_width = 24, attention_width = 26,
                                         num_steps = 5, feature_reusage = 1.5, batch_size = 16384,
                                         virtual_batch_size = 512, momentum = 0.4, penalty = 1e-6,
                                         learn_rate = 0.02, mask_type = "sparsemax", num_threads = threads,
                                         skip_importance = TRUE, checkpoint_epochs = 0, seed = seed))[["elapsed"]]
  rss_fit <- rss("VmHWM")
  acc <- mean(predict(fit, test)$.pred_class == test$class)
  t_pred <- system.time(p <- predict(fit, data, type = "prob"))[["elapsed"]]
  n <- nrow(p)
  rm(p)
  res <- list(mode = mode, seed = seed, threads = threads, n = n, fit_s = t_fit,
              epoch_s = fit$fit$metrics[[1]]$seconds, train_loss = fit$fit$metrics[[1]]$train,
              test_acc = acc, predict_s = t_pred, predict_rows_per_s = n / t_pred,
              rss_start_mib = rss_before, peak_rss_fit_mib = rss_fit, peak_rss_mib = rss("VmHWM"))
  jsonlite::write_json(res, out, auto_unbox = TRUE, digits = NA)
  quit(save = "no")
}

# ---- the driver --------------------------------------------------------------
n <- as.numeric(arg("--rows", "10500000"))
seeds <- seq_len(as.integer(arg("--seeds", "3")))
threads <- as.integer(arg("--threads", "2"))
arrow_only <- "--arrow-only" %in% args
out_md <- arg("--out", NULL)
rscript <- file.path(R.home("bin"), "Rscript")
self <- normalizePath(sub("^--file=", "", grep("^--file=", commandArgs(FALSE), value = TRUE)))
work <- file.path(tempdir(), "arrow-bench")
dir <- file.path(work, "higgs")
unlink(work, recursive = TRUE)
dir.create(dir, recursive = TRUE)

# Higgs-shaped rows: 28 standard normal features, a class from 4 of them plus
# noise (so accuracy is below 1 and seed differences show)
chunk_rows <- 65536
make_chunk <- function(rows, seed) {
  set.seed(seed)
  df <- as.data.frame(lapply(1:28, function(i) rnorm(rows)))
  names(df) <- sprintf("V%02d", 1:28)
  df$class <- ifelse(df$V03 + df$V04 - df$V05 + 0.5 * df$V06 + 0.7 * rnorm(rows) > 0, "s", "b")
  df
}
t_gen <- system.time({
  left <- n
  k <- 0L
  while (left > 0) {
    rows <- min(chunk_rows, left)
    k <- k + 1L
    nanoarrow::write_nanoarrow(make_chunk(rows, 1000 + k), file.path(dir, sprintf("part-%05d.arrows", k)))
    left <- left - rows
  }
})[["elapsed"]]
test_path <- file.path(work, "test.arrows")
nanoarrow::write_nanoarrow(make_chunk(200000, 1), test_path)
bytes <- sum(file.size(list.files(dir, full.names = TRUE)))
message(sprintf("wrote %s rows in %d files (%.0f MiB) in %.0f s", format(n, big.mark = ","), k, bytes / 2^20, t_gen))

runs <- list()
for (seed in seeds) {
  for (mode in if (arrow_only) "arrow" else c("arrow", "memory")) {
    out <- file.path(work, sprintf("%s-%d.json", mode, seed))
    status <- system2(rscript, c(self, "--child", mode, dir, test_path, seed, threads, out))
    if (status != 0 || !file.exists(out)) stop("the ", mode, " run of seed ", seed, " failed")
    runs[[length(runs) + 1L]] <- as.data.frame(jsonlite::read_json(out))
    message(sprintf("%s seed %d: epoch %.1f s, peak RSS %.0f MiB, test accuracy %.4f, predict %.0f rows/s",
                    mode, seed, runs[[length(runs)]]$epoch_s, runs[[length(runs)]]$peak_rss_mib,
                    runs[[length(runs)]]$test_acc, runs[[length(runs)]]$predict_rows_per_s))
  }
}
runs <- do.call(rbind, runs)
summ <- function(m, col) mean(runs[runs$mode == m, col])
lines <- c(
  "# Training from Arrow files (bench/arrow.R)", "",
  sprintf("Data: %s rows x 28 numeric predictors + a string class, as %d Arrow IPC stream files of %s rows (%.0f MiB on disk), written chunk by chunk by the benchmark; a 200,000-row test set. TabNet-S (n_d = 24, n_a = 26, 5 steps, batch 16384, virtual batch 512), 1 epoch, %d threads, `shuffle_buffer` = 262,144 (default). Each run in a fresh R process; peak RSS = VmHWM of that process.",
          format(n, big.mark = ",", scientific = FALSE), k, format(chunk_rows, big.mark = ","), bytes / 2^20, threads),
  "", "| path | seed | epoch s | fit s | peak RSS MiB (fit) | peak RSS MiB (whole run) | test accuracy | predict rows/s |",
  "|---|---|---|---|---|---|---|---|",
  sprintf("| %s | %d | %.1f | %.1f | %.0f | %.0f | %.4f | %.0f |", runs$mode, runs$seed, runs$epoch_s, runs$fit_s,
          runs$peak_rss_fit_mib, runs$peak_rss_mib, runs$test_acc, runs$predict_rows_per_s))
if (!arrow_only) {
  ratio <- summ("arrow", "epoch_s") / summ("memory", "epoch_s")
  lines <- c(lines, "",
    sprintf("Means: epoch %.1f s from the files vs %.1f s in memory (ratio %.3f, target <= 1.15); peak RSS during the fit %.0f MiB vs %.0f MiB (target < 1024 MiB from the files); test accuracy %.4f (sd %.4f) vs %.4f (sd %.4f); predict %.0f vs %.0f rows/s (ratio %.2f).",
            summ("arrow", "epoch_s"), summ("memory", "epoch_s"), ratio,
            summ("arrow", "peak_rss_fit_mib"), summ("memory", "peak_rss_fit_mib"),
            summ("arrow", "test_acc"), stats::sd(runs$test_acc[runs$mode == "arrow"]),
            summ("memory", "test_acc"), stats::sd(runs$test_acc[runs$mode == "memory"]),
            summ("arrow", "predict_rows_per_s"), summ("memory", "predict_rows_per_s"),
            summ("arrow", "predict_rows_per_s") / summ("memory", "predict_rows_per_s")))
}
cat(lines, sep = "\n")
if (!is.null(out_md)) writeLines(lines, out_md)
unlink(work, recursive = TRUE)
