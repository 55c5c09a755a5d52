# Training capabilities: validation split and metrics, early stopping,
# learning-rate schedules, checkpoints, resuming, interrupts.

lr_of <- function(fit) vapply(fit$fit$metrics, function(m) m$learn_rate, numeric(1))
valid_of <- function(fit) vapply(fit$fit$metrics, function(m) m$valid, numeric(1))
train_of <- function(fit) vapply(fit$fit$metrics, function(m) m$train, numeric(1))

test_that("valid_split gives per-epoch train and validation losses in fit$fit$metrics", {
  d <- syn2_data(400)
  fit <- tabnet_fit(y ~ ., d, epochs = 3, valid_split = 0.25, batch_size = 128,
                    checkpoint_epochs = 0, num_threads = 1, seed = 1)
  m <- fit$fit$metrics
  expect_length(m, 3)
  for (e in m) {
    expect_named(e, c("train", "valid", "checkpoint", "learn_rate", "seconds"))
    expect_true(is.finite(e$seconds) && e$seconds >= 0)
    expect_true(is.finite(e$train) && e$train > 0)
    expect_true(is.finite(e$valid) && e$valid > 0)
    expect_false(e$checkpoint)
    expect_equal(e$learn_rate, 0.02)
  }
  expect_lt(m[[3]]$train, m[[1]]$train)
  # without valid_split there is no validation loss
  plain <- tabnet_fit(y ~ ., d, epochs = 2, batch_size = 128, num_threads = 1, seed = 1)
  expect_null(plain$fit$metrics[[1]]$valid)
  # the monitor follows valid_split given through `...` (it was resolved to
  # "train_loss" in the default config before)
  expect_equal(fit$fit$config$early_stopping_monitor, "valid_loss")
  expect_equal(plain$fit$config$early_stopping_monitor, "train_loss")
})

test_that("early stopping stops before `epochs` and keeps the best epoch's weights", {
  d <- syn2_data(400)
  n_valid <- floor(400 * 0.3)
  set.seed(11)
  # a large learning rate: the validation loss soon stops improving
  fit <- tabnet_fit(y ~ ., d, epochs = 40, valid_split = 0.3, early_stopping_patience = 2,
                    batch_size = 64, learn_rate = 0.05, checkpoint_epochs = 1,
                    num_threads = 1, seed = 3)
  v <- valid_of(fit)
  best <- fit$fit$best_epoch
  expect_true(fit$fit$stopped_early)
  expect_lt(length(v), 40)
  expect_equal(best, which.min(v))
  # it stopped after exactly `patience` epochs without improvement
  expect_equal(length(v), best + 2L)
  # the final weights are the best epoch's, byte for byte
  expect_identical(fit$serialized_net, fit$fit$checkpoints[[paste0("epoch_", best)]])
  expect_identical(predict(fit, d, type = "prob"), predict(fit, d, type = "prob", epoch = best))
  # ... and recomputing the validation loss from the predictions gives the
  # best epoch's value (with `seed` set, the split is R's first random draw)
  set.seed(11)
  valid_idx <- sort(sample.int(400, n_valid))
  p <- predict(fit, d[valid_idx, ], type = "prob")
  truth <- d$y[valid_idx]
  ce <- -mean(log(ifelse(truth == "yes", p$.pred_yes, p$.pred_no)))
  expect_equal(ce, v[[best]], tolerance = 1e-5)
  expect_gt(v[[length(v)]], v[[best]])
})

test_that("early stopping can monitor the training loss and honours the tolerance", {
  d <- syn2_data(300)
  fit <- tabnet_fit(y ~ ., d, epochs = 6, early_stopping_patience = 1,
                    early_stopping_tolerance = 10, batch_size = 128, num_threads = 1, seed = 2)
  # a 1000 % improvement is never reached: stop after the second epoch
  expect_length(fit$fit$metrics, 2)
  expect_equal(fit$fit$best_epoch, 1L)
  expect_equal(fit$fit$config$early_stopping_monitor, "train_loss")
  expect_error(tabnet_fit(y ~ ., d, epochs = 1, early_stopping_monitor = "valid_loss"),
               "without a validation set")
  expect_error(tabnet_fit(y ~ ., d, epochs = 1, early_stopping_monitor = "auc"),
               "not a valid early-stopping metric")
})

