skip_if_not_installed("parsnip")

library(parsnip)

main_arg_names <- c(
  "cat_emb_dim", "decision_width", "attention_width", "num_steps", "mask_type",
  "mask_topk", "num_independent", "num_shared", "num_independent_decoder",
  "num_shared_decoder", "penalty", "feature_reusage", "momentum", "epochs",
  "batch_size", "virtual_batch_size", "learn_rate", "optimizer", "loss",
  "clip_value", "drop_last", "lr_scheduler", "rate_decay", "rate_step_size",
  "checkpoint_epochs", "verbose", "importance_sample_size",
  "early_stopping_monitor", "early_stopping_tolerance",
  "early_stopping_patience", "skip_importance", "tabnet_model", "from_epoch"
)

# value of a spec argument, whether stored as a quosure or as a plain value
arg_val <- function(x) if (rlang::is_quosure(x)) rlang::quo_get_expr(x) else x

blog_spec <- function() {
  tabnet(epochs = 3, batch_size = 16384, decision_width = 24, attention_width = 26,
         num_steps = 5, penalty = 0.000001, virtual_batch_size = 512, momentum = 0.6,
         feature_reusage = 1.5, learn_rate = 0.02) %>%
    set_engine("torch", verbose = TRUE) %>%
    set_mode("classification")
}

test_that("the model is registered when the package loads", {
  env <- get_model_env()
  expect_true("tabnet" %in% env$models)
  engines <- env$tabnet
  for (eng in c("torch", "tabnetrs")) {
    expect_setequal(engines$mode[engines$engine == eng], c("classification", "regression"))
  }
  pkgs <- env$tabnet_pkgs
  for (eng in c("torch", "tabnetrs")) {
    rows <- pkgs[pkgs$engine == eng, ]
    expect_equal(nrow(rows), 2)
    expect_true(all(vapply(rows$pkg, function(p) "tabnetrs" %in% p, logical(1))))
  }
  fits <- env$tabnet_fit
  for (i in seq_len(nrow(fits))) {
    v <- fits$value[[i]]
    expect_equal(v$interface, "formula")
    expect_equal(v$protect, c("formula", "data", "weights"))
    expect_equal(unname(v$func), c("tabnetrs", "tabnet_fit"))
  }
  enc <- get_encoding("tabnet")
  expect_true(all(enc$predictor_indicators == "none"))
  expect_false(any(enc$compute_intercept))
  expect_false(any(enc$remove_intercept))
  preds <- env$tabnet_predict
  expect_setequal(
    paste(preds$mode, preds$type)[preds$engine == "torch"],
    c("classification class", "classification prob", "regression numeric",
      "classification raw", "regression raw")
  )
  expect_setequal(env$tabnet_args$parsnip[env$tabnet_args$engine == "torch"], main_arg_names)
  # only `epochs` is a submodel parameter (tune's submodel trick)
  expect_identical(unique(env$tabnet_args$parsnip[env$tabnet_args$has_submodel]), "epochs")
  # tabnet() and update() take the registered main arguments, in order
  expect_identical(setdiff(names(formals(tabnet)), c("mode", "engine")), main_arg_names)
  expect_identical(setdiff(names(formals(tabnetrs:::update.tabnet)), c("object", "parameters", "fresh", "...")),
                   main_arg_names)
})

test_that("registration is idempotent", {
  expect_no_error(tabnetrs:::register_tabnet_model())
  expect_no_error(tabnetrs:::register_tabnet_model())
  env <- get_model_env()
  expect_equal(sum(env$models == "tabnet"), 1)
  expect_equal(nrow(env$tabnet_fit), 4)
  expect_equal(nrow(env$tabnet_predict), 10)
})

