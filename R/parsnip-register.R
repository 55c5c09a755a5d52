# Registration of the parsnip model "tabnet" and of tabnetrs' engines.
#
# Called from .onLoad() (R/zzz.R), so the model is known in every R process
# that loads tabnetrs: tune's parallel workers (which load the packages listed
# by `set_dependency()`), and a fresh session that reads a saved workflow
# (parsnip loads the spec's dependencies before predicting). The mlverse
# package only registered on the first call of `tabnet()` (its issues #92,
# #128).
#
# Engines:
# * "torch": the name used by the mlverse package and by existing scripts
#   (`set_engine("torch", verbose = TRUE)`). Registered for tabnetrs unless
#   another package (normally mlverse {tabnet}) already owns it in this
#   session.
# * "tabnetrs": always registered, always runs tabnetrs. It is the default
#   engine of `tabnet()` when "torch" belongs to another package.

# Argument table: parsnip (main argument) name, tabnet_fit()/tabnet_config()
# name, and the dials call used when the argument is marked with tune().
tabnet_arg_table <- function() {
  own <- function(fun) list(pkg = "tabnetrs", fun = fun)
  untunable <- function(name) list(pkg = "tabnetrs", fun = "tabnet_untunable", values = name)
  list(
    list("cat_emb_dim", "cat_emb_dim", own("cat_emb_dim")),
    list("decision_width", "decision_width", own("decision_width")),
    list("attention_width", "attention_width", own("attention_width")),
    list("num_steps", "num_steps", own("num_steps")),
    list("mask_type", "mask_type", own("mask_type")),
    list("mask_topk", "mask_topk", untunable("mask_topk")),
    list("num_independent", "num_independent", own("num_independent")),
    list("num_shared", "num_shared", own("num_shared")),
    list("num_independent_decoder", "num_independent_decoder", own("num_independent_decoder")),
    list("num_shared_decoder", "num_shared_decoder", own("num_shared_decoder")),
    # paper: lambda_sparse in {0, 1e-6, ..., 0.1}
    list("penalty", "penalty", list(pkg = "dials", fun = "penalty", range = c(-6, -1))),
    list("feature_reusage", "feature_reusage", own("feature_reusage")),
    list("momentum", "momentum", own("momentum")),
    # dials' default (10..1000) makes grids far too slow for a neural network
    list("epochs", "epochs", list(pkg = "dials", fun = "epochs", range = c(10L, 100L))),
    # paper: B in 256..32768 (log2 scale, like dials::batch_size())
    list("batch_size", "batch_size", list(pkg = "dials", fun = "batch_size", range = c(8L, 15L))),
    list("virtual_batch_size", "virtual_batch_size", own("virtual_batch_size")),
    # paper: 0.005..0.025; a slightly wider log10 range
    list("learn_rate", "learn_rate", list(pkg = "dials", fun = "learn_rate", range = c(-3, -1))),
    list("optimizer", "optimizer", own("optimizer")),
    list("loss", "loss", untunable("loss")),
    list("clip_value", "clip_value", untunable("clip_value")),
    list("drop_last", "drop_last", own("drop_last")),
    list("lr_scheduler", "lr_scheduler", own("lr_scheduler")),
    # multiplicative decay factor of the step / plateau scheduler
    # (paper: 0.4..0.95)
    list("rate_decay", "lr_decay", list(pkg = "dials", fun = "rate_decay", range = c(0.4, 0.95))),
    list("rate_step_size", "step_size", list(pkg = "dials", fun = "rate_step_size")),
    list("checkpoint_epochs", "checkpoint_epochs", own("checkpoint_epochs")),
    list("verbose", "verbose", own("verbose")),
    list("importance_sample_size", "importance_sample_size", untunable("importance_sample_size")),
    list("early_stopping_monitor", "early_stopping_monitor", untunable("early_stopping_monitor")),
    list("early_stopping_tolerance", "early_stopping_tolerance", untunable("early_stopping_tolerance")),
    list("early_stopping_patience", "early_stopping_patience", list(pkg = "dials", fun = "stop_iter")),
    list("skip_importance", "skip_importance", untunable("skip_importance")),
    list("tabnet_model", "tabnet_model", untunable("tabnet_model")),
    list("from_epoch", "from_epoch", untunable("from_epoch"))
  )
}

# The main arguments of tabnet() and update.tabnet(), in their order.
tabnet_main_args <- function() {
  vapply(tabnet_arg_table(), function(arg) arg[[1]], character(1))
}

tabnet_pred_info <- function(type) {
  list(
    pre = NULL,
    post = NULL,
    func = c(fun = "predict"),
    args = list(
      object = quote(object$fit),
      new_data = quote(new_data),
      type = type
    )
  )
}

