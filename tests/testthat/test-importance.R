syn2_signal <- sprintf("V%02d", 3:6)
syn4_signal <- c("V01", "V02", "V05", "V06")

# Measured over seeds 1-10 (fixed-split kernels, this data): Syn2's top four
# are V03-V06 by every measure for 10 of 10 seeds; Syn4's V10 is first by the
# model-agnostic measures for 10 of 10 and in the mask importance's top five
# for 10 of 10 (first or second for only 6 of 10: see the fidelity issue), with
# at least four of the five generating features in every top five.
test_that("Syn2: V03-V06 are the four most important by every measure, for at least 4 of 5 seeds", {
  x <- syn2_train()
  for (method in c("mask", "permutation", "occlusion", "mad")) {
    ok <- holds_for(function(s) {
      imp <- tabnet_importance(syn2_fit_seed(s), x, method = method, seed = 1)
      setequal(top_vars(imp, 4), syn2_signal)
    })
    expect_gte(ok, 4, label = paste(method, "importance: seeds with V03-V06 on top"))
  }
  # the importance stored at fit time is the mask importance on the training rows
  expect_setequal(top_vars(tabnet_importance(syn2_fit_seed(1)), 4), syn2_signal)
})

test_that("Syn4: V10 and the switched features lead, for at least 4 of 5 seeds", {
  x <- syn4_train()
  for (method in c("permutation", "occlusion", "mad")) {
    ok <- holds_for(function(s) {
      top_vars(tabnet_importance(syn4_fit(s), x, method = method, seed = 1), 1) == "V10"
    })
    expect_gte(ok, 4, label = paste(method, "importance: seeds ranking V10 first"))
  }
  ok <- holds_for(function(s) {
    top5 <- top_vars(tabnet_importance(syn4_fit(s)), 5)
    "V10" %in% top5 && sum(c(syn4_signal, "V10") %in% top5) >= 4
  })
  expect_gte(ok, 4, label = "mask importance: seeds with V10 and 3 switched features in the top five")
})

# The interpretation vignette as a user runs it (bench/vignette_study.R):
# its own generators, `set.seed(seed)` before the data and before the fit,
# `tabnet_fit(y ~ ., syn, epochs = 10)` at the package's defaults, and the
# fit's mask importance (what `vip::vip(fit)` plots). Measured over 60 seeds
# (bench/results-vignette.md): Syn2's top four are V03-V06 for 60 of 60;
# Syn4's V10 is first or second for about 88 % (with sparsemax and
# batch_size 1024, the defaults before issue #13, about 40 %). Over seeds
# 1-8, "at least 6" then holds with probability about 0.9 for the defaults
# and about 0.05 for the old ones, so the test fails without the change.
vignette_data <- function(seed) {
  random_x <- function(n) {
    x <- as.data.frame(lapply(1:10, function(x) rnorm(n)))
    names(x) <- sprintf("V%02d", 1:10)
    x
  }
  to_y <- function(logits) factor(ifelse(exp(logits) / (1 + exp(logits)) > 0.5, "yes", "no"),
                                  levels = c("yes", "no"))
  withr::with_seed(seed, {
    syn2 <- random_x(5000)
    syn2$y <- to_y(rowSums(syn2[, 3:6]))
    syn4 <- random_x(5000)
    syn4$y <- to_y(ifelse(syn4[, 10] > 0, rowSums(syn4[, 1:2]), rowSums(syn4[, 5:6])))
    list(syn2 = syn2, syn4 = syn4)
  })
}

test_that("the vignette's conclusions hold at the defaults: Syn2 V03-V06, Syn4 V10 first or second", {
  skip_on_cran()
  syn2_ok <- syn4_ok <- 0L
  for (s in 1:8) {
    d <- vignette_data(s)
    f2 <- withr::with_seed(s, tabnet_fit(y ~ ., d$syn2, epochs = 10))
    f4 <- withr::with_seed(s, tabnet_fit(y ~ ., d$syn4, epochs = 10))
    syn2_ok <- syn2_ok + setequal(top_vars(tabnet_importance(f2), 4), syn2_signal)
    syn4_ok <- syn4_ok + ("V10" %in% top_vars(tabnet_importance(f4), 2))
  }
  expect_gte(syn2_ok, 7)
  expect_gte(syn4_ok, 6)
})