test_that("tabnet() keeps the mlverse signature and positional order", {
  fmls <- names(formals(tabnet))
  expect_equal(fmls[1], "mode")
  expect_equal(fmls[2:34], main_arg_names)
  expect_equal(fmls[35], "engine")
  spec <- tabnet("classification", 2, 16)
  expect_equal(arg_val(spec$args$cat_emb_dim), 2)
  expect_equal(arg_val(spec$args$decision_width), 16)
  expect_equal(spec$mode, "classification")
  expect_equal(spec$engine, "torch")
  expect_s3_class(spec, c("tabnet", "model_spec"))
  expect_equal(tabnet(engine = "tabnetrs")$engine, "tabnetrs")
  expect_error(tabnet(mode = "bogus"), "bogus.*not a known mode")
})

test_that("case weights are allowed", {
  expect_true(parsnip:::case_weights_allowed(blog_spec()))
  expect_true(parsnip:::case_weights_allowed(blog_spec() %>% set_engine("tabnetrs")))
})

test_that("print uses the TabNet header", {
  expect_output(print(blog_spec()), "TabNet Model Specification \\(classification\\)")
  expect_output(print(blog_spec()), "Computational engine: torch")
})

test_that("translate() maps names and passes engine arguments", {
  spec <- tabnet(epochs = 2, rate_decay = 0.5, rate_step_size = 3, lr_scheduler = "step") %>%
    set_engine("torch", valid_split = 0.2, device = "cpu") %>%
    set_mode("regression")
  tr <- translate(spec)
  args <- tr$method$fit$args
  expect_equal(rlang::eval_tidy(args$lr_decay), 0.5)
  expect_equal(rlang::eval_tidy(args$step_size), 3)
  expect_null(args$rate_decay)
  expect_null(args$rate_step_size)
  expect_equal(rlang::eval_tidy(args$valid_split), 0.2)
  expect_equal(rlang::eval_tidy(args$device), "cpu")
  expect_equal(unname(tr$method$fit$func), c("tabnetrs", "tabnet_fit"))
  expect_true("tabnetrs" %in% tr$method$libs)
})

test_that("required_pkgs() lists tabnetrs", {
  expect_true("tabnetrs" %in% generics::required_pkgs(blog_spec()))
})

test_that("update() keeps every main and engine argument", {
  spec <- tabnet(epochs = 3, decision_width = tune::tune(), num_steps = 4,
                 rate_decay = 0.5, skip_importance = TRUE) %>%
    set_engine("torch", verbose = TRUE, valid_split = 0.2) %>%
    set_mode("classification")
  up <- update(spec, decision_width = 16, learn_rate = 0.01)
  expect_s3_class(up, "tabnet")
  expect_equal(arg_val(up$args$decision_width), 16)
  expect_equal(arg_val(up$args$learn_rate), 0.01)
  expect_equal(arg_val(up$args$epochs), 3)
  expect_equal(arg_val(up$args$num_steps), 4)
  expect_equal(arg_val(up$args$rate_decay), 0.5)
  expect_equal(arg_val(up$args$skip_importance), TRUE)
  expect_equal(arg_val(up$eng_args$verbose), TRUE)
  expect_equal(arg_val(up$eng_args$valid_split), 0.2)
  expect_equal(up$mode, "classification")
  expect_equal(up$engine, "torch")

  # parameters as a tibble (what select_best() returns)
  up2 <- update(spec, parameters = tibble::tibble(decision_width = 32L))
  expect_equal(arg_val(up2$args$decision_width), 32L)
  expect_equal(arg_val(up2$eng_args$valid_split), 0.2)

  # engine arguments can be updated too
  up3 <- update(spec, valid_split = 0.1)
  expect_equal(arg_val(up3$eng_args$valid_split), 0.1)
  expect_equal(arg_val(up3$eng_args$verbose), TRUE)

  # fresh = TRUE replaces everything
  up4 <- update(spec, epochs = 7, fresh = TRUE)
  expect_equal(arg_val(up4$args$epochs), 7)
  expect_null(arg_val(up4$args$num_steps))
})

