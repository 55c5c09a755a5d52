# End-to-end tidymodels tests, following the blog post "torch, tidymodels,
# and high-energy physics" (RStudio AI blog) on a small Higgs-shaped table.
#
# Where the post's code no longer runs with current tidymodels whatever the
# engine, the modern call is used and the post's call is quoted in a comment:
# * `wf %>% parameters()`: dials has no `parameters()` method for workflows
#   any more -> `extract_parameter_set_dials(wf)`;
# * `show_best("accuracy")`: tune >= 1.2 requires `metric = "accuracy"`.

skip_if_not_installed("parsnip")
skip_if_not_installed("workflows")
skip_if_not_installed("recipes")
skip_if_not_installed("rsample")
skip_if_not_installed("yardstick")

suppressPackageStartupMessages({
  library(parsnip)
  library(workflows)
  library(recipes)
  library(rsample)
  library(yardstick)
  library(dplyr)
})

higgs_names <- c(
  "lepton_pT", "lepton_eta", "lepton_phi", "missing_energy_magnitude",
  "missing_energy_phi", "jet_1_pt", "jet_1_eta", "jet_1_phi", "jet_1_b_tag",
  "jet_2_pt", "jet_2_eta", "jet_2_phi", "jet_2_b_tag", "jet_3_pt", "jet_3_eta",
  "jet_3_phi", "jet_3_b_tag", "jet_4_pt", "jet_4_eta", "jet_4_phi", "jet_4_b_tag",
  "m_jj", "m_jjj", "m_lv", "m_jlv", "m_bb", "m_wbb", "m_wwbb"
)

# A Higgs-shaped table: `class` (factor "0"/"1", balanced) and 28 predictors
# with the post's names. Momenta and masses are positive around 1, eta
# normal, phi uniform, b tags 0 or ~2.2. The signal is in the high-level
# masses m_bb, m_wbb and m_wwbb (as in the real data, where they dominate the
# importances), so a good model is well above chance.
make_higgs <- function(n = 1500, seed = 20201) {
  old <- if (exists(".Random.seed", globalenv())) get(".Random.seed", globalenv()) else NULL
  on.exit(if (!is.null(old)) assign(".Random.seed", old, globalenv()))
  set.seed(seed)
  y <- stats::rbinom(n, 1, 0.5)
  col <- function(nm) {
    if (grepl("eta", nm)) return(stats::rnorm(n))
    if (grepl("phi", nm)) return(stats::runif(n, -pi, pi))
    if (grepl("b_tag", nm)) return(ifelse(stats::runif(n) < 0.4, 2.173076, 0))
    exp(stats::rnorm(n, 0, 0.35))
  }
  x <- lapply(higgs_names, col)
  names(x) <- higgs_names
  x$m_bb <- x$m_bb + 0.8 * y
  x$m_wwbb <- x$m_wwbb + 0.6 * y
  x$m_wbb <- x$m_wbb + 0.3 * y
  x$jet_1_pt <- x$jet_1_pt + 0.2 * y
  tibble::as_tibble(c(list(class = factor(y, levels = c(0, 1))), x))
}

higgs <- make_higgs()

n_all <- nrow(higgs)
n_test <- 300
test_frac <- n_test / n_all
split <- initial_time_split(higgs, prop = 1 - test_frac)
train <- training(split)
test <- testing(split)

# Tuning refits many times: like the post (which tuned on 1/1,000 of the data),
# tune on a smaller part of the training set.
train_tune <- train[seq_len(500), ]

# libtorch with 2 threads is many times slower than with 1 on these tiny
# batches when the 2 cores are shared (OpenMP threads wait for each other),
# so the fits here use one thread.
one_thread <- function(env = parent.frame()) {
  withr::local_options(tabnetrs.threads = 1L, .local_envir = env)
}

quietly <- function(expr) {
  out <- NULL
  utils::capture.output(out <- suppressMessages(expr))
  out
}

