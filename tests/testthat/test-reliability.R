# What a user relies on first: saved models are verified, forked workers run,
# a seed gives one model whatever the thread count, numbers beyond float32 and
# non-finite losses are errors, and no Rust panic text reaches the console.

flip_byte <- function(raw, at, mask = 1L) {
  raw[at] <- as.raw(bitwXor(as.integer(raw[at]), mask))
  raw
}

test_that("a damaged or edited model is an error of class tabnetrs_error_model", {
  d <- syn2_data(300)
  fit <- withr::with_seed(1, tabnet_fit(y ~ ., d, epochs = 2, checkpoint_epochs = 1))
  ok <- predict(fit, d, type = "prob")
  n <- length(fit$serialized_net)
  # one flipped byte, anywhere (first, middle, last), or 101 bytes
  for (at in c(1L, n %/% 2L, n)) {
    bad <- fit
    bad$serialized_net <- flip_byte(bad$serialized_net, at)
    expect_error(predict(bad, d), class = "tabnetrs_error_model")
  }
  bad <- fit
  bad$serialized_net[200:300] <- as.raw(0)
  expect_error(predict(bad, d), "do not match the checksum", class = "tabnetrs_error_model")
  # truncated
  bad <- fit
  bad$serialized_net <- bad$serialized_net[1:(n - 10)]
  expect_error(predict(bad, d), class = "tabnetrs_error_model")
  # hand edits of the network configuration: mask type, column order
  edit <- fit
  edit$fit$net_config <- sub('"mask_type":"entmax"', '"mask_type":"sparsemax"', edit$fit$net_config)
  expect_false(identical(edit$fit$net_config, fit$fit$net_config))
  expect_error(predict(edit, d), class = "tabnetrs_error_model")
  edit <- fit
  edit$fit$net_config <- sub('"num_cols":[0,1,', '"num_cols":[1,0,', edit$fit$net_config, fixed = TRUE)
  expect_false(identical(edit$fit$net_config, fit$fit$net_config))
  expect_error(predict(edit, d), class = "tabnetrs_error_model")
  # a damaged checkpoint
  bad <- fit
  bad$fit$checkpoints$epoch_1 <- flip_byte(bad$fit$checkpoints$epoch_1, 100L)
  expect_error(predict(bad, d, epoch = 1), class = "tabnetrs_error_model")
  expect_equal(nrow(predict(bad, d, epoch = 2)), nrow(d))
  # the original is untouched by all of this
  expect_identical(predict(fit, d, type = "prob"), ok)
})

test_that("weights of another network are rejected by name and shape, even without a checksum", {
  d <- syn2_data(300)
  cls <- withr::with_seed(1, tabnet_fit(y ~ ., d, epochs = 1))
  reg <- withr::with_seed(1, tabnet_fit(V01 ~ ., d[setdiff(names(d), "y")], epochs = 1))
  # as saved before checksums existed: no digest, so only the structure is checked
  old_style <- function(x) {
    x$fit$digest <- NULL
    x$fit$network <- tabnetrs:::network_cache()
    x
  }
  mixed <- old_style(cls)
  mixed$serialized_net <- reg$serialized_net
  expect_error(predict(mixed, d), "shape", class = "tabnetrs_error_model")
  junk <- old_style(cls)
  junk$serialized_net <- as.raw(1:10)
  expect_error(predict(junk, d), "cannot be read", class = "tabnetrs_error_model")
  # an unedited model saved without a checksum still predicts
  expect_equal(predict(old_style(cls), d, type = "prob"), predict(cls, d, type = "prob"))
})

test_that("a copy whose weights were replaced never uses the original's network cache", {
  d <- syn2_data(300)
  g <- withr::with_seed(1, tabnet_fit(y ~ ., d, epochs = 1))
  other <- withr::with_seed(2, tabnet_fit(y ~ ., d, epochs = 1))
  invisible(predict(g, d)) # fills the cache shared by copies of g
  h <- g
  h$serialized_net <- other$serialized_net
  expect_error(predict(h, d), class = "tabnetrs_error_model")
  rds <- withr::local_tempfile(fileext = ".rds")
  saveRDS(h, rds)
  expect_error(predict(readRDS(rds), d), class = "tabnetrs_error_model")
  # the same edit made consistently (weights and checksum) is another model
  h$fit$digest <- other$fit$digest
  expect_equal(predict(h, d, type = "prob"), predict(other, d, type = "prob"))
  expect_false(isTRUE(all.equal(predict(h, d, type = "prob"), predict(g, d, type = "prob"))))
})

