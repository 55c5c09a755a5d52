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
#'   time; for a model fitted on a `data.tree` `Node`, a `Node` of the same
#'   shape or the predictors `node_to_df(<Node>)$x`.
#' @param type `"class"` or `"prob"` for factor outcomes, `"numeric"` for numeric
#'   ones. `NULL` picks `"class"` or `"numeric"`. Any other value is an error.
#' @param ... Not used (accepted for compatibility).
#' @param epoch Predict with the weights checkpointed at this epoch.
#' @return A tibble with one row per row of `new_data`: `.pred_class`,
#'   `.pred_<level>` columns or `.pred` (hardhat's standard names; with several
#'   outcomes, one column or column group per outcome).
#'
#'   A hierarchical model (fitted on a `Node`) gives one column per outcome
#'   level, also when there is only one: with `type = "class"`,
#'   `.pred_class_level_2`, `.pred_class_level_3`, ... (factors), chosen
#'   top-down: the most probable class of the top level, then at each level
#'   the most probable child of the class chosen above, so a predicted path is
#'   always a path of the tree. With `type = "prob"`, `.pred_level_2`, ...,
#'   each a tibble of `.pred_<class>` columns: the constrained probability of
#'   each node (never below any of its descendants'; they need not sum to 1
#'   over a level).
#' @export
predict.tabnet_fit <- function(object, new_data, type = NULL, ..., epoch = NULL) {
  outcome <- object$fit$outcome
  type <- check_pred_type(type, outcome$task)
  model <- live_network(object, epoch)
  ds <- forge_dataset(object, new_data, model)
  out <- rs_predict(model, ds, inference_batch_size)
  # NULL: Ctrl-C, seen between slices of rows (about every 0.1 s)
  if (is.null(out)) rlang::interrupt()
  spruce_predictions(out, type, outcome)
}

# Rows per batch of every inference pass (prediction, explanation,
# importances, validation loss): large batches, as no gradient is kept.
inference_batch_size <- 65536

# hardhat::forge() with unseen factor levels mapped to the unknown slot
# (hardhat turns them into NA; we record which NAs were new levels).
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
                    i = "They use the model's unknown-level embedding."))
  }
  list(predictors = predictors, outcomes = forged$outcomes, unseen = unseen)
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
  # by name: a fine-tuned model's column order need not be its blueprint's
  if (!setequal(now_cat, was_cat)) {
    bad <- predictor_labels(union(setdiff(now_cat, was_cat), setdiff(was_cat, now_cat)))
    abort_input(c("The predictors of {.arg new_data} do not have the types seen at fit time.",
                  x = "{cli::qty(length(bad))}Column{?s} {.field {bad}} changed between factor and numeric."))
  }
  if (outcomes) {
    outcome_layout(forged$outcomes)
    return(rust_dataset(model, forged$predictors, layout, object$fit$outcome, forged$outcomes,
                        unseen = forged$unseen))
  }
  rust_dataset(model, forged$predictors, layout, unseen = forged$unseen)
}

# The prediction types of predict() and multi_predict(), in one list.
pred_types <- c("class", "prob", "numeric")

check_pred_type <- function(type, task) {
  if (is.null(type)) return(if (task == "regression") "numeric" else "class")
  type <- match_choice(type, pred_types, "type")
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
    return(do.call(hardhat::spruce_class_multiple, top_down_classes(out, outcome)))
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
    hardhat::spruce_prob(outcome$levels[[k]], per_outcome[[k]])
  })
  if (length(probs) == 1 && outcome$task != "hierarchical") {
    return(hardhat::spruce_prob(outcome$levels[[1]], per_outcome[[1]]))
  }
  names(probs) <- outcome$names
  do.call(hardhat::spruce_prob_multiple, probs)
}
