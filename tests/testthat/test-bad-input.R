# Bad input: every case gives a tabnetrs condition of the right class whose
# message names the argument (or column) and the bad value.

bad_fit <- function() {
  syn_cached("bad_input_fit", withr::with_seed(1, tabnet_fit(y ~ ., syn2_data(100), epochs = 1)))
}

# --- integer and architecture bounds ----------------------------------------

test_that("whole numbers beyond the integer range are rejected", {
  expect_snapshot(error = TRUE, tabnet_config(epochs = 3e9))
  expect_snapshot(error = TRUE, tabnet_config(batch_size = 2^31))
  expect_error(tabnet_config(batch_size = 2^31), "batch_size", class = "tabnetrs_error_config")
  expect_error(tabnet_config(virtual_batch_size = 2^31), "virtual_batch_size.*2147483648",
               class = "tabnetrs_error_config")
  expect_error(tabnet_config(epochs = .Machine$integer.max + 1), "epochs",
               class = "tabnetrs_error_config")
  expect_equal(tabnet_config(epochs = .Machine$integer.max)$epochs, .Machine$integer.max)
  expect_error(tabnet_config(checkpoint_epochs = 1e12), "checkpoint_epochs",
               class = "tabnetrs_error_config")
  expect_error(tabnet_config(early_stopping_patience = 1e10), "early_stopping_patience",
               class = "tabnetrs_error_config")
  expect_error(tabnet_config(importance_sample_size = 1e10), "importance_sample_size",
               class = "tabnetrs_error_config")
})

test_that("architecture sizes have upper bounds", {
  expect_snapshot(error = TRUE, tabnet_config(decision_width = 1e6))
  expect_error(tabnet_config(decision_width = 4097), "decision_width.*4096", class = "tabnetrs_error_config")
  expect_error(tabnet_config(attention_width = 5000), "attention_width.*4096", class = "tabnetrs_error_config")
  expect_equal(tabnet_config(decision_width = 4096)$n_d, 4096L)
  expect_error(tabnet_config(num_steps = 65), "num_steps.*64", class = "tabnetrs_error_config")
  expect_equal(tabnet_config(num_steps = 64)$n_steps, 64L)
  expect_error(tabnet_config(num_shared = 100), "num_shared", class = "tabnetrs_error_config")
  expect_error(tabnet_config(cat_emb_dim = 1e5), "cat_emb_dim.*4096", class = "tabnetrs_error_config")
  expect_error(tabnet_config(cat_emb_dim = 1.5), "cat_emb_dim.*1.5", class = "tabnetrs_error_config")
  expect_error(tabnet_config(cat_emb_dim = 0), "cat_emb_dim", class = "tabnetrs_error_config")
})

test_that("each width is checked before it is copied into the other", {
  expect_snapshot(error = TRUE, tabnet_config(attention_width = 0))
  err <- expect_error(tabnet_config(attention_width = 0), class = "tabnetrs_error_config")
  expect_match(conditionMessage(err), "attention_width")
  expect_no_match(conditionMessage(err), "decision_width")
  err <- expect_error(tabnet_config(decision_width = -2), class = "tabnetrs_error_config")
  expect_match(conditionMessage(err), "decision_width")
  expect_no_match(conditionMessage(err), "attention_width")
  expect_error(tabnet_config(decision_width = 8, attention_width = 0), "attention_width",
               class = "tabnetrs_error_config")
  # through tabnet_fit()'s `...` too
  d <- syn2_data(50)
  expect_error(tabnet_fit(y ~ ., d, attention_width = 0), "attention_width", class = "tabnetrs_error_config")
})

