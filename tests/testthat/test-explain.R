test_that("tabnet_explain() returns M_explain and one mask per step, named by predictor", {
  fit <- small_fit()
  x <- syn2_data(60, seed = 21)
  ex <- tabnet_explain(fit, x)
  expect_s3_class(ex, "tabnet_explain")
  expect_named(ex, c("M_explain", "masks"))
  expect_s3_class(ex$M_explain, "tbl_df")
  expect_equal(dim(ex$M_explain), c(60L, 10L))
  expect_named(ex$M_explain, sprintf("V%02d", 1:10))
  expect_type(ex$masks, "list")
  expect_length(ex$masks, fit$fit$config$n_steps)
  for (m in ex$masks) {
    expect_s3_class(m, "tbl_df")
    expect_equal(dim(m), c(60L, 10L))
    expect_named(m, sprintf("V%02d", 1:10))
    # each step's mask is a distribution over the predictors
    expect_equal(unname(rowSums(as.matrix(m))), rep(1, 60), tolerance = 1e-4)
  }
  expect_true(all(as.matrix(ex$M_explain) >= 0))
})

test_that("a row's explanation does not depend on the rows explained with it", {
  fit <- small_fit()
  x <- syn2_data(300, seed = 22)
  batch <- tabnet_explain(fit, x)
  for (i in c(1L, 137L, 300L)) {
    alone <- tabnet_explain(fit, x[i, ])
    expect_equal(unlist(alone$M_explain[1, ]), unlist(batch$M_explain[i, ]), tolerance = 1e-5)
    for (k in seq_along(batch$masks)) {
      expect_equal(unlist(alone$masks[[k]][1, ]), unlist(batch$masks[[k]][i, ]), tolerance = 1e-5)
    }
  }
  # and not on the order of the rows
  rev_ex <- tabnet_explain(fit, x[300:1, ])
  expect_equal(as.matrix(rev_ex$M_explain)[300:1, ], as.matrix(batch$M_explain), tolerance = 1e-5)
})

test_that("the aggregated mask is consistent with the mask importance", {
  fit <- small_fit()
  x <- syn2_data(200, seed = 23)
  ex <- tabnet_explain(fit, x)
  share <- colSums(as.matrix(ex$M_explain))
  share <- share / sum(share)
  imp <- tabnet_importance(fit, x, method = "mask")
  expect_equal(imp$Importance, unname(share[imp$Variable]), tolerance = 1e-5)
})

test_that("the vignette's tidyverse code works on an explanation", {
  skip_if_not_installed("dplyr")
  skip_if_not_installed("tidyr")
  skip_if_not_installed("purrr")
  `%>%` <- magrittr::`%>%`
  fit <- small_fit()
  ex <- tabnet_explain(fit, syn2_data(50, seed = 24))
  long <- ex$M_explain %>%
    dplyr::mutate(observation = dplyr::row_number()) %>%
    tidyr::pivot_longer(-observation, names_to = "variable", values_to = "m_agg")
  expect_equal(nrow(long), 500L)
  expect_named(long, c("observation", "variable", "m_agg"))
  steps <- ex$masks %>%
    purrr::imap_dfr(~ dplyr::mutate(.x, step = sprintf("Step %d", .y), observation = dplyr::row_number()))
  expect_equal(nrow(steps), 50L * length(ex$masks))
  expect_true(all(c("step", "observation", "V01") %in% names(steps)))
  expect_setequal(unique(steps$step), sprintf("Step %d", seq_along(ex$masks)))
})

test_that("Syn4 masks switch between V01-V02 and V05-V06 with the sign of V10, for at least 4 of 5 seeds", {
  x <- make_syn4(2000, seed = 31)
  x <- x[order(x$V10), ]
  pos <- x$V10 > 0
  # measured: all four hold for 10 of 10 seeds
  ok <- holds_for(function(s) {
    m <- as.matrix(tabnet_explain(syn4_fit(s), x)$M_explain)
    m <- m / rowSums(m)
    a <- rowSums(m[, c("V01", "V02")])
    b <- rowSums(m[, c("V05", "V06")])
    # V10 > 0: the logit uses V01 + V02; V10 <= 0: V05 + V06
    mean(a[pos]) > mean(a[!pos]) && mean(b[!pos]) > mean(b[pos]) &&
      mean(a[pos]) > mean(b[pos]) && mean(b[!pos]) > mean(a[!pos])
  })
  expect_gte(ok, 4)
})

test_that("pretrained encoders, parsnip fits and workflows can be explained", {
  x <- syn2_data(300, seed = 25)
  pre <- withr::with_seed(3, tabnet_pretrain(x[, 1:10], epochs = 1))
  ex <- tabnet_explain(pre, x[1:20, ])
  expect_s3_class(ex, "tabnet_explain")
  expect_equal(dim(ex$M_explain), c(20L, 10L))

  skip_if_not_installed("parsnip")
  spec <- parsnip::set_mode(tabnet(epochs = 1), "classification")
  pf <- withr::with_seed(4, parsnip::fit(spec, y ~ ., data = x))
  ex <- tabnet_explain(pf, x[1:7, ])
  expect_equal(dim(ex$M_explain), c(7L, 10L))
  expect_equal(ex, tabnet_explain(parsnip::extract_fit_engine(pf), x[1:7, ]))

  skip_if_not_installed("workflows")
  wf <- workflows::workflow(y ~ ., spec)
  wf <- withr::with_seed(4, generics::fit(wf, data = x))
  ex <- tabnet_explain(wf, x[1:7, ])
  expect_equal(dim(ex$M_explain), c(7L, 10L))
  expect_named(ex$M_explain, sprintf("V%02d", 1:10))
})

test_that("explanations handle factor predictors and missing values", {
  x <- syn2_data(300, seed = 26)
  x$g <- factor(sample(c("a", "b", "c"), 300, replace = TRUE))
  fit <- withr::with_seed(5, tabnet_fit(y ~ ., x, epochs = 1, cat_emb_dim = 2))
  x$V01[1:3] <- NA
  ex <- tabnet_explain(fit, x[1:10, ])
  expect_named(ex$M_explain, c(sprintf("V%02d", 1:10), "g"))
  expect_false(anyNA(as.matrix(ex$M_explain)))
  expect_false(anyNA(as.matrix(ex$masks[[1]])))
})

test_that("tabnet_explain() gives clear errors for bad input", {
  fit <- small_fit()
  x <- syn2_data(20, seed = 27)
  expect_error(tabnet_explain(fit, x[, -3]), "lacks the predictor.*V03")
  expect_error(tabnet_explain(fit, x[0, ]), "zero rows")
  expect_error(tabnet_explain(fit), "missing")
  expect_error(tabnet_explain(fit, "a"), "must be a data frame")
  expect_error(tabnet_explain(stats::lm(V01 ~ V02, x), x), "not defined for a <lm>")
  expect_error(tabnet_explain(list(), x), "not defined for a <list>")
  x$V04 <- as.character(x$V04)
  expect_error(tabnet_explain(fit, x), "new_data.*does not match", class = "tabnetrs_error_input")
})

test_that("print() summarises an explanation", {
  fit <- small_fit()
  ex <- tabnet_explain(fit, syn2_data(30, seed = 28))
  expect_output(print(ex), "TabNet explanation: 30 observations, 10 predictors, 3 decision steps")
  expect_output(print(ex), "V01")
  expect_output(print(ex), "autoplot")
  expect_invisible(print(ex))
})
