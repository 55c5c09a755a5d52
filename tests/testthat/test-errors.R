test_that("bad input gives clear R errors", {
  d <- syn2_data(100)
  bad <- d
  bad$y[3] <- NA
  expect_error(tabnet_fit(y ~ ., bad, epochs = 1), "missing values in the .*y.* outcome",
               class = "tabnetrs_error_input")
  expect_error(tabnet_fit(y ~ ., d[0, ], epochs = 1), "zero rows", class = "tabnetrs_error_input")
  inf <- d
  inf$V04[2] <- Inf
  expect_error(tabnet_fit(y ~ ., inf, epochs = 1), "V04.*infinite")
  chr <- d
  chr$V05 <- as.character(chr$V05)
  expect_error(tabnet_fit(y ~ ., chr, epochs = 1), "numeric or factors", class = "tabnetrs_error_input")
  expect_error(tabnet_fit(d[, 1:10]), "outcome")
  expect_error(tabnet_fit("not data"), "not defined", class = "tabnetrs_error_input")
  expect_error(tabnet_fit(y ~ ., d, epochs = -1), "epochs", class = "tabnetrs_error_config")
  expect_error(tabnet_fit(y ~ ., d, optimizer = "sgd"), 'only "adam"', class = "tabnetrs_error_config")
  expect_error(tabnet_fit(y ~ ., d, lr_scheduler = "cosine"), "step")
  expect_error(tabnet_fit(y ~ ., d, mask_type = "softmax"), "mask_type", class = "tabnetrs_error_config")
  expect_error(tabnet_fit(y ~ ., d, loss = "mse", epochs = 1), "not a valid loss for outcome of type factor",
               class = "tabnetrs_error_config")
  expect_error(tabnet_fit(y ~ ., d, num_independent = 0, num_shared = 0), "cannot both be 0")
  expect_error(tabnet_fit(y ~ ., d, early_stopping_monitor = "valid_loss", early_stopping_patience = 2),
               "not a valid early-stopping metric")
  mixed <- d
  mixed$z <- rnorm(nrow(d))
  expect_error(tabnet_fit(y + z ~ ., mixed, epochs = 1), "Mixed multi-outcome type", class = "tabnetrs_error_input")
})

test_that("prediction input is validated", {
  d <- syn2_data(200)
  fit <- tabnet_fit(y ~ ., d, epochs = 1)
  expect_error(predict(fit, d[, -3]), "V03", class = "tabnetrs_error_input")
  expect_error(predict(fit, d, type = "numeric"), "Outcome is factor", class = "tabnetrs_error_input")
  inf <- d
  inf$V01[1] <- -Inf
  expect_error(predict(fit, inf), "V01.*infinite")
  expect_error(predict(fit, d, epoch = 3), "checkpoint")
  reg <- tabnet_fit(V01 ~ V02 + V03, d, epochs = 1)
  expect_error(predict(reg, d, type = "prob"), "Outcome is numeric", class = "tabnetrs_error_input")
})

test_that("errors from the Rust core are R errors and leave the session usable", {
  d <- syn2_data(200)
  fit <- tabnet_fit(y ~ ., d, epochs = 1)
  broken <- fit
  broken$serialized_net <- as.raw(1:10)
  broken$fit$network <- tabnetrs:::network_cache()
  # a damaged model is refused (its weights cannot be read, or its checksum fails)
  expect_error(predict(broken, d), "damaged|not a ZIP archive")
  expect_equal(nrow(predict(fit, d)), 200)
})

test_that("errors under parsnip and workflows name the user's fit() or predict() call", {
  skip_if_not_installed("parsnip")
  skip_if_not_installed("workflows")
  d <- syn2_data(100)
  spec <- parsnip::set_mode(tabnet(epochs = -1), "classification")
  e <- rlang::catch_cnd(parsnip::fit(spec, y ~ ., d), "tabnetrs_error_config")
  expect_s3_class(e, "tabnetrs_error_config")
  expect_identical(e$call[[1]], quote(parsnip::fit))
  e <- rlang::catch_cnd(parsnip::fit_xy(spec, d[, 1:4], d$y), "tabnetrs_error_config")
  expect_identical(e$call[[1]], quote(parsnip::fit_xy))
  wf <- workflows::workflow(y ~ ., spec)
  fit <- parsnip::fit
  e <- rlang::catch_cnd(fit(wf, d), "tabnetrs_error_config")
  expect_identical(e$call, quote(fit(wf, d)))
  ok <- parsnip::fit(parsnip::set_mode(tabnet(epochs = 1), "classification"), y ~ ., d)
  e <- rlang::catch_cnd(predict(ok, d[, c("V01", "V02")]), "tabnetrs_error_input")
  expect_s3_class(e, "tabnetrs_error_input")
  expect_identical(e$call, quote(predict(ok, d[, c("V01", "V02")])))
  # the direct interface still names its own call
  e <- rlang::catch_cnd(tabnet_fit(y ~ ., d, epochs = -1), "tabnetrs_error_config")
  expect_identical(e$call, quote(tabnet_fit(y ~ ., d, epochs = -1)))
})

test_that("the call is threaded: checks name the call they are given, entry points their own", {
  # a check raises with the call its caller passes down (hardhat's `call`)
  e <- rlang::catch_cnd(tabnetrs:::check_count(-1, "n", call = quote(my_fun(n = -1))), "tabnetrs_error_input")
  expect_identical(e$call, quote(my_fun(n = -1)))
  f <- function(n) tabnetrs:::check_number(n, "n", min = 0, call = rlang::current_env())
  e <- rlang::catch_cnd(f(-2), "tabnetrs_error_input")
  expect_identical(e$call, quote(f(-2)))
  # an entry point called by another one (the matrix method calls the data
  # frame method) names the user's call; a check deep in the fit path too
  d <- syn2_data(50)
  x <- as.matrix(d[, c("V01", "V02")])
  e <- rlang::catch_cnd(tabnet_fit(x, d$y, epochs = 1, weights = rep(-1, 50)), "tabnetrs_error_input")
  expect_identical(e$call, quote(tabnet_fit(x, d$y, epochs = 1, weights = rep(-1, 50))))
  e <- rlang::catch_cnd(tabnet_fit(y ~ ., d, num_threads = 0), "tabnetrs_error_config")
  expect_identical(e$call, quote(tabnet_fit(y ~ ., d, num_threads = 0)))
})