test_that("importances have the documented shape and attributes", {
  fit <- small_fit()
  x <- syn2_data(300, seed = 41)
  mask <- tabnet_importance(fit)
  expect_s3_class(mask, c("tabnet_importance", "tbl_df"))
  expect_named(mask, c("Variable", "Importance"))
  expect_equal(sum(mask$Importance), 1, tolerance = 1e-6)
  expect_equal(attr(mask, "method"), "mask")
  expect_false(is.unsorted(rev(mask$Importance)))
  # the stored importance, as a tibble sorted decreasingly
  stored <- fit$fit$importances
  expect_equal(mask$Importance, sort(stored$importance, decreasing = TRUE))

  perm <- tabnet_importance(fit, x, method = "permutation", n_repeats = 3, seed = 7)
  expect_named(perm, c("Variable", "Importance", "StDev"))
  expect_setequal(perm$Variable, sprintf("V%02d", 1:10))
  expect_equal(attr(perm, "metric"), "roc_auc")
  expect_true(attr(perm, "baseline") > 0 && attr(perm, "baseline") <= 1)
  expect_equal(attr(perm, "n_repeats"), 3L)
  expect_equal(attr(perm, "n_rows"), 300L)
  expect_true(all(perm$StDev >= 0))

  occ <- tabnet_importance(fit, x, method = "occlusion")
  # the seed's percent drop in AUC beside the drop
  expect_named(occ, c("Variable", "Importance", "DeltaAUC"))
  expect_equal(occ$DeltaAUC, 100 * occ$Importance)
  expect_equal(attr(occ, "baseline"), attr(perm, "baseline"))

  mad <- tabnet_importance(fit, x, method = "mad")
  expect_equal(attr(mad, "metric"), "mad")
  expect_true(all(mad$Importance >= 0))
  expect_true(is.na(attr(mad, "baseline")))
  by <- attr(mad, "by_class")
  expect_named(by, c("Variable", "class", "Importance"))
  expect_setequal(by$class, c("yes", "no"))
  # overall = the row-weighted mean of the per-class values
  rows <- attr(mad, "rows_by_class")
  w <- rows[by$class] / sum(rows)
  overall <- tapply(by$Importance * w, by$Variable, sum)
  expect_equal(as.vector(overall[mad$Variable]), mad$Importance, tolerance = 1e-12)
  # classification MAD explains the true class: it needs the outcome
  expect_error(tabnet_importance(fit, x[, 1:10], method = "mad"), "outcome column.*y",
               class = "tabnetrs_error_input")
})

test_that("permutation importance is reproducible with a seed or set.seed()", {
  fit <- small_fit()
  x <- syn2_data(300, seed = 42)
  a <- tabnet_importance(fit, x, method = "permutation", n_repeats = 2, seed = 3)
  b <- tabnet_importance(fit, x, method = "permutation", n_repeats = 2, seed = 3)
  expect_identical(a, b)
  set.seed(9)
  c1 <- tabnet_importance(fit, x, method = "permutation", n_repeats = 2)
  set.seed(9)
  c2 <- tabnet_importance(fit, x, method = "permutation", n_repeats = 2)
  expect_identical(c1, c2)
})

test_that("regression models use the RMSE increase", {
  x <- syn2_data(400, seed = 43)
  x$y <- x$V01 - x$V02 + rnorm(400, sd = 0.1)
  fit <- withr::with_seed(6, tabnet_fit(y ~ ., x, epochs = 2))
  imp <- tabnet_importance(fit, x, method = "occlusion")
  expect_equal(attr(imp, "metric"), "rmse")
  expect_gt(attr(imp, "baseline"), 0)
  expect_output(print(imp), "RMSE")
})