test_that("the step scheduler multiplies the rate by lr_decay every step_size epochs", {
  d <- syn2_data(300)
  fit <- tabnet_fit(y ~ ., d, epochs = 6, lr_scheduler = "step", step_size = 2, lr_decay = 0.5,
                    batch_size = 128, num_threads = 1, seed = 1)
  expect_equal(lr_of(fit), 0.02 * 0.5^c(0, 0, 1, 1, 2, 2))
})

# The rates reduce_on_plateau should give for the monitored losses (step_size = 1).
plateau_rates <- function(losses, rate, decay) {
  out <- numeric(length(losses))
  best <- Inf
  for (e in seq_along(losses)) {
    out[e] <- rate
    if (losses[e] < best) best <- losses[e] else rate <- rate * decay
  }
  out
}

test_that("reduce_on_plateau lowers the rate after step_size epochs without improvement", {
  d <- syn2_data(300)
  fit <- tabnet_fit(y ~ ., d, epochs = 10, lr_scheduler = "reduce_on_plateau", step_size = 1,
                    lr_decay = 0.5, valid_split = 0.3, learn_rate = 0.1, batch_size = 64,
                    num_threads = 1, seed = 4)
  # the validation loss is monitored
  expect_equal(lr_of(fit), plateau_rates(valid_of(fit), 0.1, 0.5))
  expect_lt(min(lr_of(fit)), 0.1)
  # the training loss is monitored without a validation set
  tr <- tabnet_fit(y ~ ., d, epochs = 6, lr_scheduler = "reduce_on_plateau", step_size = 1,
                   lr_decay = 0.5, learn_rate = 0.1, batch_size = 64, num_threads = 1, seed = 4)
  expect_equal(lr_of(tr), plateau_rates(train_of(tr), 0.1, 0.5))
  # step_size = 2 waits for two epochs without improvement
  two <- tabnet_fit(y ~ ., d, epochs = 8, lr_scheduler = "reduce_on_plateau", step_size = 2,
                    lr_decay = 0.5, valid_split = 0.3, learn_rate = 0.1, batch_size = 64,
                    num_threads = 1, seed = 4)
  v <- valid_of(two)
  expected <- numeric(length(v))
  rate <- 0.1
  best <- Inf
  wait <- 0
  for (e in seq_along(v)) {
    expected[e] <- rate
    if (v[e] < best) {
      best <- v[e]
      wait <- 0
    } else {
      wait <- wait + 1
      if (wait >= 2) {
        rate <- rate * 0.5
        wait <- 0
      }
    }
  }
  expect_equal(lr_of(two), expected)
})

test_that("the exponential scheduler decays the rate every step_size optimizer steps", {
  d <- syn2_data(300)
  # 300 rows in batches of 128: 3 optimizer steps per epoch
  fit <- tabnet_fit(y ~ ., d, epochs = 5, lr_scheduler = "exponential", step_size = 2, lr_decay = 0.5,
                    batch_size = 128, num_threads = 1, seed = 1)
  steps_before <- 3 * (0:4)
  expect_equal(lr_of(fit), 0.02 * 0.5^(steps_before %/% 2))
})

