# tabnet_latent(): the aggregated decision output that the head reads.

test_that("latent features are N_d non-negative columns that the head maps to the outputs", {
  fit <- withr::with_seed(4, tabnet_fit(y ~ ., syn2_data(800, seed = 41), epochs = 3,
                                        decision_width = 6, attention_width = 6, verbose = FALSE))
  d <- syn2_data(200, seed = 42)
  z <- tabnet_latent(fit, d)
  expect_named(z, paste0("latent_", 1:6))
  expect_equal(nrow(z), 200)
  expect_true(all(as.matrix(z) >= 0))
  # the outputs are a linear map of the latent features: the logit difference
  # of the two classes is fitted exactly by a linear model without intercept
  yes <- tabnet_lrp(fit, d, class = "yes")$output
  no <- tabnet_lrp(fit, d, class = "no")$output
  resid <- stats::lm.fit(as.matrix(z), yes - no)$residuals
  expect_lt(max(abs(resid)), 1e-4)
  expect_error(tabnet_latent(fit, d, batch = 10), class = "tabnetrs_error_input")
})