test_that("vi_model() returns the stored importance as Variable / Importance", {
  fit <- small_fit()
  vi <- tabnetrs:::vi_model.tabnet_fit(fit)
  expect_named(vi, c("Variable", "Importance"))
  expect_equal(vi$Variable, fit$fit$importances$variables)
  expect_equal(vi$Importance, fit$fit$importances$importance)

  x <- syn2_data(200, seed = 44)
  skipped <- withr::with_seed(7, tabnet_fit(y ~ ., x, epochs = 1, skip_importance = TRUE))
  expect_null(skipped$fit$importances)
  expect_error(tabnetrs:::vi_model.tabnet_fit(skipped), "skip_importance")
  expect_error(tabnet_importance(skipped), "skip_importance")
  on_data <- tabnetrs:::vi_model.tabnet_fit(skipped, new_data = x)
  expect_equal(sum(on_data$Importance), 1, tolerance = 1e-6)

  pre <- withr::with_seed(8, tabnet_pretrain(x[, 1:10], epochs = 1))
  expect_equal(nrow(tabnetrs:::vi_model.tabnet_pretrain(pre, new_data = x)), 10L)
  expect_equal(sum(tabnet_importance(pre, x)$Importance), 1, tolerance = 1e-6)
  expect_error(tabnet_importance(pre, x, method = "permutation"), "only .*mask")
})

test_that("vip::vi() and vip::vip() work on tabnet, parsnip and workflow fits", {
  skip_if_not_installed("vip")
  skip_if_not_installed("parsnip")
  skip_if_not_installed("workflows")
  fit <- small_fit()
  x <- syn2_data(300, seed = 45)
  vi <- vip::vi(fit)
  expect_setequal(vi$Variable, sprintf("V%02d", 1:10))
  expect_s3_class(vip::vip(fit), "ggplot")
  spec <- parsnip::set_mode(tabnet(epochs = 1), "classification")
  pf <- withr::with_seed(9, parsnip::fit(spec, y ~ ., data = x))
  expect_equal(nrow(vip::vi(pf)), 10L)
  expect_s3_class(vip::vip(pf), "ggplot")
  wf <- withr::with_seed(9, generics::fit(workflows::workflow(y ~ ., spec), data = x))
  expect_equal(nrow(vip::vi(wf)), 10L)
  expect_s3_class(vip::vip(wf), "ggplot")
})

test_that("parsnip and workflow fits work with tabnet_importance()", {
  skip_if_not_installed("parsnip")
  skip_if_not_installed("workflows")
  x <- syn2_data(300, seed = 46)
  spec <- parsnip::set_mode(tabnet(epochs = 1), "classification")
  pf <- withr::with_seed(10, parsnip::fit(spec, y ~ ., data = x))
  expect_equal(tabnet_importance(pf), tabnet_importance(parsnip::extract_fit_engine(pf)))
  occ <- tabnet_importance(pf, x, method = "occlusion")
  expect_equal(occ, tabnet_importance(parsnip::extract_fit_engine(pf), x, method = "occlusion"))
  # fit_xy() with an outcome vector: the user names the outcome column
  pxy <- withr::with_seed(10, parsnip::fit_xy(spec, x = x[, 1:10], y = x$y))
  expect_error(tabnet_importance(pxy, x, method = "occlusion"), "outcome = ")
  expect_equal(nrow(tabnet_importance(pxy, x, method = "occlusion", outcome = "y")), 10L)
  wf <- withr::with_seed(10, generics::fit(workflows::workflow(y ~ ., spec), data = x))
  perm <- tabnet_importance(wf, x, method = "permutation", n_repeats = 2, seed = 1)
  expect_named(perm, c("Variable", "Importance", "StDev"))
  expect_equal(nrow(tabnet_importance(wf, x, method = "mad")), 10L)
})

test_that("tabnet_importance() gives clear errors for bad input", {
  fit <- small_fit()
  x <- syn2_data(50, seed = 47)
  expect_error(tabnet_importance(fit, x, method = "shap"), "must be one of")
  expect_error(tabnet_importance(fit, method = "permutation"), "new_data.*needed")
  expect_error(tabnet_importance(fit, x[, 1:10], method = "permutation"), "outcome column.*y")
  expect_error(tabnet_importance(fit, x[, -2], method = "mad"), "lacks the predictor.*V02")
  expect_error(tabnet_importance(fit, x, method = "permutation", n_repeats = 0), "n_repeats")
  expect_error(tabnet_importance(fit, x, method = "permutation", seed = "a"), "seed")
  expect_error(tabnet_importance(stats::lm(V01 ~ V02, x)), "not defined for a <lm>")
  # a misspelt argument is an error, not silently the mask importance
  expect_error(tabnet_importance(fit, x, type = "permutation"), "Unused argument.*type",
               class = "tabnetrs_error_unused_argument")
})