test_that("a ranged number states its range", {
  expect_snapshot(error = TRUE, tabnet_config(momentum = 1.5))
  expect_error(tabnet_config(momentum = 1.5), "(0, 1]", fixed = TRUE, class = "tabnetrs_error_config")
  expect_error(tabnet_config(momentum = 0), "(0, 1]", fixed = TRUE, class = "tabnetrs_error_config")
  expect_equal(tabnet_config(momentum = 1)$momentum, 1)
  expect_error(tabnet_config(valid_split = 1), "valid_split.*in \\[0, 1\\)", class = "tabnetrs_error_config")
  expect_error(tabnet_config(pretraining_ratio = 1), "pretraining_ratio.*in \\(0, 1\\)",
               class = "tabnetrs_error_config")
  expect_error(tabnet_config(learn_rate = 0), "learn_rate.*> 0", class = "tabnetrs_error_config")
  expect_error(tabnet_config(lr_scheduler = "step", lr_decay = 2), "lr_decay.*in \\(0, 1\\]",
               class = "tabnetrs_error_config")
  expect_error(tabnet_config(feature_reusage = 0.5), "feature_reusage.*>= 1", class = "tabnetrs_error_config")
})

test_that("scalar arguments reject NA, Inf, negatives, wrong types and vectors", {
  expect_snapshot(error = TRUE, {
    tabnet_config(epochs = NA)
    tabnet_config(epochs = c(1, 2))
    tabnet_config(epochs = "5")
    tabnet_config(epochs = -1)
    tabnet_config(epochs = 2.5)
    tabnet_config(penalty = Inf)
    tabnet_config(mask_type = c("sparsemax", "entmax"))
  })
  cases <- list(
    list(epochs = NA), list(epochs = Inf), list(epochs = -1), list(epochs = 2.5),
    list(epochs = "5"), list(epochs = c(1, 2)), list(batch_size = 1), list(batch_size = NA_real_),
    list(decision_width = TRUE), list(num_steps = 0), list(penalty = -1), list(penalty = NaN),
    list(learn_rate = c(0.1, 0.2)), list(momentum = NA), list(momentum = "0.1"),
    list(clip_value = -1), list(valid_split = -0.1), list(mask_type = "softmax"),
    list(mask_type = NA_character_), list(loss = 1), list(device = "tpu"),
    list(early_stopping_tolerance = -1), list(drop_last = NA), list(verbose = "yes"),
    list(skip_importance = c(TRUE, FALSE)), list(optimizer = "sgd"), list(lr_scheduler = "cosine")
  )
  for (args in cases) {
    err <- expect_error(do.call(tabnet_config, args), class = "tabnetrs_error_config")
    expect_match(conditionMessage(err), names(args), fixed = TRUE)
  }
})

test_that("config errors from tabnet_fit() show the user's call", {
  d <- syn2_data(50)
  expect_snapshot(error = TRUE, tabnet_fit(y ~ ., d, epochs = 3e9))
  expect_error(tabnet_fit(y ~ ., d, epochs = 3e9), class = "tabnetrs_error")
  expect_error(tabnet_fit(y ~ ., d, config = list(epochs = 1)), "tabnet_config", class = "tabnetrs_error_config")
  expect_error(tabnet_fit(y ~ ., d, epochz = 1), "epochz", class = "tabnetrs_error_input")
})

# --- seeds -----------------------------------------------------------------

test_that("seeds must be whole numbers up to 2^53", {
  expect_snapshot(error = TRUE, tabnet_config(seed = 2^63))
  expect_error(tabnet_config(seed = 2^63), "seed", class = "tabnetrs_error_config")
  expect_error(tabnet_config(seed = -2^60), "seed", class = "tabnetrs_error_config")
  expect_error(tabnet_config(seed = 1.5), "seed.*1.5", class = "tabnetrs_error_config")
  expect_error(tabnet_config(seed = NA), "seed", class = "tabnetrs_error_config")
  expect_error(tabnet_config(seed = "1"), "seed", class = "tabnetrs_error_config")
  expect_error(tabnet_config(seed = c(1, 2)), "seed", class = "tabnetrs_error_config")
  expect_error(tabnet_config(seed = Inf), "seed", class = "tabnetrs_error_config")
  expect_equal(tabnet_config(seed = 2^53)$seed, 2^53)
  expect_equal(tabnet_config(seed = -5)$seed, -5)
  d <- syn2_data(50)
  expect_error(tabnet_fit(y ~ ., d, epochs = 1, seed = 2^64), "seed", class = "tabnetrs_error_config")
})

# --- threads ---------------------------------------------------------------