test_that("bad optimizers and schedulers give clear errors", {
  d <- syn2_data(100)
  expect_error(tabnet_fit(y ~ ., d, epochs = 1, optimizer = "sgd"), 'only "adam" is supported')
  expect_error(tabnet_fit(y ~ ., d, epochs = 1, lr_scheduler = "cosine"), "lr_scheduler")
  expect_error(tabnet_fit(y ~ ., d, epochs = 1, lr_scheduler = function(opt) opt), "lr_scheduler")
  expect_error(tabnet_fit(y ~ ., d, epochs = 1, lr_scheduler = "step", lr_decay = 2), "lr_decay")
  expect_error(tabnet_fit(y ~ ., d, epochs = 1, lr_scheduler = "step", step_size = 0), "step_size")
  # the error names the call the user wrote, not a deparsed function body
  err <- tryCatch(tabnet_fit(y ~ ., d, epochs = 1, optimizer = "sgd"), error = identity)
  expect_identical(conditionCall(err), quote(tabnet_fit(y ~ ., d, epochs = 1, optimizer = "sgd")))
})

test_that("checkpoints are kept every checkpoint_epochs and predict(epoch = ) uses them", {
  d <- syn2_data(300)
  fit <- tabnet_fit(y ~ ., d, epochs = 5, checkpoint_epochs = 2, batch_size = 64,
                    num_threads = 1, seed = 5)
  expect_named(fit$fit$checkpoints, c("epoch_2", "epoch_4"))
  expect_equal(vapply(fit$fit$metrics, function(m) m$checkpoint, logical(1)),
               c(FALSE, TRUE, FALSE, TRUE, FALSE))
  final <- predict(fit, d, type = "prob")
  at2 <- predict(fit, d, type = "prob", epoch = 2)
  at4 <- predict(fit, d, type = "prob", epoch = 4)
  expect_false(isTRUE(all.equal(at2, final)))
  expect_false(isTRUE(all.equal(at2, at4)))
  expect_error(predict(fit, d, epoch = 3), "no checkpoint for epoch 3")
  expect_error(predict(fit, d, epoch = 3), "Checkpoints exist for epochs 2 and 4")
  none <- tabnet_fit(y ~ ., d, epochs = 2, checkpoint_epochs = 0, batch_size = 128, num_threads = 1)
  expect_length(none$fit$checkpoints, 0)
  expect_error(predict(none, d, epoch = 1), "no checkpoints")
  # the default keeps one every 10 epochs
  expect_equal(tabnet_config()$checkpoint_epochs, 10L)
})

test_that("resuming continues epochs, metrics and checkpoints", {
  d <- syn2_data(300)
  x <- d[, 1:10]
  y <- d$y
  fit <- tabnet_fit(x, y, epochs = 3, checkpoint_epochs = 1, batch_size = 128, num_threads = 1, seed = 6)
  more <- tabnet_fit(x, y, tabnet_model = fit, epochs = 2)
  expect_length(more$fit$metrics, 5)
  expect_identical(more$fit$metrics[1:3], fit$fit$metrics)
  expect_named(more$fit$checkpoints, paste0("epoch_", 1:5))
  expect_identical(more$fit$checkpoints[1:3], fit$fit$checkpoints)
  expect_false(identical(more$serialized_net, fit$serialized_net))
  # positional tabnet_model, as in the tabnet package's tests
  again <- tabnet_fit(x, y, fit, epochs = 1)
  expect_length(again$fit$metrics, 4)
  # different predictors or outcome: a clear error
  expect_error(tabnet_fit(x[, 1:9], y, tabnet_model = fit, epochs = 1), "Model dimensions don't match")
  expect_error(tabnet_fit(x, as.numeric(y), tabnet_model = fit, epochs = 1), "Model dimensions don't match")
  expect_error(tabnet_fit(x, y, tabnet_model = list(), epochs = 1), "must be a")
  expect_error(tabnet_fit(x, y, epochs = 1, from_epoch = 1), "needs `tabnet_model`")
})