test_that("a pretrained model is verified too, and continuing from a damaged model fails", {
  d <- syn2_data(300)
  pre <- withr::with_seed(1, tabnet_pretrain(d[1:10], epochs = 1))
  bad <- pre
  bad$serialized_net <- flip_byte(bad$serialized_net, 500L)
  expect_error(tabnet_explain(bad, d[1:20, ]), class = "tabnetrs_error_model")
  expect_error(tabnet_fit(y ~ ., d, tabnet_model = bad, epochs = 1), class = "tabnetrs_error_model")
  fit <- withr::with_seed(1, tabnet_fit(y ~ ., d, epochs = 1))
  bad <- fit
  bad$serialized_net <- flip_byte(bad$serialized_net, 500L)
  expect_error(tabnet_fit(y ~ ., d, tabnet_model = bad, epochs = 1), class = "tabnetrs_error_model")
})

test_that("a seed gives the same model on 1 and 2 threads", {
  d <- mixed_data(600)
  fit_on <- function(threads) {
    withr::with_seed(5, tabnet_fit(target ~ ., d, epochs = 3, batch_size = 256, virtual_batch_size = 64,
                                   num_threads = threads))
  }
  one <- fit_on(1)
  two <- fit_on(2)
  expect_identical(one$serialized_net, two$serialized_net)
  expect_identical(predict(one, d), predict(two, d))
})

test_that("values beyond float32 are errors naming the column", {
  d <- syn2_data(200)
  big <- d
  big$V04[7] <- 1e39
  expect_error(tabnet_fit(y ~ ., big, epochs = 1), "V04.*float32", class = "tabnetrs_error_input")
  big$V04[7] <- -1e39
  expect_error(tabnet_fit(y ~ ., big, epochs = 1), "V04.*float32", class = "tabnetrs_error_input")
  fit <- withr::with_seed(1, tabnet_fit(y ~ ., d, epochs = 1))
  expect_error(predict(fit, big), "V04.*float32", class = "tabnetrs_error_input")
  reg <- d[c("V01", "V02", "V03")]
  reg$V01[3] <- 2e39
  expect_error(tabnet_fit(V01 ~ ., reg, epochs = 1), "[Oo]utcome .*V01.*float32", class = "tabnetrs_error_input")
  w <- rep(1, nrow(d))
  w[2] <- 1e39
  expect_error(tabnet_fit(y ~ ., d, epochs = 1, weights = w), "weights.*float32", class = "tabnetrs_error_input")
  # the largest float32 values pass the range check; their squares overflow in
  # batch norm, which the non-finite check then reports (never a NaN model)
  edge <- d
  edge$V04[7] <- 3.4e38
  expect_error(tabnet_fit(y ~ ., edge, epochs = 1, skip_importance = TRUE), class = "tabnetrs_error_nonfinite")
  edge$V04[7] <- 1e15
  expect_no_error(tabnet_fit(y ~ ., edge, epochs = 1, skip_importance = TRUE))
})

test_that("a non-finite loss stops training with an error that keeps the last finite model", {
  d <- syn2_data(300)
  reg <- d[c("V01", "V02", "V03")]
  reg$V01 <- reg$V01 * 1e30 # finite in float32, its square is not: the loss is Inf
  err <- expect_error(withr::with_seed(1, tabnet_fit(V01 ~ ., reg, epochs = 3)),
                      "epoch 1", class = "tabnetrs_error_nonfinite")
  expect_s3_class(err, "tabnetrs_error_input")
  expect_s3_class(err$fit, "tabnet_fit")
  expect_length(err$fit$fit$metrics, 0)
  expect_false(anyNA(predict(err$fit, reg)$.pred))
  # a learning rate that blows the weights up after the first epoch
  err <- tryCatch(withr::with_seed(1, tabnet_fit(y ~ ., d, epochs = 5, learn_rate = 1e30)),
                  tabnetrs_error_nonfinite = function(e) e)
  expect_s3_class(err, "tabnetrs_error_nonfinite")
  kept <- length(err$fit$fit$metrics)
  expect_lt(kept, 5)
  expect_match(conditionMessage(err), sprintf("epoch %d", kept + 1L))
  expect_true(all(is.finite(vapply(err$fit$fit$metrics, function(m) m$train, numeric(1)))))
  expect_true(tabnetrs:::rs_model_is_finite(tabnetrs:::live_network(err$fit)))
})

test_that("mini-batches whose case weights are all zero leave the model finite", {
  d <- syn2_data(400)
  w <- c(1, 1, rep(0, nrow(d) - 2)) # nearly every batch of 4 has zero total weight
  fit <- withr::with_seed(1, tabnet_fit(y ~ ., d, epochs = 2, batch_size = 4, virtual_batch_size = 2,
                                        weights = w, skip_importance = TRUE))
  p <- predict(fit, d, type = "prob")
  expect_true(all(is.finite(p$.pred_yes)))
  expect_error(tabnet_fit(y ~ ., d, epochs = 1, weights = rep(0, nrow(d))), "zero")
})

