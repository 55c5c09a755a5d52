# Syn2 / Syn4 of the interpretation vignette (Arik & Pfister's synthetic data
# sets), generated with fixed seeds, and fits cached for the whole test run so
# that explain / importance / autoplot tests share them.

syn_logit_to_y <- function(logits) {
  p <- exp(logits) / (1 + exp(logits))
  factor(ifelse(p > 0.5, "yes", "no"), levels = c("yes", "no"))
}

syn_random_x <- function(n) {
  x <- as.data.frame(lapply(1:10, function(x) rnorm(n)))
  names(x) <- sprintf("V%02d", 1:10)
  x
}

# Syn2: the outcome is the sign of V03 + V04 + V05 + V06. The repository's one
# Syn2 generator: tools/demo.R sources this file too (bench/bench.R writes the
# same function of p columns straight to float32 files).
syn2_data <- function(n = 1000, seed = 1) {
  withr::with_seed(seed, {
    x <- syn_random_x(n)
    x$y <- factor(ifelse(rowSums(x[, 3:6]) > 0, "yes", "no"), levels = c("yes", "no"))
    x
  })
}

make_syn4 <- function(n = 5000, seed = 2025) {
  withr::with_seed(seed, {
    x <- syn_random_x(n)
    x$y <- syn_logit_to_y(ifelse(x[, 10] > 0, rowSums(x[, 1:2]), rowSums(x[, 5:6])))
    x
  })
}

syn_cache <- new.env(parent = emptyenv())

# Cached objects: a fit is computed once per test run.
syn_cached <- function(key, expr) {
  if (!exists(key, envir = syn_cache, inherits = FALSE)) {
    assign(key, force(expr), envir = syn_cache)
  }
  get(key, envir = syn_cache, inherits = FALSE)
}

syn2_train <- function() syn_cached("syn2", syn2_data(5000, seed = 2024))
syn4_train <- function() syn_cached("syn4", make_syn4())


# Syn4 needs more training than Syn2 to pick up the V10 switch (20 epochs).
syn4_fit <- function(seed = 1) {
  syn_cached(paste0("fit4_", seed), withr::with_seed(seed, tabnetrs::tabnet_fit(y ~ ., syn4_train(), epochs = 20)))
}

# The vignette's Syn2 fit (10 epochs, defaults) with a given seed.
syn2_fit_seed <- function(seed) {
  syn_cached(paste0("fit2_", seed), withr::with_seed(seed, tabnetrs::tabnet_fit(y ~ ., syn2_train(), epochs = 10)))
}

# Statistical claims are checked over several seeds: `claim(seed)` must hold
# for at least `min_ok` of them (measured over seeds 1-10 when written).
holds_for <- function(claim, seeds = 1:5) {
  sum(vapply(seeds, function(s) isTRUE(claim(s)), logical(1)))
}

# A small, quick fit for shape / error tests.
small_fit <- function() {
  syn_cached("small", withr::with_seed(13, tabnetrs::tabnet_fit(y ~ ., syn2_data(600, seed = 5), epochs = 5)))
}

top_vars <- function(imp, k) as.character(imp$Variable[order(-imp$Importance)][seq_len(k)])
