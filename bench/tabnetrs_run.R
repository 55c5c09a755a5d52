# One tabnetrs measurement in a fresh R process (so peak memory is its own):
#   Rscript bench/tabnetrs_run.R DATA_DIR CONFIG EPOCHS THREADS OUT.json [SEED]
# Reads the data written by bench/bench.R (format in bench/README.md), trains,
# predicts and explains with the same configuration as the peer.
args <- commandArgs(trailingOnly = TRUE)
dir <- args[[1]]; config <- args[[2]]; epochs <- as.integer(args[[3]])
threads <- as.integer(args[[4]]); out <- args[[5]]
seed <- if (length(args) >= 6) as.integer(args[[6]]) else 0L
suppressPackageStartupMessages(library(tabnetrs))
# prediction and explanation run on the session's threads, not the fit's
# num_threads: the same count for all three
options(tabnetrs.threads = threads)
peak_rss_mib <- function() {
  s <- readLines("/proc/self/status")
  as.numeric(sub("[^0-9]*([0-9]+).*", "\\1", s[grepl("^VmHWM", s)])) / 1024
}
# BLAS / OpenMP libraries mapped into this process (libtorch calls libblas.so.3).
blas_libraries <- function() {
  maps <- readLines("/proc/self/maps", warn = FALSE)
  libs <- unique(sub(".* ", "", maps[grepl("blas|lapack|gomp", maps)]))
  paste(basename(libs), collapse = ", ")
}
meta <- jsonlite::fromJSON(file.path(dir, "meta.json"))
n <- meta$n_train + meta$n_test; p <- meta$p
x <- readBin(file.path(dir, "X.f32"), "numeric", n * p, size = 4, endian = "little")
x <- as.data.frame(matrix(x, n, p, byrow = TRUE))
names(x) <- sprintf("V%02d", seq_len(p))
y <- readBin(file.path(dir, "y.i32"), "integer", n, size = 4, endian = "little")
x$y <- factor(y, levels = c(0, 1))
train <- x[seq_len(meta$n_train), ]
test <- x[meta$n_train + seq_len(meta$n_test), ]
# every row (train and holdout): the whole-call prediction, as the peer's
# predict_proba(X) on all rows
everything <- x[names(x) != "y"]
rm(x)
invisible(gc())
rss_data <- peak_rss_mib()
cfg <- switch(config,
  defaults = tabnet_config(decision_width = 8, attention_width = 8, num_steps = 3, feature_reusage = 1.3,
                           batch_size = 1024, virtual_batch_size = 128, momentum = 0.02, penalty = 1e-3,
                           learn_rate = 0.02, mask_type = "sparsemax"),
  tabnet_s = tabnet_config(decision_width = 24, attention_width = 26, num_steps = 5, feature_reusage = 1.5,
                           batch_size = 16384, virtual_batch_size = 512, momentum = 0.4, penalty = 1e-6,
                           learn_rate = 0.02, mask_type = "sparsemax")
)
set.seed(seed)
t_fit <- system.time(fit <- tabnet_fit(y ~ ., train, config = cfg, epochs = epochs, skip_importance = TRUE,
                                       num_threads = threads, checkpoint_epochs = 0))[["elapsed"]]
prob <- predict(fit, test, type = "prob")
t_pred_test <- min(replicate(3, system.time(predict(fit, test, type = "prob"))[["elapsed"]]))
t_pred_all <- min(replicate(2, system.time(predict(fit, train, type = "prob"))[["elapsed"]]))
# whole calls as users time them, on the data frame of all rows
t_pred_whole <- min(replicate(3, system.time(predict(fit, everything, type = "prob"))[["elapsed"]]))
t_explain_whole <- min(replicate(2, system.time(tabnet_explain(fit, everything))[["elapsed"]]))
t_explain <- min(replicate(3, system.time(tabnet_explain(fit, test))[["elapsed"]]))
score <- prob$.pred_1
pos <- test$y == "1"
r <- rank(score)
auc <- (sum(r[pos]) - sum(pos) * (sum(pos) + 1) / 2) / (sum(pos) * sum(!pos))
acc <- mean((score > 0.5) == pos)
res <- list(
  tool = "tabnetrs", config = config, epochs = epochs, threads = threads,
  n_train = meta$n_train, n_test = meta$n_test, p = p,
  fit_total_s = t_fit, per_epoch_s = mean(vapply(fit$fit$metrics, function(m) m$seconds, numeric(1))),
  epoch_times_s = vapply(fit$fit$metrics, function(m) m$seconds, numeric(1)),
  predict_holdout_rows_per_s = meta$n_test / t_pred_test,
  predict_all_rows_per_s = meta$n_train / t_pred_all,
  explain_rows_per_s = meta$n_test / t_explain,
  predict_whole_s = t_pred_whole, explain_whole_s = t_explain_whole, n_all = nrow(everything),
  peak_rss_mib = peak_rss_mib(), rss_after_data_mib = rss_data,
  holdout_accuracy = acc, holdout_auc = auc,
  n_parameters = fit$fit$n_parameters,
  blas = blas_libraries(),
  kernels = tabnetrs:::rs_blas_info()$kernels
)
jsonlite::write_json(res, out, auto_unbox = TRUE, digits = NA, pretty = TRUE)