test_that("num_threads is validated", {
  expect_snapshot(error = TRUE, tabnet_config(num_threads = 0))
  for (bad in list(0, -1, 1.5, NA, "2", c(1, 2), Inf)) {
    expect_error(tabnet_config(num_threads = bad), "num_threads", class = "tabnetrs_error_config")
  }
})

test_that("num_threads is capped at the machine's cores with a message", {
  cores <- parallel::detectCores()
  expect_message(cfg <- tabnet_config(num_threads = cores + 1000), "capped", class = "tabnetrs_message")
  expect_equal(cfg$num_threads, as.integer(cores))
  expect_no_message(cfg <- tabnet_config(num_threads = 1))
  expect_equal(cfg$num_threads, 1L)
})

test_that("a bad tabnetrs.threads option is a config error naming it", {
  d <- syn2_data(50)
  withr::local_options(tabnetrs.threads = "abc")
  expect_snapshot(error = TRUE, tabnet_fit(y ~ ., d, epochs = 1))
  expect_error(tabnet_fit(y ~ ., d, epochs = 1), "tabnetrs.threads", class = "tabnetrs_error_config")
  withr::local_options(tabnetrs.threads = 0)
  expect_error(tabnet_fit(y ~ ., d, epochs = 1), "tabnetrs.threads.*0", class = "tabnetrs_error_config")
  withr::local_options(tabnetrs.threads = NA)
  expect_error(tabnet_fit(y ~ ., d, epochs = 1), "tabnetrs.threads", class = "tabnetrs_error_config")
  withr::local_options(tabnetrs.threads = c(1, 2))
  expect_error(tabnet_fit(y ~ ., d, epochs = 1), "tabnetrs.threads", class = "tabnetrs_error_config")
})

test_that("a bad TABNETRS_THREADS variable is a config error naming it", {
  d <- syn2_data(50)
  withr::local_options(tabnetrs.threads = NULL)
  withr::local_envvar(TABNETRS_THREADS = "many")
  expect_snapshot(error = TRUE, tabnet_fit(y ~ ., d, epochs = 1))
  expect_error(tabnet_fit(y ~ ., d, epochs = 1), "TABNETRS_THREADS.*many", class = "tabnetrs_error_config")
  withr::local_envvar(TABNETRS_THREADS = "0")
  expect_error(tabnet_fit(y ~ ., d, epochs = 1), "TABNETRS_THREADS", class = "tabnetrs_error_config")
  withr::local_envvar(TABNETRS_THREADS = "1.5")
  expect_error(tabnet_fit(y ~ ., d, epochs = 1), "TABNETRS_THREADS", class = "tabnetrs_error_config")
  withr::local_envvar(TABNETRS_THREADS = "1")
  expect_equal(tabnetrs:::resolve_threads(), 1L)
})

test_that("the option and the variable are capped at the machine's cores", {
  cores <- as.integer(parallel::detectCores())
  state <- tabnetrs:::runtime_state
  old <- state$capped
  on.exit(state$capped <- old, add = TRUE)
  state$capped <- NULL
  withr::local_options(tabnetrs.threads = cores + 100)
  expect_message(n <- tabnetrs:::resolve_threads(), "tabnetrs.threads.*capped", class = "tabnetrs_message")
  expect_equal(n, cores)
  # once per session and value: predict() reads the option every time
  expect_no_message(n <- tabnetrs:::resolve_threads())
  expect_equal(n, cores)
  withr::local_options(tabnetrs.threads = NULL)
  withr::local_envvar(TABNETRS_THREADS = as.character(cores + 100))
  expect_message(n <- tabnetrs:::resolve_threads(), "TABNETRS_THREADS.*capped", class = "tabnetrs_message")
  expect_equal(n, cores)
})