test_that("errors from Rust are R conditions; the console shows no panic, C++ frames or internal names", {
  skip_on_cran()
  skip_if_not_installed("callr")
  out <- withr::local_tempfile(fileext = ".txt")
  classes <- callr::r(function() {
    library(tabnetrs)
    d <- data.frame(a = rnorm(50), b = rnorm(50), y = factor(rep(c("u", "v"), 25)))
    fit <- tabnet_fit(y ~ ., d, epochs = 1)
    broken <- fit
    broken$serialized_net <- as.raw(1:10)
    broken$fit$digest <- NULL
    broken$fit$network <- tabnetrs:::network_cache()
    try(predict(broken, d))
    # the R layer calling Rust wrongly: an internal error, not a crash
    try(tabnetrs:::rs_model_weights(NULL))
    list(model = class(tryCatch(predict(broken, d), error = identity)),
         internal = class(tryCatch(tabnetrs:::rs_model_weights(NULL), error = identity)))
  }, stdout = out, stderr = out, libpath = .libPaths(), env = c(callr::rcmd_safe_env(), RUST_BACKTRACE = "1"))
  expect_true("tabnetrs_error_model" %in% classes$model)
  expect_true("tabnetrs_error_internal" %in% classes$internal)
  console <- paste(readLines(out), collapse = "\n")
  expect_match(console, "cannot be read")
  expect_match(console, "Internal error in tabnetrs")
  expect_no_match(console, "panicked|RUST_BACKTRACE|frame #|Exception raised|extendr|\\.rs:[0-9]")
})

test_that("forked children run tabnetrs after the parent used it (mclapply, future multicore)", {
  skip_on_cran()
  skip_on_os("windows")
  skip_if_not_installed("callr")
  # in a child R process with a time limit: a hang fails the test instead of the run
  res <- callr::r(function() {
    library(tabnetrs)
    set.seed(1)
    d <- data.frame(a = rnorm(3000), b = rnorm(3000))
    d$y <- factor(ifelse(d$a + d$b > 0, "p", "n"))
    fit <- tabnet_fit(y ~ ., d, epochs = 1, num_threads = 2)
    parent <- predict(fit, d, type = "prob")
    kids <- parallel::mclapply(1:2, function(i) {
      list(pred = predict(fit, d, type = "prob"),
           refit = nrow(predict(tabnet_fit(y ~ ., d[1:500, ], epochs = 1, num_threads = 2), d)))
    }, mc.cores = 2)
    fut <- NULL
    if (requireNamespace("future", quietly = TRUE) && future::supportsMulticore()) {
      future::plan(future::multicore, workers = 2)
      f <- future::future(predict(fit, d, type = "prob"))
      fut <- future::value(f)
      future::plan(future::sequential)
    }
    list(parent = parent, kids = kids, fut = fut)
  }, timeout = 120, libpath = .libPaths())
  for (k in res$kids) {
    expect_false(inherits(k, "try-error"))
    expect_identical(k$pred, res$parent)
    expect_identical(k$refit, 3000L)
  }
  if (!is.null(res$fut)) expect_identical(res$fut, res$parent)
})

test_that("a BLAS running fallback kernels is pointed out once per session", {
  withr::local_options(tabnetrs.blas_advice = TRUE)
  withr::local_envvar(OPENBLAS_CORETYPE = "")
  state <- tabnetrs:::runtime_state
  old <- state$told
  on.exit(state$told <- old, add = TRUE)
  state$told <- NULL
  slow <- list(core = "Prescott", best = "SkylakeX", fallback = TRUE)
  expect_message(tabnetrs:::blas_advice(slow), "OPENBLAS_CORETYPE=SkylakeX", class = "tabnetrs_message")
  expect_silent(tabnetrs:::blas_advice(slow))
  state$told <- NULL
  expect_silent(tabnetrs:::blas_advice(list(core = "Haswell", best = "Haswell", fallback = FALSE)))
  state$told <- NULL
  withr::local_envvar(OPENBLAS_CORETYPE = "Prescott")
  expect_silent(tabnetrs:::blas_advice(slow))
  # what this machine reports
  info <- tabnetrs:::rs_blas_info()
  expect_named(info, c("core", "best", "fallback", "kernels"))
  expect_type(info$fallback, "logical")
  expect_true(info$kernels %in% c("avx512", "avx2", "blas"))
})
