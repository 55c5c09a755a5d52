# From hardhat's molded predictors / outcomes to the Rust data set.

# Which predictors are numeric and which categorical, with their levels.
predictor_layout <- function(predictors, call = rlang::caller_env()) {
  if (!is.data.frame(predictors)) abort_input("Predictors must be a data frame, not {.obj_type_friendly {predictors}}.", call = call)
  if (ncol(predictors) == 0) abort_input("The model needs at least one predictor column.", call = call)
  ok <- vapply(predictors, function(x) is.numeric(x) || is.factor(x) || is.logical(x), logical(1))
  if (!all(ok)) {
    bad <- names(predictors)[!ok]
    cls <- vapply(predictors[!ok], function(x) class(x)[[1]], character(1))
    abort_input(c("Predictors must be numeric or factors.",
                  x = "{cli::qty(length(bad))}Column{?s} {.field {bad}} {?is/are} of class {.cls {unique(cls)}}.",
                  i = "Convert character columns to factors, e.g. with {.code recipes::step_string2factor()}."), call = call)
  }
  is_cat <- vapply(predictors, is.factor, logical(1))
  list(
    names = names(predictors),
    num = which(!is_cat),
    cat = which(is_cat),
    levels = lapply(predictors[is_cat], levels)
  )
}

# Outcome description: task, output sizes, levels; with `hierarchical`, the
# factors are the levels of a tree (node_to_df()) and `parent` gives the
# parent class of every class (outcome_hierarchy()).
outcome_layout <- function(outcomes, hierarchical = FALSE, call = rlang::caller_env()) {
  if (is.null(outcomes) || ncol(outcomes) == 0) abort_input("No outcome was given.", call = call)
  for (nm in names(outcomes)) {
    if (anyNA(outcomes[[nm]])) {
      abort_input("Found missing values in the {.field {nm}} outcome column ({sum(is.na(outcomes[[nm]]))} row{?s}).", call = call)
    }
  }
  is_fac <- vapply(outcomes, is.factor, logical(1))
  is_num <- vapply(outcomes, is.numeric, logical(1))
  if (any(!(is_fac | is_num))) {
    bad <- names(outcomes)[!(is_fac | is_num)][[1]]
    abort_bad_outcome(outcomes[[bad]], bad, call = call)
  }
  if (any(is_fac) && any(is_num)) {
    abort_input(c("Mixed multi-outcome type: outcomes must be all factors or all numeric.",
                  i = "Factor: {.field {names(outcomes)[is_fac]}}; numeric: {.field {names(outcomes)[is_num]}}."), call = call)
  }
  if (all(is_num)) {
    bad <- names(outcomes)[vapply(outcomes, function(y) any(is.infinite(y)), logical(1))]
    if (length(bad)) abort_input("The outcome {.field {bad}} contains infinite values.", call = call)
    return(list(task = "regression", names = names(outcomes), dims = rep(1L, ncol(outcomes)), levels = NULL))
  }
  levels <- lapply(outcomes, levels)
  if (hierarchical) {
    return(list(task = "hierarchical", names = names(outcomes), dims = lengths(levels, use.names = FALSE),
                levels = levels, parent = outcome_hierarchy(outcomes)))
  }
  small <- vapply(levels, length, integer(1)) < 2
  if (any(small)) {
    abort_input("The outcome {.field {names(outcomes)[small]}} needs at least two levels.", call = call)
  }
  list(task = "classification", names = names(outcomes), dims = lengths(levels, use.names = FALSE),
       levels = levels)
}

# The network configuration the Rust core reads (JSON).
net_config <- function(config, layout, outcome, call = rlang::caller_env()) {
  n_cat <- length(layout$cat)
  emb <- config$cat_emb_dim
  if (n_cat > 0 && length(emb) != 1 && length(emb) != n_cat) {
    abort_config(c("{.arg cat_emb_dim} has length {length(emb)}, but the number of categorical predictors is {n_cat}.",
                   i = "Give one width, or one per categorical predictor."), call = call)
  }
  net <- list(
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
    # configurations saved before these two existed had their defaults
    epsilon = config$epsilon %||% 1e-15, mask_type = config$mask_type,
    # left out without groups: the configuration (and the model digest) of
    # an ungrouped model is what it was before groups existed
    grouped_features = resolve_groups(config$grouped_features, layout, call = call)
  )
  # left out at the default: the configuration (and digest) of such a model
  # is what it was before the option existed
  if (!is.null(config$init) && config$init != "pytorch_tabnet") net$init <- config$init
  if (identical(config$loss, "aum")) net$loss <- "aum"
  # each node's parent (JSON null at the top level); other tasks have none
  if (identical(outcome$task, "hierarchical")) {
    net$parent <- lapply(outcome$parent, function(p) if (is.na(p)) NA else as.integer(p))
  }
  net
}

