# LRP, NAP and latent features on 100,000 rows x 28 predictors, seconds per
# whole call as a user times it (tabnet_lrp() both rules, tabnet_nap(),
# tabnet_latent(); predict() beside them for scale), for a TabNet-S-like and a
# default-configuration fit, at 1 thread and at all cores.
#
#   Rscript bench/lrp_nap.R [--out bench/results-lrp-nap.md] [--reps 3]
#
# The data are Higgs-shaped (28 correlated numeric columns, a binary outcome
# from a few of them); the fits are short (1 epoch): the time of an
# explanation does not depend on how well the network was trained.
suppressPackageStartupMessages(library(tabnetrs))
args <- commandArgs(trailingOnly = TRUE)
opt <- function(name, default) {
  i <- match(paste0("--", name), args)
  if (is.na(i)) default else args[[i + 1]]
}
out <- opt("out", "bench/results-lrp-nap.md")
reps <- as.integer(opt("reps", "3"))
n <- 100000L
p <- 28L

set.seed(1)
z <- matrix(rnorm(n * p), n, p)
mix <- diag(p)
mix[cbind(2:p, 1:(p - 1))] <- 0.5  # neighbouring columns correlated
x <- as.data.frame(z %*% mix)
names(x) <- sprintf("f%02d", seq_len(p))
x$y <- factor(ifelse(x$f01 * x$f02 + x$f05 - 0.5 * x$f09^2 + rnorm(n, sd = 0.5) > -0.5, "signal", "background"),
              levels = c("signal", "background"))

configs <- list(
  tabnet_s = tabnet_config(decision_width = 24, attention_width = 26, num_steps = 5, feature_reusage = 1.5,
                           batch_size = 16384, virtual_batch_size = 512, momentum = 0.4, penalty = 1e-6,
                           learn_rate = 0.02, mask_type = "sparsemax"),
  defaults = tabnet_config(decision_width = 8, attention_width = 8, num_steps = 3, feature_reusage = 1.3,
                           batch_size = 1024, virtual_batch_size = 128, momentum = 0.02, penalty = 1e-3,
                           learn_rate = 0.02, mask_type = "sparsemax")
)
cores <- parallel::detectCores()
threads <- unique(c(1L, cores))
best_of <- function(f) min(replicate(reps, system.time(f())[["elapsed"]]))
rows <- list()
for (cf in names(configs)) {
  t_fit <- system.time(fit <- withr::with_seed(1, tabnet_fit(y ~ ., x, config = configs[[cf]], epochs = 1,
    verbose = FALSE, skip_importance = TRUE, checkpoint_epochs = 0)))[["elapsed"]]
  cat(cf, "fit (1 epoch):", round(t_fit, 1), "s\n")
  for (t in threads) {
    options(tabnetrs.threads = t)
    tm <- c(
      predict = best_of(function() predict(fit, x, type = "prob")),
      lrp_epsilon = best_of(function() tabnet_lrp(fit, x)),
      lrp_gamma = best_of(function() tabnet_lrp(fit, x, rule = "gamma")),
      lrp_mean = best_of(function() tabnet_lrp(fit, x, reference = "mean")),
      nap = best_of(function() tabnet_nap(fit, x)),
      latent = best_of(function() tabnet_latent(fit, x))
    )
    cat(cf, t, round(tm, 2), "\n")
    rows[[length(rows) + 1]] <- data.frame(config = cf, threads = t, t(tm))
  }
}
res <- do.call(rbind, rows)
fmt <- function(v) sprintf("%.2f", v)
lines <- c(
  "# LRP, NAP and latent features: 100,000 rows x 28 predictors",
  "",
  sprintf("`Rscript bench/lrp_nap.R` on %s (%d cores), %s. Seconds per whole call (best of %d), ",
          sub("^\\s+", "", system("grep -m1 'model name' /proc/cpuinfo | cut -d: -f2", intern = TRUE)),
          cores, format(Sys.time(), "%Y-%m-%d %H:%M UTC", tz = "UTC"), reps),
  "the forge of `new_data` included; fits of 1 epoch (TabNet-S-like: n_d = 24, n_a = 26, 5 steps;",
  "defaults: n_d = n_a = 8, 3 steps). `predict()` (the fused eval pass) for scale.",
  "",
  "| config | threads | predict | LRP epsilon | LRP gamma | LRP + mean row | NAP | latent |",
  "|---|---|---|---|---|---|---|---|",
  sprintf("| %s | %d | %s | %s | %s | %s | %s | %s |", res$config, res$threads, fmt(res$predict),
          fmt(res$lrp_epsilon), fmt(res$lrp_gamma), fmt(res$lrp_mean), fmt(res$nap), fmt(res$latent))
)
writeLines(lines, out)
cat(lines, sep = "\n")
