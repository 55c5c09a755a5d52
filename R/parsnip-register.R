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
# Derived from tabnet_settings() (R/settings.R), in the order of tabnet()'s
# arguments, then the two tabnet_fit() arguments that are not settings.
tabnet_arg_table <- function() {
  own <- function(fun) list(pkg = "tabnetrs", fun = fun)
  untunable <- function(name) list(pkg = "tabnetrs", fun = "tabnet_untunable", values = name)
  s <- Filter(function(x) !is.na(x$parsnip), tabnet_settings())
  s <- s[order(match(vapply(s, `[[`, "", "parsnip"), names(formals(tabnet))))]
  rows <- lapply(s, function(x) {
    func <- switch(if (is.character(x$tune)) x$tune else "dials",
                   own = own(x$parsnip), untunable = untunable(x$parsnip), dials = x$tune)
    list(x$parsnip, x$name, func)
  })
  c(unname(rows), list(
    list("tabnet_model", "tabnet_model", untunable("tabnet_model")),
    list("from_epoch", "from_epoch", untunable("from_epoch"))
  ))
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