test_that("the thread count belongs to the session, not to a saved model", {
  d <- syn2_data(100)
  withr::local_options(tabnetrs.threads = 1L)
  fit <- bad_fit()
  # a model saved by a session with many threads (as readRDS() would give it)
  saved <- unserialize(serialize(fit, NULL))
  saved$fit$config$num_threads <- 1e6
  expect_no_message(p <- predict(saved, d))
  expect_equal(nrow(p), 100)
  expect_equal(tabnetrs:::rs_get_threads(), 1L)
  expect_no_message(tabnet_explain(saved, d[1:5, ]))
  expect_no_message(tabnet_importance(saved, d, method = "mad"))
  expect_equal(tabnetrs:::rs_get_threads(), 1L)
  # the session's setting is what predict() checks, not the model's
  withr::local_options(tabnetrs.threads = "abc")
  expect_error(predict(saved, d), "tabnetrs.threads", class = "tabnetrs_error_config")
  withr::local_options(tabnetrs.threads = 1L)
  # training uses the call's num_threads; continuing a fit does not reuse the saved one
  two <- min(2L, as.integer(parallel::detectCores()))
  f2 <- tabnet_fit(y ~ ., d, epochs = 1, num_threads = two)
  expect_equal(f2$fit$config$num_threads, two)
  expect_equal(tabnetrs:::rs_get_threads(), two)
  predict(f2, d[1:3, ])
  expect_equal(tabnetrs:::rs_get_threads(), 1L)
  f3 <- tabnet_fit(y ~ ., d, tabnet_model = saved, epochs = 1)
  expect_null(f3$fit$config$num_threads)
  expect_equal(tabnetrs:::rs_get_threads(), 1L)
})

# --- outcomes ----------------------------------------------------------------

test_that("a character or logical outcome gets our own error", {
  d <- syn2_data(50)
  x <- d[, 1:10]
  expect_snapshot(error = TRUE, tabnet_fit(x, as.character(d$y)))
  expect_error(tabnet_fit(x, as.character(d$y)), "must be a factor .* or numeric", class = "tabnetrs_error_input")
  expect_error(tabnet_fit(x, d$y == "yes"), "logical", class = "tabnetrs_error_input")
  expect_error(tabnet_fit(as.matrix(x), as.character(d$y)), "character", class = "tabnetrs_error_input")
  expect_error(tabnet_fit(x, data.frame(out = as.character(d$y))), "out.*character",
               class = "tabnetrs_error_input")
  expect_error(tabnet_fit(x, list(1, 2)), "list", class = "tabnetrs_error_input")
  chr <- d
  chr$y <- as.character(chr$y)
  expect_snapshot(error = TRUE, tabnet_fit(y ~ ., chr, epochs = 1))
  expect_error(tabnet_fit(y ~ ., chr, epochs = 1), "y.*character", class = "tabnetrs_error_input")
  lgl <- d
  lgl$y <- lgl$y == "yes"
  expect_error(tabnet_fit(y ~ V01 + V02, lgl, epochs = 1), "factor", class = "tabnetrs_error_input")
  # through hardhat's formula blueprint (a transformed predictor)
  expect_error(tabnet_fit(y ~ log(abs(V01)), chr, epochs = 1), "y.*character", class = "tabnetrs_error_input")
})

test_that("an outcome of the wrong length names both lengths", {
  d <- syn2_data(50)
  expect_snapshot(error = TRUE, tabnet_fit(d[, 1:10], d$y[-1]))
  expect_error(tabnet_fit(d[, 1:10], d$y[-1]), "49.*50", class = "tabnetrs_error_input")
  expect_error(tabnet_fit(as.matrix(d[, 1:10]), d$V01[1:10]), "10.*50", class = "tabnetrs_error_input")
  expect_error(tabnet_fit(d[, 1:10], d[1:3, "y", drop = FALSE]), "3 rows.*50", class = "tabnetrs_error_input")
})

test_that("outcome values are checked", {
  d <- syn2_data(50)
  bad <- d
  bad$y[3] <- NA
  expect_error(tabnet_fit(y ~ ., bad, epochs = 1), "missing values in the .*y.* outcome",
               class = "tabnetrs_error_input")
  one <- d
  one$y <- factor(rep("a", 50))
  expect_error(tabnet_fit(y ~ ., one, epochs = 1), "two levels", class = "tabnetrs_error_input")
  expect_error(tabnet_fit(d[, 1:10]), "outcome.*missing", class = "tabnetrs_error_input")
  expect_error(tabnet_fit(y ~ ., d[1, ], epochs = 1), "at least 2 rows", class = "tabnetrs_error_input")
  expect_error(tabnet_fit(y ~ ., d, epochs = 1, weights = rep(-1, 50)), "weights.*-1",
               class = "tabnetrs_error_input")
  expect_error(tabnet_fit(y ~ ., d, epochs = 1, weights = 1:3), "weights.*3.*50",
               class = "tabnetrs_error_input")
})