test_that("finalize_workflow() keeps engine and main arguments", {
  skip_if_not_installed("tune")
  skip_if_not_installed("workflows")
  library(workflows)
  spec <- tabnet(epochs = 3, penalty = 1e-6, decision_width = tune::tune(),
                 attention_width = tune::tune(), num_steps = tune::tune(),
                 learn_rate = tune::tune()) %>%
    set_engine("torch", verbose = TRUE, valid_split = 0.2) %>%
    set_mode("classification")
  wf <- workflow() %>% add_model(spec) %>% add_formula(Species ~ .)
  best <- tibble::tibble(decision_width = 24L, attention_width = 26L,
                         num_steps = 5L, learn_rate = 0.02, .config = "pre0_mod1_post0")
  final <- tune::finalize_workflow(wf, best)
  fspec <- extract_spec_parsnip(final)
  expect_equal(arg_val(fspec$args$decision_width), 24L)
  expect_equal(arg_val(fspec$args$attention_width), 26L)
  expect_equal(arg_val(fspec$args$num_steps), 5L)
  expect_equal(arg_val(fspec$args$learn_rate), 0.02)
  expect_equal(arg_val(fspec$args$epochs), 3)
  expect_equal(arg_val(fspec$args$penalty), 1e-6)
  expect_equal(arg_val(fspec$eng_args$verbose), TRUE)
  expect_equal(arg_val(fspec$eng_args$valid_split), 0.2)
  expect_equal(nrow(tune::tune_args(final)), 0)

  fmod <- tune::finalize_model(spec, best)
  expect_equal(arg_val(fmod$eng_args$valid_split), 0.2)
})

test_that("tunable() lists the parameters with working dials calls", {
  skip_if_not_installed("tune")
  spec <- tabnet() %>% set_mode("classification")
  tn <- generics::tunable(spec)
  expect_true(all(main_arg_names %in% tn$name))
  info <- tn$call_info[tn$name == "decision_width"][[1]]
  expect_equal(info$pkg, "tabnetrs")
  expect_equal(info$fun, "decision_width")
  info <- tn$call_info[tn$name == "learn_rate"][[1]]
  expect_equal(info$pkg, "dials")
  info <- tn$call_info[tn$name == "rate_decay"][[1]]
  expect_equal(c(info$pkg, info$fun), c("dials", "rate_decay"))

  tunable_args <- c(
    "cat_emb_dim", "decision_width", "attention_width", "num_steps", "mask_type",
    "num_independent", "num_shared", "num_independent_decoder", "num_shared_decoder",
    "penalty", "feature_reusage", "momentum", "epochs", "batch_size",
    "virtual_batch_size", "learn_rate", "drop_last", "lr_scheduler", "rate_decay",
    "rate_step_size", "early_stopping_patience"
  )
  all_tune <- rlang::set_names(rep(list(tune::tune()), length(tunable_args)), tunable_args)
  spec_all <- rlang::exec(tabnet, mode = "classification", !!!all_tune)
  ps <- hardhat::extract_parameter_set_dials(spec_all)
  expect_setequal(ps$id, tunable_args)
  expect_false(any(dials::has_unknowns(ps$object)))
  set.seed(1)
  g <- dials::grid_random(ps, size = 5)
  expect_equal(nrow(g), 5)
  expect_true(all(g$batch_size >= 256 & g$batch_size <= 32768))
  expect_true(all(g$learn_rate >= 1e-3 & g$learn_rate <= 0.1))
  expect_true(all(g$epochs >= 10 & g$epochs <= 100))
})

