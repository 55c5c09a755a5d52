# Errors that start in the Rust core, one of each kind, as the user sees them:
# the R layer's condition classes and style (capitalised, the user's call, a
# hint for a damaged model), no panic text, C++ frames or internal names.
# The core's messages are cli templates with arguments (`msg!()`), translated
# through the package's catalogue like the R layer's: in French they are French.

# Runs `code` with R's messages in French (see test-translation.R).
in_french <- function(code) {
  withr::local_language("fr")
  code
}

skip_if_no_nls <- function() {
  skip_if_not(capabilities("NLS"), "R was built without NLS")
  skip_if(identical(Sys.getenv("LANG"), "C") || identical(Sys.getenv("LC_ALL"), "C"),
          "the C locale shows no translations")
}

test_that("an input error from Rust reads like the R layer's", {
  d <- data.frame(a = c(1, 2, 3, 4), b = c(2, 1, 4, 3), y = c(1, 2, 3, 1e39))
  expect_snapshot(tabnet_fit(y ~ ., d, epochs = 1), error = TRUE)
  expect_error(tabnet_fit(y ~ ., d, epochs = 1), class = "tabnetrs_error_input")
})

test_that("an input error from Rust is in French in a French session", {
  skip_if_no_nls()
  d <- data.frame(a = c(1, 2, 3, 4), b = c(2, 1, 4, 3), y = c(1, 2, 3, 1e39))
  expect_snapshot(in_french(tabnet_fit(y ~ ., d, epochs = 1)), error = TRUE)
  d <- data.frame(a = c(1, Inf, 3, 4), b = c(2, 1, 4, 3), y = c(1, 2, 3, 4))
  expect_snapshot(in_french(tabnet_fit(y ~ ., d, epochs = 1)), error = TRUE)
  e <- in_french(expect_error(tabnet_fit(y ~ ., d, epochs = 1), class = "tabnetrs_error_input"))
  expect_match(conditionMessage(e), "Le prédicteur a contient des valeurs infinies.", fixed = TRUE)
  expect_identical(conditionCall(e)[[1]], quote(tabnet_fit))
})

test_that("a Rust message's arguments are filled in by cli, in either language", {
  skip_if_no_nls()
  # the bridge's own check (the R layer checks thread counts before it)
  expect_snapshot(tabnetrs:::rs_set_threads(0.5), error = TRUE)
  expect_snapshot(in_french(tabnetrs:::rs_set_threads(0.5)), error = TRUE)
  e <- expect_error(tabnetrs:::rs_set_threads(1e9), class = "tabnetrs_error_input")
  expect_match(conditionMessage(e), "`num_threads` must be a whole number in [1, 4096], not 1e+09.", fixed = TRUE)
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

test_that("a model error from Rust is in French in a French session", {
  skip_if_no_nls()
  d <- data.frame(a = rnorm(40), b = rnorm(40), y = factor(rep(c("u", "v"), 20)))
  fit <- withr::with_seed(1, tabnet_fit(y ~ ., d, epochs = 1))
  broken <- fit
  broken$serialized_net <- as.raw(1:10)
  broken$fit$digest <- NULL
  broken$fit$network <- tabnetrs:::network_cache()
  expect_snapshot(in_french(predict(broken, d)), error = TRUE)
  e <- in_french(expect_error(predict(broken, d), class = "tabnetrs_error_model"))
  expect_match(conditionMessage(e), "Les poids ne peuvent pas être lus", fixed = TRUE)
})

test_that("an internal error keeps the Rust text out of the message", {
  expect_snapshot(tabnetrs:::rs_model_weights(NULL), error = TRUE)
  e <- expect_error(tabnetrs:::rs_model_weights(NULL), class = "tabnetrs_error_internal")
  expect_match(e$detail, "rs_model_weights")
})
