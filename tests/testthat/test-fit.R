test_that("tabnet_fit learns Syn2 to a holdout AUC above 0.90 (5000 rows, 10 epochs)", {
  train <- syn2_data(5000, seed = 10)
  test <- syn2_data(2000, seed = 11)
  set.seed(1)
  fit <- tabnet_fit(y ~ ., train, epochs = 10)
  expect_s3_class(fit, c("tabnet_fit", "hardhat_model"))
  expect_named(fit, c("fit", "serialized_net", "blueprint"))
  expect_true(all(c("network", "metrics", "config", "checkpoints", "importances") %in% names(fit$fit)))
  expect_length(fit$fit$metrics, 10)
  prob <- predict(fit, test, type = "prob")
  expect_named(prob, c(".pred_yes", ".pred_no"))
  expect_equal(rowSums(as.matrix(prob)), rep(1, nrow(test)), tolerance = 1e-5)
  expect_gt(auc(prob$.pred_yes, test$y == "yes"), 0.90)
  cls <- predict(fit, test)
  expect_named(cls, ".pred_class")
  expect_identical(levels(cls$.pred_class), c("yes", "no"))
  expect_gt(mean(cls$.pred_class == test$y), 0.8)
  imp <- fit$fit$importances
  expect_equal(sum(imp$importance), 1, tolerance = 1e-6)
  expect_setequal(imp$variables[order(-imp$importance)][1:4], sprintf("V%02d", 3:6))
})

test_that("data frame, matrix, formula and recipe interfaces agree", {
  d <- mixed_data()
  set.seed(3)
  f1 <- tabnet_fit(d[, c("num1", "grp", "num2", "flag")], d$target, epochs = 2, seed = 7)
  # hardhat's formula blueprint (indicators = "none") puts factors last
  f1b <- tabnet_fit(d[, c("num1", "num2", "grp", "flag")], d$target, epochs = 2, seed = 7)
  f2 <- tabnet_fit(target ~ num1 + grp + num2 + flag, d, epochs = 2, seed = 7)
  expect_identical(f2$fit$layout$names, c("num1", "num2", "grp", "flag"))
  expect_equal(predict(f1b, d), predict(f2, d))
  expect_named(predict(f1, d), ".pred")
  m <- as.matrix(d[, c("num1", "num2")])
  f3 <- tabnet_fit(m, d$target, epochs = 1)
  expect_equal(nrow(predict(f3, m)), nrow(d))
  skip_if_not_installed("recipes")
  rec <- recipes::recipe(target ~ num1 + grp + num2 + flag, data = d)
  f4 <- tabnet_fit(rec, d, epochs = 2, seed = 7)
  expect_equal(predict(f4, d), predict(f1, d))
})

test_that("regression learns a signal and categorical predictors are embedded", {
  d <- mixed_data(1500)
  fit <- tabnet_fit(target ~ num1 + grp + num2 + flag, d, epochs = 25, cat_emb_dim = 2, seed = 1)
  pred <- predict(fit, d)$.pred
  expect_lt(sqrt(mean((pred - d$target)^2)), 0.9 * sd(d$target))
  expect_identical(fit$fit$layout$levels$grp, c("a", "b", "c"))
})

test_that("... overrides config and partial matching works", {
  d <- syn2_data(300)
  cfg <- tabnet_config(epochs = 4, decision_width = 12)
  fit <- tabnet_fit(y ~ ., d, config = cfg, epoch = 2, batch = 128)
  expect_equal(fit$fit$config$epochs, 2L)
  expect_equal(fit$fit$config$batch_size, 128L)
  expect_equal(fit$fit$config$n_d, 12L)
  expect_equal(fit$fit$config$n_a, 12L)
  expect_length(fit$fit$metrics, 2)
  expect_error(tabnet_fit(y ~ ., d, not_an_argument = 1), "unused argument")
  expect_error(tabnet_config(not_an_argument = 1), "unused argument")
})

test_that("missing predictor values and unseen levels are handled", {
  d <- mixed_data(400)
  d$num1[c(3, 9, 20)] <- NA
  d$grp[c(5, 6)] <- NA
  fit <- tabnet_fit(cls ~ num1 + grp + num2 + flag, d, epochs = 2)
  p <- predict(fit, d, type = "prob")
  expect_false(anyNA(p))
  new <- d[1:5, ]
  new$grp <- factor(c("a", "b", "zzz", "c", NA))
  expect_warning(p2 <- predict(fit, new, type = "prob"), "not seen at fit time")
  expect_false(anyNA(p2))
  # an unseen level is handled as a missing value (as through a workflow)
  expect_equal(nrow(p2), 5)
})