# --- column names --------------------------------------------------------------

test_that("duplicated predictor names are rejected at fit and at predict", {
  d <- syn2_data(50)
  dup <- d
  names(dup)[2] <- names(dup)[1]
  x <- d[, 1:10]
  names(x)[2] <- names(x)[1]
  expect_snapshot(error = TRUE, tabnet_fit(x, d$y))
  expect_error(tabnet_fit(x, d$y), "V01", class = "tabnetrs_error_input")
  expect_error(tabnet_fit(as.matrix(x), d$y), "V01", class = "tabnetrs_error_input")
  expect_error(tabnet_fit(y ~ ., dup, epochs = 1), "V01", class = "tabnetrs_error_input")
  expect_error(tabnet_pretrain(x, epochs = 1), "V01", class = "tabnetrs_error_input")
  expect_error(tabnet_pretrain(as.matrix(x), epochs = 1), "V01", class = "tabnetrs_error_input")
  fit <- bad_fit()
  expect_snapshot(error = TRUE, predict(fit, dup))
  expect_error(predict(fit, dup), "V01", class = "tabnetrs_error_input")
  expect_error(tabnet_explain(fit, dup), "V01", class = "tabnetrs_error_input")
  expect_error(tabnet_importance(fit, dup, method = "mad"), "V01", class = "tabnetrs_error_input")
})

test_that("non-syntactic column names are shown without backticks", {
  d <- syn2_data(80)[, c(1:3, 11)]
  names(d) <- c("my var", "2x", "a", "y")
  d$a <- abs(d$a) + 0.1
  fit <- tabnet_fit(y ~ ., d, epochs = 1)
  expect_setequal(fit$fit$importances$variables, c("my var", "2x", "a"))
  ex <- tabnet_explain(fit, d[1:5, ])
  expect_setequal(names(ex$M_explain), c("my var", "2x", "a"))
  expect_setequal(names(ex$masks[[1]]), c("my var", "2x", "a"))
  expect_setequal(tabnet_importance(fit)$Variable, c("my var", "2x", "a"))
  expect_setequal(tabnet_importance(fit, d, method = "mad")$Variable, c("my var", "2x", "a"))
  expect_setequal(tabnet_importance(fit, d, method = "permutation", n_repeats = 1)$Variable,
                  c("my var", "2x", "a"))
  expect_equal(nrow(predict(fit, d)), 80)

  # a formula that goes through hardhat's formula blueprint
  fit2 <- tabnet_fit(y ~ `my var` + `2x` + log(a), d, epochs = 1)
  vars <- c("my var", "2x", "log(a)")
  expect_setequal(fit2$fit$importances$variables, vars)
  expect_setequal(names(tabnet_explain(fit2, d[1:5, ])$M_explain), vars)
  expect_setequal(tabnet_importance(fit2, d, method = "occlusion")$Variable, vars)
  expect_false(any(grepl("`", tabnet_importance(fit2)$Variable)))
  expect_equal(nrow(predict(fit2, d)), 80)

  # and a plain formula naming the columns
  fit3 <- tabnet_fit(y ~ `my var` + a, d, epochs = 1)
  expect_setequal(fit3$fit$importances$variables, c("my var", "a"))

  # pretraining (hardhat's formula blueprint) then fine-tuning with `y ~ .`
  pre <- tabnet_pretrain(d[, 1:3], epochs = 1)
  expect_setequal(names(tabnet_explain(pre, d[1:5, ])$M_explain), c("my var", "2x", "a"))
  tuned <- tabnet_fit(y ~ ., d, tabnet_model = pre, epochs = 1)
  expect_setequal(tuned$fit$importances$variables, c("my var", "2x", "a"))
})

# --- importances ------------------------------------------------------------

