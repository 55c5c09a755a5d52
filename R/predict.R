#' Predict from a TabNet model
#'
#' Prediction runs on the session's threads (the `tabnetrs.threads` option,
#' else the `TABNETRS_THREADS` environment variable, else the default; see
#' `num_threads` in [tabnet_config()]), never on the `num_threads` a saved model
#' was trained with. The same holds for [tabnet_explain()] and
#' [tabnet_importance()].
#'
#' @param object A `tabnet_fit`.
#' @param new_data A data frame (or matrix) with the predictors used at fit
#'   time, or [tabnet_arrow()] data (predicted record batch by record batch); for a model fitted on a `data.tree` `Node`, a `Node` of the same
#'   shape or the predictors `node_to_df(<Node>)$x`.
#' @param type `"class"` or `"prob"` for factor outcomes, `"numeric"` for numeric
#'   ones, `"raw"` for any: the network's output before the softmax (or the
#'   hierarchy's sigmoids), the logits that [tabnet_shap()] with
#'   `type = "raw"` and the MAD relevance of [tabnet_importance()] explain.
#'   `NULL` picks `"class"` or `"numeric"`. Any other value is an error.
#' @param ... Not used: an argument given here (a misspelt `type =`, say) is
#'   an error of class `tabnetrs_error_unused_argument`.
#' @param epoch Predict with the weights checkpointed at this epoch.
#' @return A tibble with one row per row of `new_data`: `.pred_class`,
#'   `.pred_<level>` columns or `.pred` (hardhat's standard names; with several
#'   outcomes, one column or column group per outcome).
#'
#'   A hierarchical model (fitted on a `Node`) gives one column per outcome
#'   level (with a single outcome level, the columns of a single-outcome
#'   classifier: `.pred_class`, or `.pred_<class>` for `type = "prob"`, each
#'   node's own probability): with `type = "class"`,
#'   `.pred_class_level_2`, `.pred_class_level_3`, ... (factors), chosen
#'   top-down: the most probable class of the top level, then at each level
#'   the most probable child of the class chosen above, so a predicted path is
#'   always a path of the tree. With `type = "prob"`, `.pred_level_2`, ...,
#'   each a tibble of `.pred_<class>` columns: the constrained probability of
#'   each node (never below any of its descendants'; they need not sum to 1
#'   over a level).
#'
#'   With `type = "raw"`: for one factor outcome, `.pred_raw_<level>` columns
#'   (one logit per class, in level order; a binary outcome has two, as the
#'   network has two outputs); for several outcomes or a hierarchy, one such
#'   tibble per outcome, named `.pred_raw_<outcome>`; for regression the
#'   numeric prediction (`.pred`, as `type = "numeric"`: the network's
#'   output is the value).
#' @export
predict.tabnet_fit <- function(object, new_data, type = NULL, ..., epoch = NULL) {
  check_dots_unused(..., fn_args = c("new_data", "type", "epoch"))
  if (inherits(new_data, "tabnet_arrow")) return(arrow_predict(object, new_data, type, epoch))
  # (verifies the object first: a damaged one is the model's error)
  model <- live_network(object, epoch)
  outcome <- object$fit$outcome
  type <- check_pred_type(type, outcome$task)
  ds <- forge_dataset(object, new_data, model)
  if (type == "raw") {
    raw <- rs_predict_raw(model, ds, inference_batch_size)
    # (NULL: Ctrl-C seen by Rust between slices of rows)
    if (is.null(raw)) rlang::interrupt()
    return(spruce_raw(raw, outcome))
  }
  out <- rs_predict(model, ds, inference_batch_size)
  # NULL: Ctrl-C, seen between slices of rows (about every 0.1 s)
  if (is.null(out)) rlang::interrupt()
  spruce_predictions(out, type, outcome)
}

# Rows per batch of every inference pass (prediction, explanation,
# importances, validation loss): large batches, as no gradient is kept.
inference_batch_size <- 65536

# hardhat::forge(): a factor level unseen at fit time becomes NA (hardhat's
# default), so it is handled as a missing value, with a warning naming the
# columns. A workflow does the same (its blueprint, made by workflows from
# parsnip's encoding, does not allow novel levels and turns them into NA
# before tabnetrs sees the data), and so does the tabnet package: the same row
# gets the same prediction through every path.
forge_predictors <- function(object, new_data, outcomes = FALSE) {
  if (is.matrix(new_data)) new_data <- as.data.frame(new_data)
  new_data <- node_new_data(new_data)
  if (!is.data.frame(new_data)) abort_input("{.arg new_data} must be a data frame, not {.obj_type_friendly {new_data}}.")
  check_predictor_names(names(new_data), "new_data")
  layout <- object$fit$layout
  cat_names <- layout$names[layout$cat]
  was_na <- lapply(stats::setNames(nm = intersect(cat_names, names(new_data))), function(nm) is.na(new_data[[nm]]))
  forged <- withCallingHandlers(
    tryCatch(
      hardhat::forge(new_data, object$blueprint, outcomes = outcomes),
      error = function(e) {
        abort_input("{.arg new_data} does not match the data the model was fitted on.", parent = e)
      }
    ),
    warning = function(w) {
      if (grepl("[Nn]ovel", conditionMessage(w))) invokeRestart("muffleWarning")
    }
  )
  predictors <- forged$predictors
  unseen <- lapply(stats::setNames(nm = names(was_na)), function(nm) is.na(predictors[[nm]]) & !was_na[[nm]])
  hits <- vapply(unseen, sum, integer(1))
  if (any(hits > 0)) {
    tabnetrs_warn(c("Factor levels not seen at fit time in {.field {names(hits)[hits > 0]}}.",
                    i = "They are handled as missing values (as through a workflow)."))
  }
  list(predictors = predictors, outcomes = forged$outcomes)
}