# The post's first workflow, fitted once and shared by several tests.
blog_fit <- local({
  cache <- NULL
  function() {
    if (is.null(cache)) {
      one_thread()
      rec <- recipe(class ~ ., train)
      # hyperparameter settings (apart from epochs) as per the TabNet paper (TabNet-S)
      mod <- tabnet(epochs = 3, batch_size = 16384, decision_width = 24, attention_width = 26,
                    num_steps = 5, penalty = 0.000001, virtual_batch_size = 512, momentum = 0.6,
                    feature_reusage = 1.5, learn_rate = 0.02) %>%
        set_engine("torch", verbose = TRUE) %>%
        set_mode("classification")
      wf <- workflow() %>%
        add_model(mod) %>%
        add_recipe(rec)
      set.seed(777)
      fitted_model <- quietly(wf %>% fit(train))
      cache <<- list(wf = wf, fitted_model = fitted_model)
    }
    cache
  }
})

test_that("the blog post's workflow fits and predicts", {
  fitted_model <- blog_fit()$fitted_model
  expect_s3_class(fitted_model, "workflow")
  expect_true(fitted_model$trained)

  # access the underlying parsnip model and save it to RDS format
  rds <- withr::local_tempfile(fileext = ".rds")
  fitted_model$fit$fit$fit %>% saveRDS(rds)
  expect_s3_class(fitted_model$fit$fit$fit, "tabnet_fit")

  preds <- test %>%
    bind_cols(predict(fitted_model, test))
  expect_equal(nrow(preds), nrow(test))
  expect_s3_class(preds$.pred_class, "factor")
  expect_equal(levels(preds$.pred_class), levels(train$class))

  acc <- yardstick::accuracy(preds, class, .pred_class)
  expect_equal(acc$.metric, "accuracy")
  expect_equal(acc$.estimator, "binary")
  expect_true(acc$.estimate >= 0 && acc$.estimate <= 1)

  probs <- predict(fitted_model, test, type = "prob")
  expect_named(probs, c(".pred_0", ".pred_1"))
  expect_equal(rowSums(as.matrix(probs)), rep(1, nrow(test)), tolerance = 1e-5)

  # the saved engine fit predicts the same after a reload
  reloaded <- readRDS(rds)
  expect_equal(predict(reloaded, test), predict(fitted_model, test))
})

test_that("a longer fit learns the signal (accuracy above chance)", {
  one_thread()
  mod <- tabnet(epochs = 8, batch_size = 128, virtual_batch_size = 128,
                decision_width = 8, attention_width = 8, num_steps = 3,
                learn_rate = 0.02) %>%
    set_engine("torch") %>%
    set_mode("classification")
  wf <- workflow() %>% add_model(mod) %>% add_recipe(recipe(class ~ ., train))
  set.seed(1)
  fitted <- quietly(fit(wf, train))
  preds <- bind_cols(test, predict(fitted, test), predict(fitted, test, type = "prob"))
  acc <- accuracy(preds, class, .pred_class)$.estimate
  auc <- roc_auc(preds, class, .pred_0)$.estimate
  expect_gt(acc, 0.65)
  expect_gt(auc, 0.7)
})

test_that("regression mode and the formula interface work", {
  one_thread()
  mod <- tabnet(epochs = 2, batch_size = 512, virtual_batch_size = 128) %>%
    set_mode("regression")
  set.seed(3)
  fitted <- quietly(fit(mod, m_bb ~ m_wwbb + m_wbb + jet_1_pt + class, data = train))
  expect_s3_class(fitted, "model_fit")
  p <- predict(fitted, test)
  expect_named(p, ".pred")
  expect_equal(nrow(p), nrow(test))
  expect_true(all(is.finite(p$.pred)))
})

test_that("multi_predict() predicts at checkpointed epochs", {
  one_thread()
  mod <- tabnet(epochs = 3, batch_size = 256, virtual_batch_size = 128) %>%
    set_engine("torch", checkpoint_epochs = 1) %>%
    set_mode("classification")
  set.seed(4)
  fitted <- quietly(fit(mod, class ~ ., data = train))
  new_rows <- test[1:7, ]
  mp <- multi_predict(fitted, new_rows, type = "prob", epochs = c(1, 3))
  expect_equal(nrow(mp), 7)
  expect_named(mp, ".pred")
  expect_named(mp$.pred[[1]], c("epochs", ".pred_0", ".pred_1"))
  expect_equal(mp$.pred[[1]]$epochs, c(1L, 3L))
  last <- vapply(mp$.pred, function(p) p$.pred_1[p$epochs == 3], numeric(1))
  expect_equal(last, predict(fitted, new_rows, type = "prob")$.pred_1, tolerance = 1e-6)
  first <- vapply(mp$.pred, function(p) p$.pred_1[p$epochs == 1], numeric(1))
  expect_equal(first, predict(fitted$fit, new_rows, type = "prob", epoch = 1)$.pred_1, tolerance = 1e-6)
  # default: the current weights, as classes
  mp_def <- multi_predict(fitted, new_rows)
  expect_equal(mp_def$.pred[[1]]$epochs, 3L)
  expect_named(mp_def$.pred[[1]], c("epochs", ".pred_class"))
  expect_error(multi_predict(fitted, new_rows, epochs = 9), "between 1 and 3")
})

