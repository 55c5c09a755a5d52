# Several outcomes at once: all numeric or all factors.

multi_data <- function(n = 400, seed = 7) {
  withr::with_seed(seed, {
    d <- data.frame(x1 = rnorm(n), x2 = rnorm(n), g = factor(sample(c("u", "v", "w"), n, TRUE)))
    d$a <- 2 * d$x1 + rnorm(n, sd = 0.1)
    d$b <- -d$x2 + ifelse(d$g == "w", 1, 0) + rnorm(n, sd = 0.1)
    d$ca <- factor(ifelse(d$x1 > 0, "pos", "neg"), levels = c("neg", "pos"))
    d$cb <- factor(c("u", "v", "w")[1 + (d$x2 > 0.5) + (d$x2 > -0.5)], levels = c("u", "v", "w"))
    d
  })
}

test_that("several numeric outcomes: formula, data frame y and recipe give .pred_a / .pred_b", {
  d <- multi_data()
  preds <- d[, c("x1", "x2", "g")]
  check <- function(fit) {
    expect_equal(fit$fit$outcome$task, "regression")
    p <- predict(fit, d)
    expect_named(p, c(".pred_a", ".pred_b"))
    expect_equal(nrow(p), nrow(d))
    expect_true(all(is.finite(p$.pred_a) & is.finite(p$.pred_b)))
    p
  }
  f <- tabnet_fit(a + b ~ x1 + x2 + g, d, epochs = 15, batch_size = 128, num_threads = 1, seed = 1)
  p <- check(f)
  # both outcomes are learnt (each one's own signal)
  expect_gt(cor(p$.pred_a, d$a), 0.8)
  expect_gt(cor(p$.pred_b, d$b), 0.5)
  check(tabnet_fit(preds, d[, c("a", "b")], epochs = 2, num_threads = 1))
  skip_if_not_installed("recipes")
  rec <- recipes::recipe(a + b ~ x1 + x2 + g, data = d)
  check(tabnet_fit(rec, d, epochs = 2, num_threads = 1))
  expect_error(predict(f, d, type = "prob"), "Outcome is numeric")
})

test_that("several factor outcomes: per-outcome probabilities summing to 1 and class columns", {
  d <- multi_data()
  fit <- tabnet_fit(ca + cb ~ x1 + x2 + g, d, epochs = 10, batch_size = 128, num_threads = 1, seed = 2)
  expect_equal(fit$fit$outcome$task, "classification")
  expect_equal(fit$fit$outcome$dims, c(2L, 3L))
  prob <- predict(fit, d, type = "prob")
  expect_named(prob, c(".pred_ca", ".pred_cb"))
  expect_named(prob$.pred_ca, c(".pred_neg", ".pred_pos"))
  expect_named(prob$.pred_cb, c(".pred_u", ".pred_v", ".pred_w"))
  expect_equal(rowSums(as.matrix(prob$.pred_ca)), rep(1, nrow(d)), tolerance = 1e-5)
  expect_equal(rowSums(as.matrix(prob$.pred_cb)), rep(1, nrow(d)), tolerance = 1e-5)
  expect_true(all(as.matrix(prob$.pred_cb) >= 0))
  cls <- predict(fit, d, type = "class")
  expect_named(cls, c(".pred_class_ca", ".pred_class_cb"))
  expect_identical(levels(cls$.pred_class_ca), c("neg", "pos"))
  expect_identical(levels(cls$.pred_class_cb), c("u", "v", "w"))
  # classes are the most probable level of each outcome
  expect_identical(as.character(cls$.pred_class_cb),
                   c("u", "v", "w")[max.col(as.matrix(prob$.pred_cb), ties.method = "first")])
  # both outcomes are learnt
  expect_gt(mean(cls$.pred_class_ca == d$ca), 0.8)
  expect_gt(mean(cls$.pred_class_cb == d$cb), 0.6)
  # data frame y
  f2 <- tabnet_fit(d[, c("x1", "x2", "g")], d[, c("ca", "cb")], epochs = 1, num_threads = 1)
  expect_named(predict(f2, d, type = "class"), c(".pred_class_ca", ".pred_class_cb"))
})

test_that("mixed outcome types are an error", {
  d <- multi_data(100)
  expect_error(tabnet_fit(a + ca ~ x1 + x2, d, epochs = 1), "Mixed multi-outcome type")
  expect_error(tabnet_fit(d[, c("x1", "x2")], d[, c("a", "ca")], epochs = 1), "Mixed multi-outcome type")
})

test_that("a multi-outcome fit resumes and checkpoints like a single one", {
  d <- multi_data(200)
  fit <- tabnet_fit(a + b ~ x1 + x2, d, epochs = 2, checkpoint_epochs = 1, valid_split = 0.2, num_threads = 1)
  expect_true(is.finite(fit$fit$metrics[[2]]$valid))
  more <- tabnet_fit(a + b ~ x1 + x2, d, tabnet_model = fit, epochs = 1)
  expect_length(more$fit$metrics, 3)
  expect_named(predict(more, d, epoch = 1), c(".pred_a", ".pred_b"))
})