test_that("a prediction does not depend on the other rows (eval-mode batch norm)", {
  d <- syn2_data(500)
  fit <- tabnet_fit(y ~ ., d, epochs = 2)
  all <- predict(fit, d, type = "prob")
  one <- predict(fit, d[17, ], type = "prob")
  expect_equal(as.numeric(one), as.numeric(all[17, ]), tolerance = 1e-6)
})

test_that("a training set whose last batch would have one row trains", {
  d <- syn2_data(257)
  expect_no_error(fit <- tabnet_fit(y ~ ., d, epochs = 1, batch_size = 128, virtual_batch_size = 64))
  expect_true(is.finite(fit$fit$metrics[[1]]$train))
})

test_that("case weights enter the loss", {
  d <- syn2_data(800)
  w <- ifelse(d$y == "yes", 20, 1)
  set.seed(5)
  plain <- tabnet_fit(y ~ ., d, epochs = 3, seed = 3)
  weighted <- tabnet_fit(y ~ ., d, epochs = 3, seed = 3, weights = w)
  share <- function(f) mean(predict(f, d)$.pred_class == "yes")
  expect_gt(share(weighted), share(plain))
  expect_error(tabnet_fit(y ~ ., d, weights = w[-1]), "length")
  expect_error(tabnet_fit(y ~ ., d, weights = -w), "non-negative")
})

test_that("formulas that only name columns are molded without copying, with the same result", {
  d <- mixed_data()
  cols <- tabnetrs:::plain_formula_columns(target ~ ., d)
  # factor-like columns last, as hardhat's formula blueprint orders them
  expect_identical(cols$outcome, "target")
  expect_identical(cols$predictors, c("num1", "num2", "grp", "flag", "cls"))
  expect_null(tabnetrs:::plain_formula_columns(target ~ log(abs(num1)) + num2, d))
  expect_null(tabnetrs:::plain_formula_columns(target ~ num1:num2, d))
  expect_null(tabnetrs:::plain_formula_columns(cbind(num1, num2) ~ grp, d))
  expect_null(tabnetrs:::plain_formula_columns(nothere ~ num1, d))
  expect_identical(tabnetrs:::plain_formula_columns(target ~ . - num1, d)$predictors,
                   setdiff(cols$predictors, "num1"))
  # the molded columns are the data frame's own vectors, not copies
  m <- tabnetrs:::mold_formula(target ~ num1 + num2, d)
  if (capabilities("profmem")) {
    expect_identical(tracemem(m$predictors$num1), tracemem(d$num1))
    untracemem(d$num1)
  }
  # same fit as through hardhat's formula blueprint
  a <- tabnet_fit(target ~ num1 + grp + num2, d, epochs = 2, seed = 4)
  b <- tabnet_fit(target ~ num1 + grp + sqrt(abs(num2)), transform(d, num2 = num2^2), epochs = 2, seed = 4)
  expect_equal(predict(a, d), predict(b, transform(d, num2 = num2^2)), tolerance = 1e-5)
})

test_that("the constructors validate the fields of a fitted object", {
  d <- syn2_data(200)
  fit <- tabnet_fit(y ~ ., d, epochs = 1, checkpoint_epochs = 1, num_threads = 1, seed = 3)
  again <- tabnetrs:::new_tabnet_fit(fit$fit, fit$serialized_net, fit$blueprint)
  expect_identical(class(again), class(fit))
  expect_identical(class(fit)[1:2], c("tabnet_fit", "hardhat_model"))
  expect_identical(again$serialized_net, fit$serialized_net)
  expect_identical(predict(again, d[1:5, ]), predict(fit, d[1:5, ]))
  # weights that are not the ones the checksum describes
  bad <- fit$serialized_net
  bad[length(bad)] <- as.raw(bitwXor(as.integer(bad[length(bad)]), 1L))
  expect_error(tabnetrs:::new_tabnet_fit(fit$fit, bad, fit$blueprint), class = "tabnetrs_error_internal")
  # the checksum covers the kind: a supervised network is not a pretraining
  expect_error(tabnetrs:::new_tabnet_pretrain(fit$fit, fit$serialized_net, fit$blueprint),
               class = "tabnetrs_error_internal")
  no_digest <- fit$fit
  no_digest$digest <- NULL
  expect_error(tabnetrs:::new_tabnet_fit(no_digest, fit$serialized_net, fit$blueprint),
               class = "tabnetrs_error_internal")
  expect_error(tabnetrs:::new_tabnet_fit(fit$fit, fit$serialized_net, list()), class = "tabnetrs_error_internal")
  pre <- tabnet_pretrain(d[, 1:10], epochs = 1, num_threads = 1, seed = 4)
  expect_identical(class(tabnetrs:::new_tabnet_pretrain(pre$fit, pre$serialized_net, pre$blueprint)),
                   class(pre))
  expect_identical(class(pre)[1:2], c("tabnet_pretrain", "hardhat_model"))
})