test_that("multi_predict() past an early stop predicts with the weights the fit holds", {
  one_thread()
  # no epoch improves by 100 times the best loss: stops after epoch 2, keeps epoch 1
  mod <- tabnet(epochs = 10, batch_size = 256, virtual_batch_size = 128,
                early_stopping_patience = 1, early_stopping_tolerance = 100) %>%
    set_engine("torch", checkpoint_epochs = 1) %>%
    set_mode("classification")
  set.seed(6)
  fitted <- quietly(fit(mod, class ~ ., data = train))
  expect_true(fitted$fit$fit$stopped_early)
  expect_length(fitted$fit$fit$metrics, 2)
  new_rows <- test[1:5, ]
  mp <- multi_predict(fitted, new_rows, type = "prob", epochs = c(2, 10))
  at <- function(e) vapply(mp$.pred, function(p) p$.pred_1[p$epochs == e], numeric(1))
  expect_equal(at(10), predict(fitted, new_rows, type = "prob")$.pred_1, tolerance = 1e-6)
  expect_equal(at(2), predict(fitted$fit, new_rows, type = "prob", epoch = 2)$.pred_1, tolerance = 1e-6)
  expect_error(multi_predict(fitted, new_rows, epochs = 11), "between 1 and 10", class = "tabnetrs_error_input")
})

test_that("vip() works on the parsnip fit (blog post)", {
  skip_if_not_installed("vip")
  skip_if_not_installed("ggplot2")
  library(ggplot2)
  fitted_model <- blog_fit()$fitted_model

  fit <- suppressWarnings(pull_workflow_fit(fitted_model)) # deprecated in workflows
  expect_s3_class(fit, "model_fit")
  p <- vip::vip(fit) + theme_minimal()
  expect_s3_class(p, "ggplot")
  vi <- vip::vi(fit)
  expect_setequal(vi$Variable, higgs_names)
  expect_true(all(vi$Importance >= 0))
  # also from the workflow and from the engine fit
  expect_equal(nrow(vip::vi(fitted_model)), 28)
  expect_equal(nrow(vip::vi(fit$fit)), 28)
})

test_that("tabnet_explain() works on the parsnip fit (blog post)", {
  skip_if_not_installed("ggplot2")
  skip_if_not_installed("tidyr")
  skip_if_not_installed("purrr")
  library(ggplot2)
  fitted_model <- blog_fit()$fitted_model
  fit <- suppressWarnings(pull_workflow_fit(fitted_model)) # deprecated in workflows
  expect_s3_class(fit$fit, "tabnet_fit")

  ex_fit <- tabnet_explain(fit$fit, test[1:100, ])
  expect_equal(dim(ex_fit$M_explain), c(100L, 28L))
  expect_setequal(names(ex_fit$M_explain), higgs_names)
  expect_length(ex_fit$masks, 5)
  expect_equal(dim(ex_fit$masks[[1]]), c(100L, 28L))

  g1 <- ex_fit$M_explain %>%
    mutate(observation = row_number()) %>%
    tidyr::pivot_longer(-observation, names_to = "variable", values_to = "m_agg") %>%
    ggplot(aes(x = observation, y = variable, fill = m_agg)) +
    geom_tile() +
    theme_minimal() +
    scale_fill_viridis_c()
  expect_s3_class(g1, "ggplot")

  g2 <- ex_fit$masks %>%
    purrr::imap_dfr(~ mutate(
      .x,
      step = sprintf("Step %d", .y),
      observation = row_number()
    )) %>%
    tidyr::pivot_longer(-c(observation, step), names_to = "variable", values_to = "m_agg") %>%
    ggplot(aes(x = observation, y = variable, fill = m_agg)) +
    geom_tile() +
    theme_minimal() +
    theme(axis.text = element_text(size = 5)) +
    scale_fill_viridis_c() +
    facet_wrap(~step)
  expect_s3_class(g2, "ggplot")
  expect_equal(nrow(g2$data), 100 * 28 * 5)

  # the explanation of a parsnip model_fit goes to the engine fit
  ex2 <- tabnet_explain(fit, test[1:10, ])
  expect_equal(dim(ex2$M_explain), c(10L, 28L))
})