# The Rust data set for `new_data`; with `outcomes = TRUE` it also carries the
# outcome columns (needed by metric-based importances).
#
# The threads are the session's (option, environment variable or default):
# never the `num_threads` a saved model was trained with.
forge_dataset <- function(object, new_data, model, outcomes = FALSE) {
  use_threads()
  forged <- forge_predictors(object, new_data, outcomes)
  layout <- object$fit$layout
  layout_check <- predictor_layout(forged$predictors)
  now_cat <- layout_check$names[layout_check$cat]
  was_cat <- layout$names[layout$cat]
  # by name: a fine-tuned model's column order need not be its blueprint's.
  # forge() gave `new_data` the blueprint's types, so a difference is
  # between the model's own blueprint and layout: the model was edited
  if (!setequal(now_cat, was_cat)) {
    bad <- predictor_labels(union(setdiff(now_cat, was_cat), setdiff(was_cat, now_cat)))
    abort_model(c("This model is damaged or was edited: its blueprint and its layout disagree on the types of some predictors.",
                  x = "{cli::qty(length(bad))}Column{?s} {.field {bad}} {?is/are} a factor in one and numeric in the other.",
                  i = "Refit the model, or read it again from the file it was saved to."))
  }
  if (outcomes) {
    outcome_layout(forged$outcomes)
    return(rust_dataset(model, forged$predictors, layout, object$fit$outcome, forged$outcomes))
  }
  rust_dataset(model, forged$predictors, layout)
}

# The prediction types of predict() and multi_predict(), in one list.
pred_types <- c("class", "prob", "numeric", "raw")

check_pred_type <- function(type, task) {
  if (is.null(type)) return(if (task == "regression") "numeric" else "class")
  type <- match_choice(type, pred_types, "type")
  if (type == "raw") return(type)
  if (task == "hierarchical" && type == "numeric") {
    abort_input("Outcome is hierarchical and the prediction type is {.val numeric}; use {.val class} or {.val prob}.")
  }
  if (task == "classification" && type == "numeric") {
    abort_input("Outcome is factor and the prediction type is {.val numeric}; use {.val class} or {.val prob}.")
  }
  if (task == "regression" && type != "numeric") {
    abort_input("Outcome is numeric and the prediction type is {.val {type}}; use {.val numeric}.")
  }
  type
}

# The n x outputs matrix from Rust as hardhat-standard columns.
spruce_predictions <- function(out, type, outcome) {
  if (outcome$task == "regression") {
    if (length(outcome$names) == 1) return(hardhat::spruce_numeric(out[, 1]))
    cols <- lapply(seq_along(outcome$names), function(k) out[, k])
    names(cols) <- outcome$names
    return(do.call(hardhat::spruce_numeric_multiple, cols))
  }
  offsets <- c(0L, cumsum(outcome$dims))
  per_outcome <- lapply(seq_along(outcome$names), function(k) {
    prob <- out[, offsets[k] + seq_len(outcome$dims[k]), drop = FALSE]
    colnames(prob) <- outcome$levels[[k]]
    prob
  })
  if (type == "class" && outcome$task == "hierarchical") {
    classes <- top_down_classes(out, outcome)
    # one outcome level: the layout of a single-outcome classifier
    if (length(classes) == 1) return(hardhat::spruce_class(classes[[1]]))
    return(do.call(hardhat::spruce_class_multiple, classes))
  }
  if (type == "class") {
    classes <- lapply(seq_along(per_outcome), function(k) {
      lv <- outcome$levels[[k]]
      factor(lv[max.col(per_outcome[[k]], ties.method = "first")], levels = lv)
    })
    if (length(classes) == 1) return(hardhat::spruce_class(classes[[1]]))
    names(classes) <- outcome$names
    return(do.call(hardhat::spruce_class_multiple, classes))
  }
  # one tibble of `.pred_<level>` columns per outcome (hardhat's convention)
  probs <- lapply(seq_along(per_outcome), function(k) {
    matrix_tibble(per_outcome[[k]], paste0(".pred_", outcome$levels[[k]]))
  })
  if (length(probs) == 1) return(probs[[1]])
  names(probs) <- outcome$names
  do.call(hardhat::spruce_prob_multiple, probs)
}

# The raw (pre-activation) n x outputs matrix as a tibble: `.pred_raw_<level>`
# for one factor outcome, one such tibble per outcome (`.pred_raw_<outcome>`)
# for several or a hierarchy, the numeric prediction for regression.
spruce_raw <- function(out, outcome) {
  if (outcome$task == "regression") return(spruce_predictions(out, "numeric", outcome))
  offsets <- c(0L, cumsum(outcome$dims))
  per_outcome <- lapply(seq_along(outcome$names), function(k) {
    raw <- out[, offsets[k] + seq_len(outcome$dims[k]), drop = FALSE]
    matrix_tibble(raw, paste0(".pred_raw_", outcome$levels[[k]]))
  })
  if (length(per_outcome) == 1 && outcome$task != "hierarchical") return(per_outcome[[1]])
  names(per_outcome) <- paste0(".pred_raw_", outcome$names)
  tibble::as_tibble(per_outcome, .name_repair = "minimal")
}