test_that("from_epoch restarts from that checkpoint's weights", {
  d <- syn2_data(300)
  fit <- tabnet_fit(y ~ ., d, epochs = 4, checkpoint_epochs = 1, batch_size = 128, num_threads = 1, seed = 7)
  # epochs = 0: the result is exactly the checkpoint of epoch 2
  back <- tabnet_fit(y ~ ., d, tabnet_model = fit, from_epoch = 2, epochs = 0)
  expect_identical(back$serialized_net, fit$fit$checkpoints$epoch_2)
  expect_identical(predict(back, d, type = "prob"), predict(fit, d, type = "prob", epoch = 2))
  expect_false(identical(predict(back, d, type = "prob"), predict(fit, d, type = "prob")))
  expect_length(back$fit$metrics, 2)
  expect_identical(back$fit$metrics, fit$fit$metrics[1:2])
  expect_named(back$fit$checkpoints, c("epoch_1", "epoch_2"))
  # training on from there numbers epochs 3, 4, 5
  on <- tabnet_fit(y ~ ., d, tabnet_model = fit, from_epoch = 2, epochs = 3)
  expect_length(on$fit$metrics, 5)
  expect_named(on$fit$checkpoints, paste0("epoch_", 1:5))
  expect_error(tabnet_fit(y ~ ., d, tabnet_model = fit, from_epoch = 9, epochs = 1),
               "no checkpoint for epoch 9")
})

test_that("resuming continues the learning-rate schedule", {
  d <- syn2_data(300)
  args <- list(batch_size = 128, num_threads = 1, lr_decay = 0.5, step_size = 2, checkpoint_epochs = 1)
  # step: 3 + 2 epochs follow the rates of a 5-epoch fit
  fit <- do.call(tabnet_fit, c(list(y ~ ., d, epochs = 3, lr_scheduler = "step", seed = 1), args))
  more <- tabnet_fit(y ~ ., d, tabnet_model = fit, epochs = 2)
  expect_equal(lr_of(more), 0.02 * 0.5^c(0, 0, 1, 1, 2))
  # from_epoch = 2 continues from that epoch's schedule state
  back <- tabnet_fit(y ~ ., d, tabnet_model = fit, from_epoch = 2, epochs = 2)
  expect_equal(lr_of(back), 0.02 * 0.5^c(0, 0, 1, 1))
  # exponential: the optimizer-step count carries over (3 steps per epoch)
  ex <- do.call(tabnet_fit, c(list(y ~ ., d, epochs = 2, lr_scheduler = "exponential", seed = 1), args))
  ex_more <- tabnet_fit(y ~ ., d, tabnet_model = ex, epochs = 2)
  expect_equal(lr_of(ex_more), 0.02 * 0.5^((3 * (0:3)) %/% 2))
  # a new learning rate restarts the schedule from it
  fresh <- tabnet_fit(y ~ ., d, tabnet_model = fit, epochs = 2, learn_rate = 0.01)
  expect_equal(lr_of(fresh)[4:5], c(0.01, 0.01))
})

test_that("partial matching of config arguments and `...` overriding config", {
  d <- syn2_data(300)
  cfg <- tabnet_config(epochs = 5, batch_size = 64, valid_split = 0.2, learn_rate = 0.01)
  fit <- tabnet_fit(y ~ ., d, config = cfg, epoch = 3, learn = 0.03, num_threads = 1)
  expect_equal(fit$fit$config$epochs, 3L)
  expect_length(fit$fit$metrics, 3)
  expect_equal(fit$fit$config$learn_rate, 0.03)
  expect_equal(lr_of(fit), rep(0.03, 3))
  expect_equal(fit$fit$config$batch_size, 64L)
  expect_false(is.null(fit$fit$metrics[[1]]$valid))
  # `...` wins also when it equals the default (the tabnet package dropped it)
  fit2 <- tabnet_fit(y ~ ., d, config = cfg, epochs = 1, learn_rate = 0.02, num_threads = 1)
  expect_equal(fit2$fit$config$learn_rate, 0.02)
  # partial matching when resuming, and checkpoint_epoch = for checkpoint_epochs
  more <- tabnet_fit(y ~ ., d, tabnet_model = fit, epoch = 1, checkpoint_epoch = 1)
  expect_length(more$fit$metrics, 4)
  expect_named(more$fit$checkpoints, "epoch_4")
  expect_error(tabnet_fit(y ~ ., d, epochz = 1), "unused argument")
})

