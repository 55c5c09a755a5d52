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

# Factors first, in the middle and last: the formula blueprint puts them last,
# the data frame and recipe interfaces keep the frame's order.
ft_data <- function(n = 240, seed = 11) {
  withr::with_seed(seed, {
    d <- data.frame(
      g1 = factor(sample(c("a", "b", "c"), n, replace = TRUE)),
      n1 = rnorm(n),
      g2 = factor(sample(c("u", "v"), n, replace = TRUE)),
      n2 = rnorm(n),
      g3 = factor(sample(c("p", "q", "r", "s"), n, replace = TRUE))
    )
    d$y <- factor(ifelse(d$n1 + (d$g1 == "b") - d$n2 > 0, "yes", "no"))
    d
  })
}

pretrain_via <- function(interface, d, ...) {
  x <- d[setdiff(names(d), "y")]
  switch(interface,
    data.frame = tabnet_pretrain(x, d$y, ...),
    formula = tabnet_pretrain(y ~ ., d, ...),
    recipe = tabnet_pretrain(recipes::recipe(y ~ ., data = d), d, ...),
    matrix = tabnet_pretrain(as.matrix(x), ...)
  )
}

fit_via <- function(interface, d, ...) {
  x <- d[setdiff(names(d), "y")]
  switch(interface,
    data.frame = tabnet_fit(x, d$y, ...),
    formula = tabnet_fit(y ~ ., d, ...),
    recipe = tabnet_fit(recipes::recipe(y ~ ., data = d), d, ...),
    matrix = tabnet_fit(as.matrix(x), d$y, ...)
  )
}

# masks of an explanation, columns by predictor name
masks_by_name <- function(ex, vars) {
  lapply(ex$masks, function(m) as.data.frame(m)[vars])
}

test_that("fine-tuning works across interfaces whatever the factor columns' positions", {
  skip_if_not_installed("recipes")
  d <- ft_data()
  x <- d[setdiff(names(d), "y")]
  vars <- names(x)
  interfaces <- c("data.frame", "formula", "recipe")
  for (pre_if in interfaces) {
    pre <- pretrain_via(pre_if, d, epochs = 1, batch_size = 64, num_steps = 2, num_threads = 1, seed = 21)
    ex_pre <- masks_by_name(tabnet_explain(pre, x[1:40, ]), vars)
    for (fit_if in interfaces) {
      label <- paste(pre_if, "->", fit_if)
      # epochs = 0: the network is the pretrained encoder with a new head
      ft0 <- fit_via(fit_if, d, tabnet_model = pre, epochs = 0, num_threads = 1, seed = 22)
      expect_identical(ft0$fit$layout$names, pre$fit$layout$names, label = label)
      expect_equal(masks_by_name(tabnet_explain(ft0, x[1:40, ]), vars), ex_pre, tolerance = 1e-6,
                   label = label)
      ft <- fit_via(fit_if, d, tabnet_model = pre, epochs = 2, batch_size = 64, num_threads = 1, seed = 23)
      p <- predict(ft, x, type = "prob")
      expect_identical(names(p), c(".pred_no", ".pred_yes"), label = label)
      expect_equal(p$.pred_no + p$.pred_yes, rep(1, nrow(d)), tolerance = 1e-6, label = label)
      # columns in another order in new_data are found by name
      expect_equal(predict(ft, rev(x), type = "prob"), p, label = label)
      # continuing the fine-tuned model through yet another interface
      more <- fit_via(setdiff(interfaces, fit_if)[[1]], d, tabnet_model = ft, epochs = 1, num_threads = 1)
      expect_length(more$fit$metrics, 3)
      expect_identical(more$fit$metrics[1:2], ft$fit$metrics, label = label)
    }
  }
  # a fresh network's masks are not the pretrained ones
  fresh <- tabnet_fit(y ~ ., d, epochs = 0, num_steps = 2, num_threads = 1, seed = 24)
  expect_false(isTRUE(all.equal(masks_by_name(tabnet_explain(fresh, x[1:40, ]), vars), ex_pre)))
})

test_that("fine-tuning a matrix pretraining and the reverse match columns by name", {
  d <- syn2_data(200)
  x <- d[, 1:10]
  vars <- names(x)
  shuffled <- d[c("y", rev(vars))]
  pre_m <- pretrain_via("matrix", d, epochs = 1, num_steps = 2, num_threads = 1, seed = 31)
  pre_f <- pretrain_via("formula", shuffled, epochs = 1, num_steps = 2, num_threads = 1, seed = 31)
  for (pre in list(pre_m, pre_f)) {
    ex_pre <- masks_by_name(tabnet_explain(pre, x[1:30, ]), vars)
    for (fit_if in c("matrix", "formula", "data.frame")) {
      ft0 <- fit_via(fit_if, if (fit_if == "matrix") d else shuffled, tabnet_model = pre, epochs = 0,
                     num_threads = 1)
      expect_equal(masks_by_name(tabnet_explain(ft0, x[1:30, ]), vars), ex_pre, tolerance = 1e-6)
      expect_equal(nrow(predict(ft0, as.matrix(x))), 200)
    }
  }
})

test_that("fine-tuning matches factor levels by name", {
  d <- ft_data()
  x <- d[setdiff(names(d), "y")]
  vars <- names(x)
  pre <- tabnet_pretrain(x, epochs = 1, num_steps = 2, num_threads = 1, seed = 41)
  # the same levels in another order: codes follow the level names
  r <- d
  r$g3 <- factor(as.character(r$g3), levels = rev(levels(r$g3)))
  ft0 <- tabnet_fit(y ~ ., r, tabnet_model = pre, epochs = 0, num_threads = 1)
  expect_identical(ft0$fit$layout$levels$g3, levels(d$g3))
  expect_equal(masks_by_name(tabnet_explain(ft0, r[1:40, vars]), vars),
               masks_by_name(tabnet_explain(pre, x[1:40, ]), vars), tolerance = 1e-6)
})

test_that("fine-tuning on different predictors names what differs", {
  d <- ft_data()
  x <- d[setdiff(names(d), "y")]
  pre <- tabnet_pretrain(x, epochs = 1, num_threads = 1, seed = 51)
  err <- expect_error(tabnet_fit(y ~ n1 + g2 + n2 + g3, d, tabnet_model = pre, epochs = 1),
                      class = "tabnetrs_error_input")
  expect_match(conditionMessage(err), "Model dimensions don't match")
  expect_match(conditionMessage(err), "Missing predictor: g1", fixed = TRUE)
  d$extra <- rnorm(nrow(d))
  err <- expect_error(tabnet_fit(y ~ ., d, tabnet_model = pre, epochs = 1), class = "tabnetrs_error_input")
  expect_match(conditionMessage(err), "Predictor extra was not in `tabnet_model`", fixed = TRUE)
  d$extra <- NULL
  lv <- d
  lv$g2 <- factor(as.character(lv$g2), levels = c("u", "v", "w"))
  err <- expect_error(tabnet_fit(y ~ ., lv, tabnet_model = pre, epochs = 1), class = "tabnetrs_error_input")
  expect_match(conditionMessage(err), "levels of factor g2 differ", fixed = TRUE)
  expect_match(conditionMessage(err), "Level \"w\" is new", fixed = TRUE)
  ty <- d
  ty$g2 <- as.numeric(ty$g2)
  err <- expect_error(tabnet_fit(y ~ ., ty, tabnet_model = pre, epochs = 1), class = "tabnetrs_error_input")
  expect_match(conditionMessage(err), "Column g2 changed between factor and numeric", fixed = TRUE)
})