tuning_wf <- function(train, epochs = 1) {
  mod <- tabnet(epochs = epochs, batch_size = 16384, decision_width = tune(), attention_width = tune(),
                num_steps = tune(), penalty = 0.000001, virtual_batch_size = 512, momentum = 0.6,
                feature_reusage = 1.5, learn_rate = tune()) %>%
    set_engine("torch", verbose = TRUE) %>%
    set_mode("classification")
  workflow() %>%
    add_model(mod) %>%
    add_recipe(recipe(class ~ ., train))
}

tuning_grid <- function(wf, size = 8) {
  # post: wf %>% parameters() %>% update(...) %>% grid_max_entropy(size = 8)
  wf %>%
    hardhat::extract_parameter_set_dials() %>%
    update(
      decision_width = decision_width(range = c(20, 40)),
      attention_width = attention_width(range = c(20, 40)),
      num_steps = num_steps(range = c(4, 6)),
      learn_rate = dials::learn_rate(range = c(-2.5, -1))
    ) %>%
    dials::grid_max_entropy(size = size) %>%
    suppressWarnings() # grid_max_entropy() is deprecated in dials >= 1.3
}

test_that("tune_grid() works and finalize_workflow() gives a fittable workflow", {
  one_thread()
  skip_if_not_installed("tune")
  library(tune)
  wf <- tuning_wf(train_tune)
  grid <- tibble::tibble(decision_width = c(20L, 32L), attention_width = c(24L, 16L),
                         num_steps = c(4L, 5L), learn_rate = c(0.02, 0.005))
  set.seed(11)
  folds <- vfold_cv(train_tune, v = 2)
  res <- quietly(tune_grid(wf, resamples = folds, grid = grid,
                           metrics = metric_set(accuracy, roc_auc)))
  expect_s3_class(res, "tune_results")
  m <- collect_metrics(res)
  expect_equal(nrow(m), 2 * 2)
  expect_true(all(is.finite(m$mean)))
  expect_equal(nrow(collect_notes(res)), 0)

  best <- select_best(res, metric = "accuracy")
  final <- finalize_workflow(wf, best)
  expect_equal(
    rlang::eval_tidy(extract_spec_parsnip(final)$eng_args$verbose), TRUE
  )
  fitted <- quietly(fit(final, train_tune))
  expect_equal(nrow(predict(fitted, test)), nrow(test))
  expect_equal(fitted$fit$fit$fit$fit$config$epochs, 1)
})