# Runs `train(out)` in a background R process, waits until it prints a line
# matching `ready`, waits `delay` seconds more, sends SIGINT and returns what
# the process saved in `out` (plus `sent`, when the interrupt was sent).
interrupt_training <- function(train, ready, delay = 0) {
  out <- withr::local_tempfile(fileext = ".rds", .local_envir = parent.frame())
  proc <- callr::r_bg(train, args = list(out = out), stdout = "|", stderr = "2>&1")
  on.exit(if (proc$is_alive()) proc$kill(), add = TRUE)
  seen <- character()
  deadline <- Sys.time() + 60
  while (!any(grepl(ready, seen)) && proc$is_alive() && Sys.time() < deadline) {
    seen <- c(seen, proc$read_output_lines())
    Sys.sleep(0.05)
  }
  Sys.sleep(delay)
  expect_true(proc$is_alive())
  sent <- Sys.time()
  proc$interrupt()
  proc$wait(30000)
  expect_equal(proc$get_exit_status(), 0)
  c(readRDS(out), list(sent = sent))
}

test_that("an interrupt returns the model trained so far", {
  skip_on_cran()
  skip_if_not_installed("callr")
  res <- interrupt_training(function(out) {
    library(tabnetrs)
    set.seed(1)
    d <- data.frame(a = rnorm(2000), b = rnorm(2000))
    d$y <- d$a - d$b
    caught <- NULL
    fit <- withCallingHandlers(
      tabnet_fit(y ~ ., d, epochs = 10000, verbose = TRUE, batch_size = 256, num_threads = 1,
                 checkpoint_epochs = 0),
      warning = function(w) {
        caught <<- conditionMessage(w)
        invokeRestart("muffleWarning")
      }
    )
    saveRDS(list(fit = fit, warning = caught), out)
  }, ready = "Epoch 003")
  n <- length(res$fit$fit$metrics)
  expect_gte(n, 3)
  expect_lt(n, 10000)
  expect_true(res$fit$fit$interrupted)
  expect_match(res$warning, "interrupted after")
  p <- predict(res$fit, data.frame(a = c(-1, 0, 1), b = 0))
  expect_false(anyNA(p$.pred))
})

test_that("Ctrl-C takes effect within the running epoch", {
  skip_on_cran()
  skip_if_not_installed("callr")
  # an epoch of 300,000 rows in batches of 32 (9,375 batches) takes about 9 s
  # here, so the interrupt (1.5 s after "training") lands inside the first
  # epoch even on a machine several times faster (batches of 256 took 2.4 s,
  # and a CI run once finished that epoch first); R alone looks at a pending
  # interrupt only every thousand loop iterations or so, which is after the
  # whole fit here
  res <- interrupt_training(function(out) {
    library(tabnetrs)
    set.seed(1)
    d <- data.frame(a = rnorm(3e5), b = rnorm(3e5))
    d$y <- d$a - d$b
    cat("training\n")
    fit <- suppressWarnings(tabnet_fit(y ~ ., d, epochs = 2, batch_size = 32, num_threads = 1,
                                       checkpoint_epochs = 0, skip_importance = TRUE))
    saveRDS(list(fit = fit, done = Sys.time()), out)
  }, ready = "training", delay = 1.5)
  expect_true(res$fit$fit$interrupted)
  expect_length(res$fit$fit$metrics, 0)
  message(sprintf("interrupt honoured after %.2f s", as.numeric(difftime(res$done, res$sent, units = "secs"))))
})
