# The inference figures bench.R does not take, as users time them (whole calls from R, best of the
# repeats, elapsed and CPU): predict() of a defaults-size fit (the dreamquark configuration with
# sparsemax, and tabnetrs's default entmax) on a 100,000 x 10 data frame on one thread, and, for the
# sparsemax fit, permutation importance on 1,000,000 x 10 with 5 repeats and predict() of the
# 1,000,000 rows on two threads.
#   Rscript bench/targets.R            (N=100000 in the environment: the one-thread predict() only)
suppressMessages(library(tabnetrs))
set.seed(42)
n <- as.integer(Sys.getenv("N", "1000000")); p <- 10
x <- as.data.frame(matrix(rnorm(n * p), n, p)); names(x) <- sprintf("V%02d", 1:p)
x$y <- factor(ifelse(x$V01 + x$V02 * x$V03 - x$V04 + rnorm(n, sd = 0.3) > 0, "a", "b"))
timed <- function(expr, reps) {
  e <- substitute(expr); f <- parent.frame()
  r <- vapply(seq_len(reps), function(i) { t <- system.time(eval(e, f)); c(t[["elapsed"]], t[["user.self"]] + t[["sys.self"]]) }, numeric(2))
  c(elapsed = min(r[1, ]), cpu = min(r[2, ]))
}
for (mask in c("sparsemax", "entmax")) {
  cfg <- tabnet_config(decision_width = 8, attention_width = 8, num_steps = 3, feature_reusage = 1.3,
                       batch_size = 1024, virtual_batch_size = 128, momentum = 0.02, penalty = 1e-3,
                       learn_rate = 0.02, mask_type = mask)
  options(tabnetrs.threads = 2L)
  fit <- tabnet_fit(y ~ ., x[1:100000, ], config = cfg, epochs = 1, verbose = FALSE, skip_importance = TRUE)
  options(tabnetrs.threads = 1L)
  nd <- x[1:100000, 1:p]
  invisible(predict(fit, nd, type = "prob"))
  t1 <- timed(predict(fit, nd, type = "prob"), 10)
  cat(sprintf("[%s] predict(), 100,000 x 10 frame, 1 thread: %.1f ms elapsed (%.2f M rows/s), %.1f ms CPU (%.2f M rows/s)\n",
              mask, 1000 * t1[["elapsed"]], 0.1 / t1[["elapsed"]], 1000 * t1[["cpu"]], 0.1 / t1[["cpu"]]))
  if (n >= 1e6 && (mask == "sparsemax" || nzchar(Sys.getenv("PERM_ALL")))) {
    options(tabnetrs.threads = 2L)
    tp <- timed(imp <- tabnet_importance(fit, x, method = "permutation", n_repeats = 5), 1)
    cat(sprintf("[%s] permutation importance 1,000,000 x 10 x 5, 2 threads: %.1f s elapsed, %.1f s CPU\n", mask, tp[["elapsed"]], tp[["cpu"]]))
    t2 <- timed(predict(fit, x[1:p], type = "prob"), 3)
    cat(sprintf("[%s] predict(), 1,000,000 rows, 2 threads: %.3f s elapsed, %.3f s CPU\n", mask, t2[["elapsed"]], t2[["cpu"]]))
  }
}
