# set.seed() before a fit makes it bit-for-bit reproducible.

# the per-epoch metrics without their wall-clock times
without_seconds <- function(metrics) lapply(metrics, function(e) e[setdiff(names(e), "seconds")])

fit_twice <- function(seed, ...) {
  set.seed(seed)
  a <- tabnet_fit(...)
  set.seed(seed)
  b <- tabnet_fit(...)
  list(a, b)
}

for (threads in 1:2) {
  test_that(sprintf("set.seed() gives identical weights and predictions (num_threads = %d)", threads), {
    d <- mixed_data(400)
    # valid split, early stopping, a categorical embedding and a multi-batch epoch
    fits <- fit_twice(11, cls ~ num1 + grp + num2 + flag, d, epochs = 3, valid_split = 0.2,
                      batch_size = 128, virtual_batch_size = 64, cat_emb_dim = 2,
                      early_stopping_patience = 3, checkpoint_epochs = 1, num_threads = threads)
    a <- fits[[1]]
    b <- fits[[2]]
    expect_identical(a$serialized_net, b$serialized_net)
    expect_identical(a$fit$checkpoints, b$fit$checkpoints)
    expect_identical(without_seconds(a$fit$metrics), without_seconds(b$fit$metrics))
    expect_identical(a$fit$importances, b$fit$importances)
    expect_identical(predict(a, d, type = "prob"), predict(b, d, type = "prob"))
    # another seed gives another network
    set.seed(12)
    c <- tabnet_fit(cls ~ num1 + grp + num2 + flag, d, epochs = 3, valid_split = 0.2,
                    batch_size = 128, virtual_batch_size = 64, cat_emb_dim = 2,
                    early_stopping_patience = 3, checkpoint_epochs = 1, num_threads = threads)
    expect_false(identical(c$serialized_net, a$serialized_net))
    expect_false(identical(predict(c, d, type = "prob"), predict(a, d, type = "prob")))
  })
}

test_that("pretraining and fine-tuning are reproducible too", {
  d <- syn2_data(300)
  run <- function() {
    set.seed(5)
    pre <- tabnet_pretrain(d[, 1:10], epochs = 2, batch_size = 128, valid_split = 0.2, num_threads = 2)
    fit <- tabnet_fit(y ~ ., d, tabnet_model = pre, epochs = 2, batch_size = 128, num_threads = 2)
    list(pre = pre, fit = fit)
  }
  r1 <- run()
  r2 <- run()
  expect_identical(r1$pre$serialized_net, r2$pre$serialized_net)
  expect_identical(without_seconds(r1$pre$fit$metrics), without_seconds(r2$pre$fit$metrics))
  expect_identical(r1$fit$serialized_net, r2$fit$serialized_net)
})

test_that("the `seed` argument fixes the network whatever R's RNG state", {
  d <- syn2_data(300)
  set.seed(1)
  a <- tabnet_fit(y ~ ., d, epochs = 2, seed = 42, num_threads = 1)
  set.seed(2)
  b <- tabnet_fit(y ~ ., d, epochs = 2, seed = 42, num_threads = 1)
  expect_identical(a$serialized_net, b$serialized_net)
  # resuming is reproducible as well
  set.seed(3)
  a2 <- tabnet_fit(y ~ ., d, tabnet_model = a, epochs = 1)
  set.seed(3)
  b2 <- tabnet_fit(y ~ ., d, tabnet_model = b, epochs = 1)
  expect_identical(a2$serialized_net, b2$serialized_net)
})

test_that("saving the same weights twice gives the same bytes", {
  d <- syn2_data(200)
  fit <- tabnet_fit(y ~ ., d, epochs = 1, num_threads = 1)
  net <- tabnetrs:::live_network(fit)
  expect_identical(tabnetrs:::rs_model_weights(net), tabnetrs:::rs_model_weights(net))
  expect_identical(tabnetrs:::rs_model_weights(net), fit$serialized_net)
})