test_that("importances that cannot be computed say why", {
  fit <- bad_fit()
  d <- syn2_data(100)
  expect_snapshot(error = TRUE, tabnet_importance(fit, d[1, ], method = "permutation"))
  expect_error(tabnet_importance(fit, d[1, ], method = "permutation"), "at least 2 rows",
               class = "tabnetrs_error_input")
  expect_error(tabnet_importance(fit, d[1, ], method = "occlusion"), "at least 2 rows",
               class = "tabnetrs_error_input")
  expect_error(tabnet_importance(fit, d[1, ], method = "mad"), "at least 2 rows",
               class = "tabnetrs_error_input")
  only_yes <- d[d$y == "yes", ]
  expect_snapshot(error = TRUE, tabnet_importance(fit, only_yes, method = "permutation"))
  expect_error(tabnet_importance(fit, only_yes, method = "permutation"), "ROC AUC.*both classes",
               class = "tabnetrs_error_input")
  expect_error(tabnet_importance(fit, only_yes, method = "occlusion"), "ROC AUC",
               class = "tabnetrs_error_input")
  # MAD averages over the classes present, so one class is fine
  imp <- tabnet_importance(fit, only_yes, method = "mad")
  expect_true(all(is.finite(imp$Importance)))
  # two rows with both classes work and give finite values
  two <- rbind(d[d$y == "yes", ][1, ], d[d$y == "no", ][1, ])
  imp <- tabnet_importance(fit, two, method = "occlusion")
  expect_true(all(is.finite(imp$Importance)))
})

test_that("importance arguments are validated", {
  fit <- bad_fit()
  d <- syn2_data(100)
  expect_error(tabnet_importance(fit, d, method = "shap"), "method.*shap", class = "tabnetrs_error_input")
  expect_error(tabnet_importance(fit, d, method = NA), "method", class = "tabnetrs_error_input")
  expect_error(tabnet_importance(fit, d, method = "permutation", n_repeats = 0), "n_repeats",
               class = "tabnetrs_error_input")
  expect_error(tabnet_importance(fit, d, method = "permutation", n_repeats = NA), "n_repeats",
               class = "tabnetrs_error_input")
  expect_error(tabnet_importance(fit, d, method = "permutation", seed = 1.5), "seed.*1.5",
               class = "tabnetrs_error_input")
  expect_error(tabnet_importance(fit, d, method = "permutation", seed = 2^60), "seed",
               class = "tabnetrs_error_input")
  expect_error(tabnet_importance(fit, d[, 1:10], method = "permutation"), "outcome column.*y",
               class = "tabnetrs_error_input")
  expect_error(tabnet_importance(fit, method = "mad"), "new_data.*needed", class = "tabnetrs_error_input")
})

# --- predict ---------------------------------------------------------------

test_that("predict() checks `type` against one list of types", {
  fit <- bad_fit()
  d <- syn2_data(20)
  expect_snapshot(error = TRUE, predict(fit, d, type = "logit"))
  expect_error(predict(fit, d, type = "logit"), '"class", "prob", "numeric", or "raw"', class = "tabnetrs_error_input")
  expect_error(predict(fit, d, type = c("class", "prob")), "type", class = "tabnetrs_error_input")
  expect_error(predict(fit, d, type = NA_character_), "type", class = "tabnetrs_error_input")
  expect_error(predict(fit, d, type = 1), "type", class = "tabnetrs_error_input")
  expect_error(predict(fit, d, type = "numeric"), "Outcome is factor", class = "tabnetrs_error_input")
  expect_equal(names(predict(fit, d, type = "prob")), c(".pred_yes", ".pred_no"))
})

test_that("predict() checks new_data and epoch", {
  fit <- bad_fit()
  d <- syn2_data(20)
  expect_error(predict(fit, "a"), "new_data.*data frame", class = "tabnetrs_error_input")
  expect_error(predict(fit, d, epoch = 0), "epoch", class = "tabnetrs_error_input")
  expect_error(predict(fit, d, epoch = 1.5), "epoch", class = "tabnetrs_error_input")
  chr <- d
  chr$V04 <- as.character(chr$V04)
  expect_error(predict(fit, chr), "new_data.*does not match", class = "tabnetrs_error_input")
})