test_that("a grid over epochs fits once per resample and predicts every epoch from checkpoints", {
  one_thread()
  skip_if_not_installed("tune")
  library(tune)
  d <- train_tune[, c("class", "m_bb", "m_wbb", "m_wwbb", "jet_1_pt", "lepton_pT")]
  spec <- tabnet(epochs = tune(), batch_size = 256, virtual_batch_size = 128, decision_width = 8,
                 attention_width = 8, num_steps = 2) %>%
    set_engine("torch") %>%
    set_mode("classification")
  wf <- workflow() %>% add_formula(class ~ .) %>% add_model(spec)
  grid <- tibble::tibble(epochs = 1:10)
  # min_grid(): one fit with the largest value, the others as submodels
  mg <- tune::min_grid(spec, grid)
  expect_equal(mg$epochs, 10L)
  expect_equal(mg$.submodels[[1]]$epochs, 1:9)

  calls <- new.env()
  calls$epochs <- integer()
  suppressMessages(trace("tabnet_fit", where = asNamespace("tabnetrs"), print = FALSE,
                         tracer = bquote(assign("epochs", c(get("epochs", envir = .(calls)), list(...)$epochs),
                                                envir = .(calls)))))
  withr::defer(suppressMessages(untrace("tabnet_fit", where = asNamespace("tabnetrs"))))
  set.seed(12)
  folds <- vfold_cv(d, v = 2)
  res <- quietly(tune_grid(wf, resamples = folds, grid = grid, metrics = metric_set(roc_auc),
                           control = control_grid(save_pred = TRUE)))
  suppressMessages(untrace("tabnet_fit", where = asNamespace("tabnetrs")))
  # one fit per resample (not 10), each with the largest epochs value
  expect_equal(calls$epochs, c(10L, 10L))
  expect_equal(nrow(collect_notes(res)), 0)
  m <- collect_metrics(res)
  expect_equal(sort(m$epochs), 1:10)
  expect_true(all(is.finite(m$mean)))
  # the epochs differ: each is predicted from its own checkpoint
  preds <- collect_predictions(res)
  expect_equal(sort(unique(preds$epochs)), 1:10)
  p1 <- preds$.pred_1[preds$epochs == 1]
  p10 <- preds$.pred_1[preds$epochs == 10]
  expect_false(isTRUE(all.equal(p1, p10)))

  # the checkpoint of epoch 3 predicts what a 3-epoch fit with the same seed predicts
  fixed <- update(spec, epochs = 10L)
  expect_equal(rlang::eval_tidy(fixed$args$checkpoint_epochs), 1L)
  set.seed(5)
  f10 <- quietly(fit(fixed, class ~ ., data = d))
  expect_named(f10$fit$fit$checkpoints, paste0("epoch_", 1:10))
  set.seed(5)
  f3 <- quietly(fit(update(spec, epochs = 3L), class ~ ., data = d))
  mp <- multi_predict(f10, d[1:20, ], type = "prob", epochs = 3)
  expect_equal(vapply(mp$.pred, function(p) p$.pred_1, numeric(1)),
               predict(f3, d[1:20, ], type = "prob")$.pred_1, tolerance = 1e-5)
  # an explicit checkpoint_epochs is kept
  own <- update(spec %>% set_engine("torch", checkpoint_epochs = 5), epochs = 10L)
  expect_true(rlang::quo_is_null(own$args$checkpoint_epochs))
  expect_equal(rlang::eval_tidy(own$eng_args$checkpoint_epochs), 5)
  # a specification whose epochs were never tune() is unchanged
  plain <- update(tabnet(epochs = 2) %>% set_mode("classification"), epochs = 4L)
  expect_true(rlang::quo_is_null(plain$args$checkpoint_epochs))
})

test_that("tune_race_anova() runs the blog post's racing code", {
  one_thread()
  skip_if_not_installed("finetune")
  skip_if_not_installed("lme4")
  library(tune)
  library(finetune)
  train <- train_tune
  wf <- tuning_wf(train)
  set.seed(42)
  grid <- tuning_grid(wf, size = 8)
  expect_equal(nrow(grid), 8)

  ctrl <- control_race(verbose_elim = TRUE)
  folds <- vfold_cv(train, v = 5)

  res <- quietly(
    wf %>%
      tune_race_anova(
        resamples = folds,
        grid = grid,
        control = ctrl
      )
  )
  expect_s3_class(res, "tune_race")

  # post: res %>% show_best("accuracy") %>% select(- c(.estimator, .config))
  # (tune warns that the race was run on roc_auc, the first metric)
  best <- suppressWarnings(
    res %>% show_best(metric = "accuracy") %>% select(- c(.estimator, .config))
  )
  expect_named(best, c("learn_rate", "decision_width", "attention_width", "num_steps",
                       ".metric", "mean", "n", "std_err"), ignore.order = TRUE)
  expect_true(nrow(best) >= 1 && nrow(best) <= 5)
  expect_true(all(best$.metric == "accuracy"))
  expect_true(all(best$decision_width >= 20 & best$decision_width <= 40))
})