# Which package runs a given engine of model "tabnet" (NA if not registered).
tabnet_engine_owner <- function(engine) {
  env <- parsnip::get_model_env()
  if (!"tabnet" %in% env$models) {
    return(NA_character_)
  }
  fits <- env$tabnet_fit
  if (is.null(fits) || nrow(fits) == 0) {
    return(NA_character_)
  }
  rows <- fits[fits$engine == engine, , drop = FALSE]
  if (nrow(rows) == 0) {
    return(NA_character_)
  }
  pkg <- unname(rows$value[[1]]$func["pkg"])
  if (length(pkg) == 0 || is.na(pkg)) "an unknown package" else pkg
}

# The engine `tabnet()` uses when none is given.
tabnet_default_engine <- function() {
  owner <- tryCatch(tabnet_engine_owner("torch"), error = function(e) NA_character_)
  if (is.na(owner) || identical(owner, "tabnetrs")) "torch" else "tabnetrs"
}

register_tabnet_engine <- function(eng) {
  model <- "tabnet"
  modes <- c("classification", "regression")

  for (mode in modes) {
    parsnip::set_model_engine(model, mode = mode, eng = eng)
    parsnip::set_dependency(model, eng = eng, pkg = "tabnetrs", mode = mode)
  }

  for (arg in tabnet_arg_table()) {
    parsnip::set_model_arg(
      model = model,
      eng = eng,
      parsnip = arg[[1]],
      original = arg[[2]],
      func = arg[[3]],
      # tune's submodel trick: a grid over `epochs` fits the largest value
      # once (min_grid.tabnet()) and predicts the others from its checkpoints
      # (multi_predict._tabnet_fit())
      has_submodel = identical(arg[[1]], "epochs")
    )
  }

  for (mode in modes) {
    parsnip::set_fit(
      model = model,
      eng = eng,
      mode = mode,
      value = list(
        interface = "formula",
        # "weights" here is what makes parsnip accept case weights
        protect = c("formula", "data", "weights"),
        func = c(pkg = "tabnetrs", fun = "tabnet_fit"),
        defaults = list()
      )
    )
    parsnip::set_encoding(
      model = model,
      eng = eng,
      mode = mode,
      options = list(
        predictor_indicators = "none",
        compute_intercept = FALSE,
        remove_intercept = FALSE,
        allow_sparse_x = FALSE
      )
    )
  }

  parsnip::set_pred(
    model = model, eng = eng, mode = "classification", type = "class",
    value = tabnet_pred_info("class")
  )
  parsnip::set_pred(
    model = model, eng = eng, mode = "classification", type = "prob",
    value = tabnet_pred_info("prob")
  )
  parsnip::set_pred(
    model = model, eng = eng, mode = "regression", type = "numeric",
    value = tabnet_pred_info("numeric")
  )
  # predict(<model_fit>, type = "raw"): the network's pre-activation output
  for (mode in c("classification", "regression")) {
    parsnip::set_pred(
      model = model, eng = eng, mode = mode, type = "raw",
      value = tabnet_pred_info("raw")
    )
  }
  invisible(eng)
}

#' Register the `tabnet` model with parsnip
#'
#' Registers the parsnip model `"tabnet"` (classification and regression),
#' with the engine `"tabnetrs"` and, unless another package owns it already,
#' the engine `"torch"`. Both engines call [tabnet_fit()] through the formula
#' interface, accept case weights and keep factor predictors as they are (no
#' dummy variables). Safe to call more than once.
#'
#' @param quiet If `FALSE`, tell which engine runs tabnetrs when the model was
#'   already registered by another package.
#' @return The names of the engines registered for tabnetrs, invisibly.
#' @keywords internal
#' @noRd
register_tabnet_model <- function(quiet = FALSE) {
  env <- parsnip::get_model_env()
  model_exists <- "tabnet" %in% env$models

  if (!model_exists) {
    parsnip::set_new_model("tabnet")
  }
  parsnip::set_model_mode("tabnet", "classification")
  parsnip::set_model_mode("tabnet", "regression")

  torch_owner <- tabnet_engine_owner("torch")
  engines <- "tabnetrs"
  if (is.na(torch_owner) || identical(torch_owner, "tabnetrs")) {
    engines <- c("torch", engines)
  }
  for (eng in engines) {
    register_tabnet_engine(eng)
  }

  if (!quiet && !is.na(torch_owner) && !identical(torch_owner, "tabnetrs")) {
    tabnetrs_inform(c(
      "!" = "The parsnip model {.fn tabnet} was already registered by {.pkg {torch_owner}}.",
      "i" = "Engine {.val torch} keeps running {.pkg {torch_owner}}.",
      "i" = "tabnetrs registered engine {.val tabnetrs}: use {.code set_engine(\"tabnetrs\")} to run tabnetrs; {.code tabnetrs::tabnet()} uses it by default."
    ))
  }
  invisible(engines)
}