test_that("tuning a workflow's tabnet: parameter set and grids (blog post)", {
  skip_if_not_installed("tune")
  skip_if_not_installed("workflows")
  skip_if_not_installed("recipes")
  library(workflows)
  df <- data.frame(class = factor(rep(c("0", "1"), 10)), a = rnorm(20), b = rnorm(20))
  mod <- tabnet(epochs = 1, batch_size = 16384, decision_width = tune::tune(),
                attention_width = tune::tune(), num_steps = tune::tune(),
                penalty = 0.000001, virtual_batch_size = 512, momentum = 0.6,
                feature_reusage = 1.5, learn_rate = tune::tune()) %>%
    set_engine("torch", verbose = TRUE) %>%
    set_mode("classification")
  wf <- workflow() %>%
    add_model(mod) %>%
    add_recipe(recipes::recipe(class ~ ., df))

  ps <- hardhat::extract_parameter_set_dials(wf)
  expect_setequal(ps$id, c("decision_width", "attention_width", "num_steps", "learn_rate"))

  ps <- update(
    ps,
    decision_width = decision_width(range = c(20, 40)),
    attention_width = attention_width(range = c(20, 40)),
    num_steps = num_steps(range = c(4, 6)),
    learn_rate = dials::learn_rate(range = c(-2.5, -1))
  )
  g <- dials::grid_space_filling(ps, size = 8)
  expect_equal(nrow(g), 8)
  expect_true(all(g$decision_width >= 20 & g$decision_width <= 40))
  expect_true(all(g$num_steps %in% 4:6))
  expect_true(all(g$learn_rate >= 10^-2.5 & g$learn_rate <= 0.1))

  set.seed(2)
  g2 <- suppressWarnings(dials::grid_max_entropy(ps, size = 8))
  expect_equal(nrow(g2), 8)
  expect_true(all(g2$attention_width >= 20 & g2$attention_width <= 40))

  # default ranges
  g3 <- dials::grid_space_filling(hardhat::extract_parameter_set_dials(wf), size = 8)
  expect_true(all(g3$decision_width >= 8 & g3$decision_width <= 64))
  expect_true(all(g3$num_steps >= 3 & g3$num_steps <= 10))
})

test_that("marking a non-tunable argument with tune() gives a clear error", {
  expect_error(
    hardhat::extract_parameter_set_dials(tabnet(loss = tune::tune())),
    "cannot be used as a .* parameter"
  )
  expect_error(
    hardhat::extract_parameter_set_dials(tabnet(checkpoint_epochs = tune::tune())),
    "cannot be used as a .* parameter"
  )
})

test_that("multi_predict has a method for tabnet fits", {
  expect_true(is.function(utils::getS3method("multi_predict", "_tabnet_fit", envir = asNamespace("parsnip"))))
})

test_that("a model registered by another package first is left alone", {
  skip_if_not_installed("callr")
  skip_on_cran()
  res <- callr::r(function() {
    suppressPackageStartupMessages(library(parsnip))
    # what mlverse {tabnet} registers on its first tabnet() call
    set_new_model("tabnet")
    set_model_mode("tabnet", "classification")
    set_model_engine("tabnet", "classification", "torch")
    set_dependency("tabnet", "torch", pkg = "stats")
    set_fit("tabnet", eng = "torch", mode = "classification", value = list(
      interface = "formula", protect = c("formula", "data"),
      func = c(pkg = "stats", fun = "glm"), defaults = list()
    ))
    msg <- character()
    withCallingHandlers(
      library(tabnetrs),
      message = function(m) {
        msg <<- c(msg, conditionMessage(m))
        invokeRestart("muffleMessage")
      }
    )
    env <- get_model_env()
    list(
      msg = paste(msg, collapse = "\n"),
      torch_pkg = unname(env$tabnet_fit$value[[which(env$tabnet_fit$engine == "torch")]]$func["pkg"]),
      engines = unique(env$tabnet$engine),
      default_engine = tabnetrs::tabnet()$engine
    )
  }, env = c(callr::rcmd_safe_env(), R_LIBS = paste(.libPaths(), collapse = .Platform$path.sep)))
  expect_match(res$msg, "already registered")
  expect_match(res$msg, "tabnetrs")
  expect_equal(res$torch_pkg, "stats")
  expect_setequal(res$engines, c("torch", "tabnetrs"))
  expect_equal(res$default_engine, "tabnetrs")
})
