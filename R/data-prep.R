# From hardhat's molded predictors / outcomes to the Rust data set.

# Which predictors are numeric and which categorical, with their levels.
predictor_layout <- function(predictors) {
  if (!is.data.frame(predictors)) cli::cli_abort("Predictors must be a data frame.", call = NULL)
  if (ncol(predictors) == 0) cli::cli_abort("The model needs at least one predictor column.", call = NULL)
  ok <- vapply(predictors, function(x) is.numeric(x) || is.factor(x) || is.logical(x), logical(1))
  if (!all(ok)) {
    bad <- names(predictors)[!ok]
    cls <- vapply(predictors[!ok], function(x) class(x)[[1]], character(1))
    cli::cli_abort(c("Predictors must be numeric or factors.",
                     x = "{cli::qty(length(bad))}Column{?s} {.field {bad}} {?is/are} of class {.cls {unique(cls)}}.",
                     i = "Convert character columns to factors, e.g. with {.code recipes::step_string2factor()}."),
                   call = NULL)
  }
  is_cat <- vapply(predictors, is.factor, logical(1))
  list(
    names = names(predictors),
    num = which(!is_cat),
    cat = which(is_cat),
    levels = lapply(predictors[is_cat], levels)
  )
}

# Outcome description: task, output sizes, levels.
outcome_layout <- function(outcomes) {
  if (is.null(outcomes) || ncol(outcomes) == 0) cli::cli_abort("No outcome was given.", call = NULL)
  for (nm in names(outcomes)) {
    if (anyNA(outcomes[[nm]])) {
      cli::cli_abort("Found missing values in the {.field {nm}} outcome column.", call = NULL)
    }
  }
  is_fac <- vapply(outcomes, is.factor, logical(1))
  is_num <- vapply(outcomes, is.numeric, logical(1))
  if (any(!(is_fac | is_num))) {
    bad <- names(outcomes)[!(is_fac | is_num)]
    cli::cli_abort("The outcome {.field {bad}} must be a factor (classification) or numeric (regression).", call = NULL)
  }
  if (any(is_fac) && any(is_num)) {
    cli::cli_abort("Mixed multi-outcome type: outcomes must be all factors or all numeric.", call = NULL)
  }
  if (all(is_num)) {
    bad <- names(outcomes)[vapply(outcomes, function(y) any(is.infinite(y)), logical(1))]
    if (length(bad)) cli::cli_abort("The outcome {.field {bad}} contains infinite values.", call = NULL)
    return(list(task = "regression", names = names(outcomes), dims = rep(1L, ncol(outcomes)), levels = NULL))
  }
  levels <- lapply(outcomes, levels)
  small <- vapply(levels, length, integer(1)) < 2
  if (any(small)) {
    cli::cli_abort("The outcome {.field {names(outcomes)[small]}} needs at least two levels.", call = NULL)
  }
  list(task = "classification", names = names(outcomes), dims = lengths(levels, use.names = FALSE),
       levels = levels)
}

# The network configuration the Rust core reads (JSON).
net_config <- function(config, layout, outcome) {
  n_cat <- length(layout$cat)
  emb <- config$cat_emb_dim
  if (n_cat > 0 && length(emb) != 1 && length(emb) != n_cat) {
    cli::cli_abort(c("{.arg cat_emb_dim} has length {length(emb)}, but the number of categorical predictors is {n_cat}.",
                     i = "Give one width, or one per categorical predictor."), call = NULL)
  }
  list(
    num_cols = as.integer(layout$num - 1L),
    cat_cols = as.integer(layout$cat - 1L),
    cat_levels = as.integer(lengths(layout$levels, use.names = FALSE)),
    cat_emb_dims = as.integer(if (n_cat == 0) integer() else rep_len(emb, n_cat)),
    output_dims = as.integer(outcome$dims),
    task = outcome$task,
    n_d = config$n_d, n_a = config$n_a, n_steps = config$n_steps, gamma = config$gamma,
    n_independent = config$n_independent, n_shared = config$n_shared,
    n_independent_decoder = config$n_independent_decoder, n_shared_decoder = config$n_shared_decoder,
    virtual_batch_size = config$virtual_batch_size, momentum = config$momentum,
    epsilon = 1e-15, mask_type = config$mask_type
  )
}

config_json <- function(x) {
  jsonlite::toJSON(x, auto_unbox = TRUE, digits = NA)
}

# JSON arrays must stay arrays even with one element.
net_config_json <- function(net) {
  arrays <- c("num_cols", "cat_cols", "cat_levels", "cat_emb_dims", "output_dims")
  net[arrays] <- lapply(net[arrays], I)
  as.character(config_json(net))
}

# Factor codes for the core: 1..L for training levels, NA stays NA (missing),
# 0 for a level unseen at fit time (the unknown slot).
factor_codes <- function(x, levels, unseen = NULL) {
  codes <- match(as.character(x), levels)
  if (!is.null(unseen)) codes[unseen] <- 0L
  codes
}

# Builds the Rust data set for `model_ptr` from predictors (and outcomes).
rust_dataset <- function(model_ptr, predictors, layout, outcome = NULL, outcomes = NULL,
                         weights = NULL, unseen = NULL) {
  if (nrow(predictors) == 0) cli::cli_abort("The data has zero rows.", call = NULL)
  num <- lapply(predictors[layout$num], function(x) {
    if (is.double(x) && is.null(attributes(x))) x else as.double(x)
  })
  cat <- Map(function(col, lv) factor_codes(predictors[[col]], lv, unseen[[layout$names[[col]]]]),
             layout$cat, layout$levels)
  y_class <- NULL
  y_value <- NULL
  if (!is.null(outcomes)) {
    if (outcome$task == "classification") {
      y_class <- Map(function(y, lv) match(as.character(y), lv) - 1L, outcomes, outcome$levels)
    } else {
      y_value <- lapply(outcomes, as.double)
    }
  }
  rs_dataset(model_ptr, unname(num), unname(cat), layout$names, y_class = y_class, y_value = y_value,
             weights = if (is.null(weights)) NULL else as.double(weights))
}

# Case weights from parsnip / hardhat / plain numerics, validated.
resolve_weights <- function(weights, n) {
  if (is.null(weights)) return(NULL)
  if (inherits(weights, "hardhat_case_weights")) weights <- as.double(unclass(weights))
  if (!is.numeric(weights)) cli::cli_abort("{.arg weights} must be numeric case weights.", call = NULL)
  if (length(weights) != n) {
    cli::cli_abort("{.arg weights} has length {length(weights)}, but the data has {n} rows.", call = NULL)
  }
  if (anyNA(weights) || any(!is.finite(weights)) || any(weights < 0)) {
    cli::cli_abort("{.arg weights} must be finite and non-negative.", call = NULL)
  }
  as.double(weights)
}