config_json <- function(x) {
  jsonlite::toJSON(x, auto_unbox = TRUE, digits = NA)
}

# JSON arrays must stay arrays even with one element.
net_config_json <- function(net) {
  arrays <- c("num_cols", "cat_cols", "cat_levels", "cat_emb_dims", "output_dims")
  net[arrays] <- lapply(net[arrays], I)
  if (length(net$grouped_features)) {
    net$grouped_features <- lapply(unname(net$grouped_features), I)
  } else {
    net$grouped_features <- NULL
  }
  as.character(config_json(net))
}

# Factor codes for the core: 1..L for training levels, NA stays NA (missing;
# a level unseen at fit time arrives as NA, see forge_predictors()).
factor_codes <- function(x, levels) {
  match(as.character(x), levels)
}

# Builds the Rust data set for `model_ptr` from predictors (and outcomes).
rust_dataset <- function(model_ptr, predictors, layout, outcome = NULL, outcomes = NULL,
                         weights = NULL, call = rlang::caller_env()) {
  if (nrow(predictors) == 0) abort_input("The data has zero rows.", call = call)
  # columns are picked by name: a model fine-tuned from a pretraining keeps the
  # pretrained column order, which its own blueprint need not follow
  missing_cols <- setdiff(layout$names, names(predictors))
  if (length(missing_cols)) {
    labels <- predictor_labels(missing_cols)
    abort_input("{cli::qty(length(labels))}The predictor column{?s} {.field {labels}} {?is/are} missing from the data.", call = call)
  }
  num <- lapply(layout$names[layout$num], function(nm) {
    x <- predictors[[nm]]
    if (is.double(x) && is.null(attributes(x))) x else as.double(x)
  })
  cat <- Map(function(nm, lv) factor_codes(predictors[[nm]], lv),
             layout$names[layout$cat], layout$levels)
  y_class <- NULL
  y_value <- NULL
  if (!is.null(outcomes)) {
    if (outcome$task %in% c("classification", "hierarchical")) {
      y_class <- Map(function(y, lv) match(as.character(y), lv) - 1L, outcomes, outcome$levels)
    } else {
      y_value <- lapply(outcomes, as.double)
    }
  }
  rs_dataset(model_ptr, unname(num), unname(cat), layout$names, y_class = y_class, y_value = y_value,
             weights = if (is.null(weights)) NULL else as.double(weights))
}

# Case weights from parsnip / hardhat / plain numerics, validated.
resolve_weights <- function(weights, n, call = rlang::caller_env()) {
  if (is.null(weights)) return(NULL)
  if (inherits(weights, "hardhat_case_weights")) weights <- as.double(unclass(weights))
  if (!is.numeric(weights)) abort_input("{.arg weights} must be numeric case weights, not {.obj_type_friendly {weights}}.", call = call)
  if (length(weights) != n) {
    abort_input("{.arg weights} has length {length(weights)}, but the data has {n} rows.", call = call)
  }
  bad <- which(is.na(weights) | !is.finite(weights) | weights < 0)
  if (length(bad)) {
    value <- format_value(weights[[bad[[1]]]])
    abort_input("{.arg weights} must be finite and non-negative; element {bad[[1]]} is {value}.", call = call)
  }
  as.double(weights)
}

# The outcome `y` of the data frame / matrix methods, checked before hardhat
# sees it: a factor or numeric vector, a numeric matrix, or a data frame of
# such columns, with one value per row of `x` (`n` rows).
check_outcome_arg <- function(y, n, call = rlang::caller_env()) {
  if (is.data.frame(y)) {
    for (nm in names(y)) {
      col <- y[[nm]]
      if (!is.factor(col) && !(is.numeric(col) && is.null(dim(col)))) abort_bad_outcome(col, nm, call = call)
    }
  } else if (is.matrix(y)) {
    if (!is.numeric(y)) abort_bad_outcome(y, call = call)
  } else if (!is.factor(y) && !(is.numeric(y) && is.null(dim(y)))) {
    abort_bad_outcome(y, call = call)
  }
  if (NROW(y) != n) {
    len <- NROW(y)
    abort_input(if (is.data.frame(y) || is.matrix(y)) "{.arg y} has {len} rows, but {.arg x} has {n} rows: they must match."
                else "{.arg y} has {len} values, but {.arg x} has {n} rows: they must match.", call = call)
  }
  invisible(y)
}

