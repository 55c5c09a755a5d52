# loss = "aum": the area under min(FPR, FNR) (Hillman & Hocking, 2023), for one
# binary outcome. Its value and gradient are proven in the Rust core
# (src/rust/core/src/loss/aum.rs); here: the R interface, and the end-to-end
# value of the loss against an R implementation on the model's own scores.

# AUM of `score` with `positive` (logical) and case weights `w`, from its
# definition: scores sorted decreasingly, min(FPR, FNR) on each interval
# between consecutive scores times its width.
aum_r <- function(score, positive, w = rep(1, length(score))) {
  o <- order(score, decreasing = TRUE)
  s <- score[o]
  p <- positive[o]
  w <- w[o]
  fpr <- cumsum(w * !p) / sum(w * !p)
  fnr <- (sum(w * p) - cumsum(w * p)) / sum(w * p)
  n <- length(s)
  sum(pmin(fpr, fnr)[-n] * (s[-n] - s[-1]))
}

# A rare signal (about 5 %) over a large background, decided by x1 and x2.
imbalanced_data <- function(n = 1000, seed = 1) {
  withr::with_seed(seed, {
    d <- data.frame(x1 = rnorm(n), x2 = rnorm(n), x3 = rnorm(n), x4 = rnorm(n))
    d$y <- factor(ifelse(d$x1 + d$x2 + rnorm(n, sd = 0.3) > 2.3, "signal", "background"),
                  levels = c("background", "signal"))
    d
  })
}

test_that("the loss a model reports is the AUM of its own scores", {
  d <- imbalanced_data(600)
  w <- ifelse(d$y == "signal", 5, 1)
  fit <- tabnet_fit(y ~ ., d, loss = "aum", epochs = 2, seed = 1, weights = w, skip_importance = TRUE)
  expect_identical(fit$fit$config$loss, "aum")
  expect_match(fit$fit$net_config, '"loss":"aum"', fixed = TRUE)
  prob <- predict(fit, d, type = "prob")
  score <- log(prob$.pred_signal) - log(prob$.pred_background)
  model <- tabnetrs:::live_network(fit)
  for (weighted in c(FALSE, TRUE)) {
    ds <- tabnetrs:::rust_dataset(model, d[1:4], fit$fit$layout, fit$fit$outcome, d["y"],
                                  if (weighted) w)
    got <- tabnetrs:::rs_eval_loss(model, ds, 65536)
    want <- if (weighted) aum_r(score, d$y == "signal", w) else aum_r(score, d$y == "signal")
    # float32 scores and sums over 600 rows
    expect_equal(got, want, tolerance = 1e-4)
  }
  expect_gt(aum_r(score, d$y == "signal"), 0)
  # a cross-entropy fit has no loss in its configuration (nor a new digest)
  ce <- tabnet_fit(y ~ ., d, epochs = 1, seed = 1, skip_importance = TRUE)
  expect_false(grepl("loss", ce$fit$net_config))
})

test_that("AUM training ranks a rare signal well over seeds, and training lowers the AUM", {
  test <- imbalanced_data(2000, seed = 99)
  res <- vapply(1:5, function(seed) {
    d <- imbalanced_data(1000, seed = seed)
    fit <- tabnet_fit(y ~ ., d, loss = "aum", epochs = 15, seed = seed, batch_size = 256,
                      virtual_batch_size = 128, skip_importance = TRUE)
    p <- predict(fit, test, type = "prob")$.pred_signal
    auc <- mean(outer(p[test$y == "signal"], p[test$y == "background"], ">"))
    first <- fit$fit$metrics[[1]]$train
    last <- fit$fit$metrics[[15]]$train
    c(auc = auc, lowered = last < first)
  }, numeric(2))
  # chance is 0.5; x1 + x2 decides the class
  expect_gte(sum(res["auc", ] > 0.9), 4, label = paste(round(res["auc", ], 3), collapse = " "))
  expect_gte(sum(res["lowered", ]), 4)
})

test_that("aum needs one binary outcome, and a continued fit keeps its loss", {
  d <- imbalanced_data(300)
  expect_error(tabnet_config(loss = "aun"), class = "tabnetrs_error_config")
  m <- mixed_data(200)
  expect_error(tabnet_fit(target ~ ., m, loss = "aum", epochs = 1), "binary", class = "tabnetrs_error_config")
  m$three <- factor(rep(c("a", "b", "c"), length.out = nrow(m)))
  expect_error(tabnet_fit(three ~ num1 + num2, m, loss = "aum", epochs = 1), "binary",
               class = "tabnetrs_error_config")
  expect_error(tabnet_fit(m[c("num1", "num2")], m[c("cls", "flag")], loss = "aum", epochs = 1), "binary",
               class = "tabnetrs_error_config")
  fit <- tabnet_fit(y ~ ., d, loss = "aum", epochs = 1, seed = 1, skip_importance = TRUE)
  more <- tabnet_fit(y ~ ., d, tabnet_model = fit, epochs = 1, skip_importance = TRUE)
  expect_identical(more$fit$config$loss, "aum")
  expect_identical(more$fit$net_config, fit$fit$net_config)
  # saved and read again
  path <- withr::local_tempfile(fileext = ".rds")
  saveRDS(fit, path)
  expect_identical(predict(readRDS(path), d, type = "prob"), predict(fit, d, type = "prob"))
})