test_that("case weights are used: up-weighting a class raises its predicted share", {
  one_thread()
  skip_if_not_installed("hardhat")
  mod <- tabnet(epochs = 8, batch_size = 128, virtual_batch_size = 128,
                decision_width = 8, attention_width = 8, learn_rate = 0.02,
                skip_importance = TRUE) %>%
    set_mode("classification")

  train_w <- train %>%
    mutate(w = hardhat::importance_weights(ifelse(class == "1", 20, 1)))
  wf_w <- workflow() %>%
    add_case_weights(w) %>%
    add_model(mod) %>%
    add_formula(class ~ .)
  wf_u <- workflow() %>%
    add_model(mod) %>%
    add_formula(class ~ .)

  set.seed(5)
  fit_w <- quietly(fit(wf_w, train_w))
  set.seed(5)
  fit_u <- quietly(fit(wf_u, train))

  share_w <- mean(predict(fit_w, test)$.pred_class == "1")
  share_u <- mean(predict(fit_u, test)$.pred_class == "1")
  prob_w <- mean(predict(fit_w, test, type = "prob")$.pred_1)
  prob_u <- mean(predict(fit_u, test, type = "prob")$.pred_1)
  expect_gt(prob_w, prob_u + 0.1)
  expect_gt(share_w, share_u)

  # parsnip's own case_weights argument, with frequency weights
  set.seed(5)
  fw <- hardhat::frequency_weights(ifelse(train$class == "1", 5L, 1L))
  pf <- quietly(fit(mod, class ~ ., data = train, case_weights = fw))
  expect_s3_class(pf, "model_fit")
})

test_that("racing in parallel on 2 future workers", {
  skip_on_cran()
  skip_if_not_installed("finetune")
  skip_if_not_installed("lme4")
  skip_if_not_installed("future", minimum_version = "1.33.0")
  skip_if_not_installed("future.apply")
  library(tune)
  library(finetune)
  # workers must find tabnetrs where this session found it
  # and use one libtorch thread each (2 workers on 2 cores)
  withr::local_envvar(
    R_LIBS = paste(.libPaths(), collapse = .Platform$path.sep),
    TABNETRS_THREADS = "1"
  )
  future::plan(future::multisession, workers = 2)
  on.exit(future::plan(future::sequential), add = TRUE)

  small <- train_tune[seq_len(300), ]
  wf <- tuning_wf(small)
  set.seed(9)
  grid <- tuning_grid(wf, size = 4)
  folds <- vfold_cv(small, v = 4)
  ctrl <- control_race(extract = function(x) Sys.getpid(), burn_in = 3,
                       parallel_over = "everything")
  res <- quietly(tune_race_anova(wf, resamples = folds, grid = grid, control = ctrl))
  expect_s3_class(res, "tune_race")
  expect_equal(nrow(collect_notes(res) %>% filter(type == "error")), 0)
  m <- collect_metrics(res)
  expect_true(all(is.finite(m$mean)))
  pids <- unlist(collect_extracts(res)$.extracts)
  expect_true(length(pids) > 0)
  expect_false(Sys.getpid() %in% pids)
})

# tune >= 2.0 runs in parallel on mirai daemons: fresh R processes (not forks)
# that receive the workflow serialised and load tabnetrs (which registers the
# engine) when they unserialise it.
local_mirai_daemons <- function(n, env = parent.frame()) {
  withr::local_envvar(
    R_LIBS = paste(.libPaths(), collapse = .Platform$path.sep),
    TABNETRS_THREADS = "1",
    .local_envir = env
  )
  mirai::daemons(n)
  withr::defer(mirai::daemons(0), envir = env)
  # tune counts connected daemons; wait until all n have connected so the
  # work is really spread (otherwise tune would run it sequentially)
  deadline <- Sys.time() + 60
  while (mirai::status()$connections < n && Sys.time() < deadline) Sys.sleep(0.2)
  expect_equal(mirai::status()$connections, n)
}