# An outcome that is neither a factor nor numeric.
abort_bad_outcome <- function(y, name = NULL, call = rlang::caller_env()) {
  msg <- if (is.null(name)) {
    "The outcome must be a factor (classification) or numeric (regression), not {.obj_type_friendly {y}}."
  } else {
    "The outcome column {.field {name}} must be a factor (classification) or numeric (regression), not {.obj_type_friendly {y}}."
  }
  hint <- if (is.character(y) || is.logical(y)) {
    "For classification, convert it with {.code factor()}."
  } else {
    "For classification use a factor, for regression a numeric vector."
  }
  abort_input(c(msg, i = hint), call = call)
}

# Predictor column names must be unique (else prediction can never find them).
check_predictor_names <- function(nms, arg, call = rlang::caller_env()) {
  if (is.null(nms)) return(invisible())
  dups <- unique(nms[duplicated(nms)])
  if (length(dups)) {
    abort_input(c("The column names of {.arg {arg}} must be unique.",
                  x = "{cli::qty(length(dups))}{?The name/The names} {.val {dups}} {?is/are} used more than once."), call = call)
  }
  invisible()
}

# Fine-tuning or continuing `tabnet_model`: the new predictors must be the
# model's, compared by name (as users see them) and factor levels as sets. They
# are put in the model's column order, which its weights depend on; factor
# levels keep the model's order too (codes are matched by level name). Returns
# list(predictors, layout): the reordered predictors and their layout.
align_predictors <- function(predictors, old_layout, call = rlang::caller_env()) {
  new_labels <- predictor_labels(names(predictors))
  old_labels <- predictor_labels(old_layout$names)
  missing_cols <- setdiff(old_labels, new_labels)
  extra_cols <- setdiff(new_labels, old_labels)
  if (length(missing_cols) || length(extra_cols)) {
    abort_input(c("Model dimensions don't match: the predictors differ from those {.arg tabnet_model} was trained on.",
                  x = if (length(missing_cols)) "{cli::qty(length(missing_cols))}Missing predictor{?s}: {.field {missing_cols}}.",
                  x = if (length(extra_cols)) "{cli::qty(length(extra_cols))}Predictor{?s} {.field {extra_cols}} {?was/were} not in {.arg tabnet_model}."), call = call)
  }
  predictors <- predictors[match(old_labels, new_labels)]
  layout <- predictor_layout(predictors, call = call)
  old_cat <- old_labels[old_layout$cat]
  new_cat <- old_labels[layout$cat]
  if (!identical(old_cat, new_cat)) {
    bad <- union(setdiff(old_cat, new_cat), setdiff(new_cat, old_cat))
    abort_input(c("Model dimensions don't match: predictor types differ from those {.arg tabnet_model} was trained on.",
                  x = "{cli::qty(length(bad))}Column{?s} {.field {bad}} changed between factor and numeric."), call = call)
  }
  for (k in seq_along(old_cat)) {
    was <- old_layout$levels[[k]]
    now <- layout$levels[[k]]
    if (!setequal(was, now) || length(was) != length(now)) {
      col <- old_cat[[k]]
      lost <- setdiff(was, now)
      added <- setdiff(now, was)
      abort_input(c("Model dimensions don't match: the levels of factor {.field {col}} differ from those {.arg tabnet_model} was trained on.",
                    x = if (length(lost)) "{cli::qty(length(lost))}Level{?s} {.val {lost}} {?is/are} missing.",
                    x = if (length(added)) "{cli::qty(length(added))}Level{?s} {.val {added}} {?is/are} new.",
                    i = "Give {.field {col}} the levels {.val {was}}."), call = call)
    }
  }
  layout$levels <- stats::setNames(unname(old_layout$levels), names(layout$levels))
  list(predictors = predictors, layout = layout)
}

# Predictor names as users see them: hardhat's formula blueprint keeps the
# backticks of non-syntactic names (`my var`) in its column names.
predictor_labels <- function(nms) {
  sub("^`(.*)`$", "\\1", nms)
}
