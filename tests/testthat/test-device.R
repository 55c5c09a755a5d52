# Devices: CPU always, CUDA only when libtorch has it; fitted objects hold no
# live device state.

test_that('device = "cpu" trains and predicts', {
  d <- syn2_data(200)
  fit <- tabnet_fit(y ~ ., d, epochs = 1, device = "cpu", num_threads = 1)
  expect_equal(fit$fit$config$device, "cpu")
  expect_equal(nrow(predict(fit, d)), 200)
  pre <- tabnet_pretrain(d[, 1:10], epochs = 1, device = "cpu", num_threads = 1)
  expect_s3_class(pre, "tabnet_pretrain")
  expect_error(tabnet_fit(y ~ ., d, epochs = 1, device = "tpu"), "device")
})

test_that('device = "cuda" errors clearly without CUDA', {
  skip_if(tabnet_cuda_is_available(), "CUDA is available")
  d <- syn2_data(100)
  expect_false(tabnet_cuda_is_available())
  expect_error(tabnet_fit(y ~ ., d, epochs = 1, device = "cuda"), "CUDA is not available")
  expect_error(tabnet_pretrain(d[, 1:10], epochs = 1, device = "cuda"), "CUDA is not available")
  # "auto" falls back to the CPU
  expect_no_error(tabnet_fit(y ~ ., d, epochs = 1, device = "auto", num_threads = 1))
})

test_that('device = "cuda" trains when CUDA is available', {
  skip_if_not(tabnet_cuda_is_available(), "CUDA is not available")
  d <- syn2_data(300)
  fit <- tabnet_fit(y ~ ., d, epochs = 2, device = "cuda", checkpoint_epochs = 1)
  p <- predict(fit, d, type = "prob")
  expect_equal(nrow(p), 300)
  expect_equal(p$.pred_yes + p$.pred_no, rep(1, 300), tolerance = 1e-5)
  expect_equal(nrow(predict(fit, d, epoch = 1)), 300)
})

test_that("fitted objects have no live device state: a fresh R process predicts the same", {
  d <- syn2_data(300)
  fit <- tabnet_fit(y ~ ., d, epochs = 2, checkpoint_epochs = 1, num_threads = 1)
  pre <- tabnet_pretrain(d[, 1:10], epochs = 1, num_threads = 1)
  # no external pointer is needed to rebuild the network
  expect_type(fit$serialized_net, "raw")
  expect_true(all(vapply(fit$fit$checkpoints, is.raw, logical(1))))
  p <- predict(fit, d, type = "prob")
  p1 <- predict(fit, d, type = "prob", epoch = 1)
  expl <- tabnet_explain(pre, d[1:20, 1:10])
  paths <- vapply(c("fit", "pre", "data", "out"), function(x) withr::local_tempfile(fileext = ".rds"),
                  character(1))
  saveRDS(fit, paths[["fit"]])
  saveRDS(pre, paths[["pre"]])
  saveRDS(d, paths[["data"]])
  code <- sprintf(paste(
    "library(tabnetrs)",
    "fit <- readRDS('%s'); pre <- readRDS('%s'); d <- readRDS('%s')",
    "out <- list(p = predict(fit, d, type = 'prob'), p1 = predict(fit, d, type = 'prob', epoch = 1),",
    "            expl = tabnet_explain(pre, d[1:20, 1:10]),",
    "            more = length(tabnet_fit(y ~ ., d, tabnet_model = fit, epochs = 1)$fit$metrics))",
    "saveRDS(out, '%s')", sep = "\n"), paths[["fit"]], paths[["pre"]], paths[["data"]], paths[["out"]])
  status <- system2(file.path(R.home("bin"), "Rscript"), c("-e", shQuote(code)), stdout = FALSE, stderr = FALSE)
  expect_equal(status, 0)
  out <- readRDS(paths[["out"]])
  expect_identical(out$p, p)
  expect_identical(out$p1, p1)
  expect_identical(out$expl, expl)
  expect_equal(out$more, 3)
  # and in this process after a round trip
  again <- readRDS(paths[["fit"]])
  expect_identical(predict(again, d, type = "prob"), p)
})
