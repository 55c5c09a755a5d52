# Errors that start in the Rust core, one of each kind, as the user sees them:
# the R layer's condition classes and style (capitalised, the user's call, a
# hint for a damaged model), no panic text, C++ frames or internal names.

test_that("an input error from Rust reads like the R layer's", {
  d <- data.frame(a = c(1, 2, 3, 4), b = c(2, 1, 4, 3), y = c(1, 2, 3, 1e39))
  expect_snapshot(tabnet_fit(y ~ ., d, epochs = 1), error = TRUE)
  expect_error(tabnet_fit(y ~ ., d, epochs = 1), class = "tabnetrs_error_input")
})

test_that("a model error from Rust says the object was damaged", {
  d <- data.frame(a = rnorm(40), b = rnorm(40), y = factor(rep(c("u", "v"), 20)))
  fit <- withr::with_seed(1, tabnet_fit(y ~ ., d, epochs = 1))
  broken <- fit
  broken$serialized_net <- as.raw(1:10)
  broken$fit$digest <- NULL
  broken$fit$network <- tabnetrs:::network_cache()
  expect_snapshot(predict(broken, d), error = TRUE)
  expect_error(predict(broken, d), class = "tabnetrs_error_model")
})

test_that("an internal error keeps the Rust text out of the message", {
  expect_snapshot(tabnetrs:::rs_model_weights(NULL), error = TRUE)
  e <- expect_error(tabnetrs:::rs_model_weights(NULL), class = "tabnetrs_error_internal")
  expect_match(e$detail, "rs_model_weights")
})
