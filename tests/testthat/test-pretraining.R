# Self-supervised pretraining and fine-tuning.

pre_losses <- function(pre, what = "train") {
  vapply(pre$fit$metrics, function(m) m[[what]], numeric(1))
}

test_that("pretraining needs no outcome: data frame, matrix, formula and recipe", {
  d <- mixed_data(400)
  x <- d[, c("num1", "grp", "num2", "flag")]
  pre <- tabnet_pretrain(x, epochs = 6, batch_size = 128, valid_split = 0.2, num_threads = 1, seed = 1)
  expect_s3_class(pre, "tabnet_pretrain")
  expect_named(pre, c("fit", "serialized_net", "blueprint"))
  loss <- pre_losses(pre)
  expect_length(loss, 6)
  expect_true(all(is.finite(loss) & loss > 0))
  expect_lt(loss[6], loss[1])
  valid <- pre_losses(pre, "valid")
  expect_true(all(is.finite(valid) & valid > 0))
  # the predictors are the data frame's columns; y is ignored
  expect_setequal(pre$fit$layout$names, names(x))
  pre_y <- tabnet_pretrain(x, y = d$target, epochs = 1, num_threads = 1)
  expect_identical(pre_y$fit$layout$names, pre$fit$layout$names)

  # formula: the left-hand side is not a predictor; `~ .` works as well
  pre_f <- tabnet_pretrain(target ~ num1 + grp + num2 + flag, d, epochs = 2, num_threads = 1)
  expect_identical(pre_f$fit$layout$names, pre$fit$layout$names)
  pre_f1 <- tabnet_pretrain(~ ., x, epochs = 2, num_threads = 1)
  expect_identical(pre_f1$fit$layout$names, pre$fit$layout$names)
  expect_true(all(pre_losses(pre_f1) > 0))

  # recipe without an outcome
  skip_if_not_installed("recipes")
  rec <- recipes::recipe(~ ., data = x) |> recipes::step_normalize(recipes::all_numeric_predictors())
  pre_r <- tabnet_pretrain(rec, x, epochs = 2, num_threads = 1)
  expect_s3_class(pre_r, "tabnet_pretrain")
  expect_true(all(is.finite(pre_losses(pre_r)) & pre_losses(pre_r) > 0))

  # matrix
  m <- as.matrix(d[, c("num1", "num2")])
  pre_m <- tabnet_pretrain(m, epochs = 1, num_threads = 1)
  expect_identical(pre_m$fit$layout$names, c("num1", "num2"))
})

test_that("the pretraining loss is scaled by feature variance and stays finite with constant columns", {
  d <- data.frame(a = rnorm(300, sd = 1000), b = rnorm(300, sd = 0.001), k = 5)
  pre <- tabnet_pretrain(d, epochs = 3, batch_size = 64, num_threads = 1, seed = 2)
  loss <- pre_losses(pre)
  expect_true(all(is.finite(loss) & loss > 0))
  # scale-free: a few units, not millions
  expect_lt(loss[1], 100)
})

test_that("autoplot works for a pretrained model", {
  skip_if_not_installed("ggplot2")
  d <- syn2_data(200)
  pre <- tabnet_pretrain(d[, 1:10], epochs = 3, valid_split = 0.2, checkpoint_epochs = 1, num_threads = 1)
  p <- ggplot2::autoplot(pre)
  expect_s3_class(p, "ggplot")
  expect_no_error(ggplot2::ggplot_build(p))
})

test_that("predict() on a pretrained model errors clearly", {
  d <- syn2_data(200)
  pre <- tabnet_pretrain(d[, 1:10], epochs = 1, num_threads = 1)
  expect_error(predict(pre, d), "no prediction head")
  expect_error(predict(pre, d), "tabnet_model = <pretrained>", fixed = TRUE)
})