test_that("tune_grid() and tune_race_anova() run on 2 mirai daemons", {
  skip_on_cran()
  skip_if_not_installed("tune", minimum_version = "2.0.0")
  skip_if_not_installed("mirai")
  skip_if_not_installed("finetune")
  skip_if_not_installed("lme4")
  library(tune)
  library(finetune)
  local_mirai_daemons(2)
  expect_equal(tune:::get_mirai_workers(verbose = FALSE), 2)

  small <- train_tune[seq_len(300), ]
  wf <- tuning_wf(small)
  grid <- tibble::tibble(decision_width = c(20L, 32L, 24L, 28L), attention_width = c(24L, 16L, 20L, 28L),
                         num_steps = c(4L, 5L, 4L, 6L), learn_rate = c(0.02, 0.005, 0.01, 0.03))
  set.seed(21)
  folds <- vfold_cv(small, v = 3)
  pid <- function(x) Sys.getpid()
  res <- quietly(tune_grid(wf, resamples = folds, grid = grid,
                           metrics = metric_set(accuracy, roc_auc),
                           control = control_grid(extract = pid)))
  expect_s3_class(res, "tune_results")
  expect_equal(nrow(collect_notes(res)), 0)
  m <- collect_metrics(res)
  expect_equal(nrow(m), 4 * 2)
  expect_true(all(is.finite(m$mean)))
  pids <- unique(unlist(collect_extracts(res)$.extracts))
  # every fit ran on a daemon, and both daemons worked
  expect_false(Sys.getpid() %in% pids)
  expect_length(pids, 2)

  # the same resamples sequentially give the same metrics: a fit does not
  # depend on the process or thread count it ran with
  mirai::daemons(0)
  seq_res <- quietly(tune_grid(wf, resamples = folds, grid = grid,
                               metrics = metric_set(accuracy, roc_auc)))
  expect_equal(collect_metrics(seq_res)$mean, m$mean, tolerance = 1e-6)

  local_mirai_daemons(2)
  set.seed(9)
  folds4 <- vfold_cv(small, v = 4)
  ctrl <- control_race(extract = pid, burn_in = 3)
  race <- quietly(tune_race_anova(wf, resamples = folds4, grid = grid, control = ctrl))
  expect_s3_class(race, "tune_race")
  expect_equal(nrow(collect_notes(race) %>% filter(type == "error")), 0)
  expect_true(all(is.finite(collect_metrics(race)$mean)))
  race_pids <- unique(unlist(collect_extracts(race)$.extracts))
  expect_false(Sys.getpid() %in% race_pids)
})

test_that("a fitted workflow sent to a mirai daemon predicts like in this session", {
  skip_on_cran()
  skip_if_not_installed("mirai")
  fitted_model <- blog_fit()$fitted_model
  new_rows <- test[1:40, ]
  local_mirai_daemons(1)
  m <- mirai::mirai(
    {
      suppressPackageStartupMessages(library(workflows))
      list(prob = predict(wf, new_rows, type = "prob"), pid = Sys.getpid(),
           registered = "tabnet" %in% parsnip::get_model_env()$models)
    },
    wf = fitted_model, new_rows = new_rows
  )
  res <- mirai::call_mirai(m)$data
  expect_false(mirai::is_error_value(res))
  expect_true(res$registered)
  expect_false(res$pid == Sys.getpid())
  # same machine and libraries, rows split by their count only: bit-identical
  expect_identical(res$prob, predict(fitted_model, new_rows, type = "prob"))
})

test_that("a saved workflow predicts in a fresh R session (no library(tabnetrs))", {
  skip_on_cran()
  skip_if_not_installed("callr")
  fitted_model <- blog_fit()$fitted_model
  rds <- withr::local_tempfile(fileext = ".rds")
  saveRDS(fitted_model, rds)
  new_rows <- test[1:50, ]
  expected_class <- predict(fitted_model, new_rows)
  expected_prob <- predict(fitted_model, new_rows, type = "prob")

  res <- callr::r(
    function(path, new_rows) {
      suppressPackageStartupMessages(library(workflows))
      wf <- readRDS(path)
      list(
        class = predict(wf, new_rows),
        prob = predict(wf, new_rows, type = "prob"),
        registered = "tabnet" %in% parsnip::get_model_env()$models
      )
    },
    args = list(path = rds, new_rows = new_rows),
    libpath = .libPaths()
  )
  expect_equal(res$class, expected_class)
  # Same machine, same libraries: bit-identical. Rows are split into tasks by
  # their count alone (never by the thread count, which differs between this
  # session and the fresh one), so every product has the same shape and order.
  expect_identical(res$prob, expected_prob)
  expect_true(res$registered)
})