# MAD as Khot, Neubauer and Roy define it, recomputed in R from
# predict(type = "raw"): each predictor at its mean, the relative change of
# the true class's logit, clipped at 1.5 IQR per class, mean absolute value.
test_that("the MAD relevance is the seed's definition", {
  fit <- small_fit()
  x <- syn2_data(120, seed = 48)
  mad <- tabnet_importance(fit, x, method = "mad")
  raw <- as.matrix(predict(fit, x, type = "raw"))
  cls <- as.integer(x$y)
  z <- raw[cbind(seq_len(nrow(x)), cls)]
  ref <- vapply(sprintf("V%02d", 1:10), function(v) {
    d <- x
    # the mean as the core takes it, of the float32 column
    d[[v]] <- mean(x[[v]])
    z1 <- as.matrix(predict(fit, d, type = "raw"))[cbind(seq_len(nrow(x)), cls)]
    delta <- (z1 - z) / z
    keep <- z != 0
    per <- lapply(split(delta[keep], cls[keep]), function(dl) {
      q <- stats::quantile(dl, c(.25, .75), names = FALSE)
      dl[dl < q[1] - 1.5 * diff(q) | dl > q[2] + 1.5 * diff(q)] <- 0
      abs(dl)
    })
    mean(unlist(per))
  }, numeric(1))
  # float32 vs double means of the replaced column (an ulp of a value of
  # size ~3): relative 1e-4
  expect_equal(mad$Importance, unname(ref[mad$Variable]), tolerance = 1e-4)
})

test_that("print() describes the importance", {
  fit <- small_fit()
  x <- syn2_data(100, seed = 48)
  expect_output(print(tabnet_importance(fit)), "share of the aggregated attention masks")
  expect_output(print(tabnet_importance(fit, x, method = "permutation", n_repeats = 2, seed = 1)),
                "drop in ROC AUC when permuted")
})

test_that("a pretrained model stores its mask importance on the pretraining rows", {
  x <- syn2_data(300, seed = 46)
  pre <- withr::with_seed(9, tabnet_pretrain(x[, 1:10], epochs = 2, num_steps = 2))
  stored <- pre$fit$importances
  expect_named(stored, c("variables", "importance"))
  expect_identical(stored$variables, names(x)[1:10])
  expect_equal(sum(stored$importance), 1, tolerance = 1e-6)
  # the same as the mask importance over all pretraining rows (no validation split)
  on_rows <- tabnet_importance(pre, x[, 1:10])
  no_data <- tabnet_importance(pre)
  expect_s3_class(no_data, "tabnet_importance")
  expect_true(is.na(attr(no_data, "n_rows")))
  expect_equal(no_data$Importance[match(on_rows$Variable, no_data$Variable)], on_rows$Importance,
               tolerance = 1e-5)
  vi <- tabnetrs:::vi_model.tabnet_pretrain(pre)
  expect_named(vi, c("Variable", "Importance"))
  expect_identical(vi$Variable, names(x)[1:10])
  expect_equal(vi$Importance, stored$importance)
  # a validation split: stored on the training part only, so not the same as on all rows
  pre_v <- withr::with_seed(9, tabnet_pretrain(x[, 1:10], epochs = 1, valid_split = 0.5, seed = 3))
  valid_rows <- withr::with_seed(9, sort(sample.int(300, 150)))
  by_var <- function(imp) imp$Importance[order(imp$Variable)]
  expect_equal(by_var(tabnet_importance(pre_v)), by_var(tabnet_importance(pre_v, x[-valid_rows, 1:10])),
               tolerance = 1e-5)

  skipped <- withr::with_seed(9, tabnet_pretrain(x[, 1:10], epochs = 1, skip_importance = TRUE))
  expect_null(skipped$fit$importances)
  expect_error(tabnetrs:::vi_model.tabnet_pretrain(skipped), "skip_importance", class = "tabnetrs_error_model")
  expect_error(tabnet_importance(skipped), "skip_importance", class = "tabnetrs_error_model")
})