test_that("fine-tuning starts from the pretrained encoder", {
  d <- syn2_data(400)
  x <- d[, 1:10]
  pre <- tabnet_pretrain(x, epochs = 3, batch_size = 128, num_steps = 2, decision_width = 6,
                         num_threads = 1, seed = 3)
  # epochs = 0: the fine-tuned network's encoder is the pretrained one, so its
  # attention masks and explanation are the pretrained ones
  ft0 <- tabnet_fit(y ~ ., d, tabnet_model = pre, epochs = 0, num_threads = 1)
  expect_length(ft0$fit$metrics, 0)
  # the architecture comes from the pretrained model
  expect_equal(ft0$fit$config$n_steps, 2L)
  expect_equal(ft0$fit$config$n_d, 6L)
  ex_pre <- tabnet_explain(pre, x[1:50, ])
  ex_ft <- tabnet_explain(ft0, x[1:50, ])
  expect_equal(ex_ft$masks, ex_pre$masks, tolerance = 1e-6)
  expect_equal(ex_ft$M_explain, ex_pre$M_explain, tolerance = 1e-6)
  # a fresh network's masks differ
  fresh <- tabnet_fit(y ~ ., d, epochs = 0, num_steps = 2, decision_width = 6, num_threads = 1, seed = 4)
  expect_false(isTRUE(all.equal(tabnet_explain(fresh, x[1:50, ])$masks, ex_pre$masks)))

  # fine-tuning trains and predicts; the epoch count starts again at 1
  ft <- tabnet_fit(y ~ ., d, tabnet_model = pre, epochs = 3, batch_size = 128, num_threads = 1)
  expect_length(ft$fit$metrics, 3)
  p <- predict(ft, d, type = "prob")
  expect_equal(nrow(p), 400)
  expect_equal(p$.pred_yes + p$.pred_no, rep(1, 400), tolerance = 1e-6)
  expect_false(isTRUE(all.equal(tabnet_explain(ft, x[1:50, ])$masks, ex_pre$masks)))

  # fine-tuning from a checkpoint of the pretraining
  pre_cp <- tabnet_pretrain(x, epochs = 2, checkpoint_epochs = 1, num_threads = 1, seed = 3)
  ft_cp <- tabnet_fit(y ~ ., d, tabnet_model = pre_cp, from_epoch = 1, epochs = 0)
  pre_1 <- tabnet_pretrain(x, tabnet_model = pre_cp, from_epoch = 1, epochs = 0)
  expect_equal(tabnet_explain(ft_cp, x[1:20, ])$masks, tabnet_explain(pre_1, x[1:20, ])$masks,
               tolerance = 1e-6)
})

test_that("fine-tuning checks that the predictors match and refuses the reverse direction", {
  d <- syn2_data(200)
  pre <- tabnet_pretrain(d[, 1:10], epochs = 1, num_threads = 1)
  expect_error(tabnet_fit(y ~ V01 + V02, d, tabnet_model = pre, epochs = 1), "Model dimensions don't match")
  fit <- tabnet_fit(y ~ ., d, epochs = 1, num_threads = 1)
  expect_error(tabnet_pretrain(d[, 1:10], tabnet_model = fit, epochs = 1), "cannot be used to start")
})

test_that("pretraining continues and keeps checkpoints", {
  d <- syn2_data(200)
  pre <- tabnet_pretrain(d[, 1:10], epochs = 2, checkpoint_epochs = 1, num_threads = 1, seed = 5)
  expect_named(pre$fit$checkpoints, c("epoch_1", "epoch_2"))
  more <- tabnet_pretrain(d[, 1:10], tabnet_model = pre, epochs = 2)
  expect_length(more$fit$metrics, 4)
  expect_identical(more$fit$metrics[1:2], pre$fit$metrics)
  expect_named(more$fit$checkpoints, paste0("epoch_", 1:4))
})

test_that("a pretrained model survives saveRDS/readRDS and fine-tunes the same", {
  d <- syn2_data(300)
  pre <- tabnet_pretrain(d[, 1:10], epochs = 2, num_threads = 1, seed = 6)
  path <- withr::local_tempfile(fileext = ".rds")
  saveRDS(pre, path)
  back <- readRDS(path)
  expect_s3_class(back, "tabnet_pretrain")
  expect_identical(back$serialized_net, pre$serialized_net)
  expect_identical(tabnet_explain(back, d[1:30, 1:10]), tabnet_explain(pre, d[1:30, 1:10]))
  set.seed(1)
  a <- tabnet_fit(y ~ ., d, tabnet_model = pre, epochs = 1, num_threads = 1)
  set.seed(1)
  b <- tabnet_fit(y ~ ., d, tabnet_model = back, epochs = 1, num_threads = 1)
  expect_identical(a$serialized_net, b$serialized_net)
  expect_identical(predict(a, d, type = "prob"), predict(b, d, type = "prob"))
})
