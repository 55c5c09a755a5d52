#' Global feature importance of a TabNet model
#'
#' Four measures of how much a fitted TabNet model relies on each predictor,
#' all computed natively (batched forward passes in the Rust core; the
#' model-agnostic ones re-predict `new_data` once per predictor and repeat):
#'
#' * `"mask"`: TabNet's own importance: the column sums of the aggregated
#'   masks ([tabnet_explain()]'s `M_explain`) over `new_data`, divided by their
#'   total, so the values sum to 1 (Arik & Pfister, 2021). Without `new_data` it
#'   returns the importance stored at fit time (`fit$fit$importances`, the
#'   values `vip::vi()` shows; a `tabnet_pretrain` stores it too, computed on
#'   its pretraining rows).
#' * `"permutation"`: the drop of the performance metric when the predictor's
#'   column is randomly permuted, averaged over `n_repeats` permutations
#'   (`StDev` is their standard deviation). Needs the outcome in `new_data`.
#' * `"occlusion"`: the drop of the metric when the column is replaced by its
#'   mean (the most frequent level for a factor) -- the "occlusion test with
#'   \eqn{\Delta}AUC" of Khot, Neubauer and Roy (2022). Needs the outcome.
#'   For a binary outcome a column `DeltaAUC` gives it as the study reports
#'   it, in percentage points (\eqn{100 (AUC - AUC_j)}).
#' * `"mad"`: MAD relevance (mean absolute differential relevance, *ibid.*,
#'   exactly as defined there): each predictor is replaced by its mean (a
#'   factor by its most frequent level) and, for every row, the relative
#'   change \eqn{\delta_i = (z'_i - z_i) / z_i} of the **raw output of the
#'   row's true class** (the logit before the softmax; the predicted value
#'   for regression) is taken; a row whose raw output is exactly 0 is left
#'   out; per predictor and class, the \eqn{\delta_i} outside
#'   \eqn{[Q_1 - 1.5\,IQR, Q_3 + 1.5\,IQR]} are set to 0; the importance is
#'   the mean of \eqn{|\delta_i|} over all kept rows, and attribute
#'   `by_class` holds it per class (a tibble with `Variable`, `class`,
#'   `Importance`; for regression, per outcome). Needs the outcome in
#'   `new_data` for classification. (It used to be the mean absolute change
#'   of the probabilities, without outcome: see NEWS.)
#'
#' The metric is the ROC AUC for one binary outcome, the accuracy for other
#' classification outcomes and the RMSE for regression (where the "drop" is the
#' increase of the RMSE). The model-agnostic measures need at least 2 rows of
#' `new_data`, and the ROC AUC needs both classes in its outcome column: an
#' error says so rather than returning `NaN`. Use held-out data for the metric-based measures to see
#' what generalises.
#'
#' @param object A `tabnet_fit`, a parsnip `model_fit` or fitted `workflow`
#'   holding one, or (for `method = "mask"` only) a `tabnet_pretrain`.
#' @param new_data A data frame with the predictors (and, for `"permutation"`
#'   and `"occlusion"`, the outcome columns). May be `NULL` for `"mask"`.
#' @param method One of `"mask"`, `"permutation"`, `"occlusion"`, `"mad"`.
#' @param n_repeats Number of permutations per predictor (`"permutation"` only).
#' @param seed Seed of the permutations: a whole number with absolute value at
#'   most 2^53; `NULL` draws one from R's RNG, so [set.seed()] makes the result
#'   reproducible.
#' @param ... Must be empty: a misspelt argument (`type = "permutation"`) is
#'   an error of class `tabnetrs_error_unused_argument`.
#' @return A tibble of class `tabnet_importance`, sorted by decreasing
#'   importance, with columns `Variable`, `Importance` and, for
#'   `"permutation"`, `StDev`. Attributes `method`, `metric` (`"share"`,
#'   `"roc_auc"`, `"accuracy"`, `"rmse"` or `"mad"`), `baseline` (the metric on
#'   the intact data), `n_repeats` and `n_rows` describe it. Plot it with
#'   [autoplot()][autoplot.tabnet_importance].
#'
#'   For a model fitted with `grouped_features` (see [tabnet_config()]), the
#'   rows are still one per predictor (the predictors of a group share its
#'   mask importance equally) and attribute `groups` holds a tibble with
#'   one row per attention group, sorted by decreasing importance: `Group`
#'   (the group's name, or the predictor's for one in no group), `Importance`
#'   (the sum of its predictors' importances; for the model-agnostic methods
#'   this sums the effects of perturbing each predictor alone, not the group
#'   at once) and `Variables` (a list of the group's predictors). The stored
#'   `fit$fit$importances` carries the same table as attribute `groups`.
#'   Without groups the result is unchanged (no `groups` attribute).
#' @references Arik, S. Ö. and Pfister, T. (2021). TabNet: Attentive
#'   interpretable tabular learning. AAAI 35(8).
#'   \doi{10.1609/aaai.v35i8.16826}.
#'
#'   Khot, A., Neubauer, M. S. and Roy, A. (2022). A detailed study of
#'   interpretability of deep neural network based top taggers. arXiv:2210.04371.
#' @seealso [tabnet_explain()] for per-observation masks.
#' @examples
#' \donttest{
#' set.seed(1)
#' x <- data.frame(a = rnorm(600), b = rnorm(600), c = rnorm(600))
#' x$y <- factor(ifelse(x$a - x$b > 0, "yes", "no"))
#' fit <- tabnet_fit(y ~ ., x, epochs = 5)
#' tabnet_importance(fit)
#' tabnet_importance(fit, x, method = "permutation", n_repeats = 3)
#' tabnet_importance(fit, x, method = "mad")
#' }
#' @export
tabnet_importance <- function(object, new_data = NULL,
                              method = c("mask", "permutation", "occlusion", "mad"),
                              n_repeats = 5, seed = NULL, ...) {
  UseMethod("tabnet_importance")
}

importance_methods <- c("mask", "permutation", "occlusion", "mad")

#' @export
#' @rdname tabnet_importance
tabnet_importance.default <- function(object, new_data = NULL,
                                      method = c("mask", "permutation", "occlusion", "mad"),
                                      n_repeats = 5, seed = NULL, ...) {
  abort_input(c(
    "{.fn tabnet_importance} is not defined for a {.cls {class(object)[1]}}.",
    i = "Use a model from {.fn tabnet_fit}, or a parsnip/workflow fit of {.fn tabnet}."
  ))
}

#' @export
#' @rdname tabnet_importance
tabnet_importance.tabnet_fit <- function(object, new_data = NULL,
                                         method = c("mask", "permutation", "occlusion", "mad"),
                                         n_repeats = 5, seed = NULL, ...) {
  check_dots_unused(..., fn_args = c("new_data", "method", "n_repeats", "seed"))
  method <- check_importance_method(method)
  check_count(n_repeats, "n_repeats", min = 1)
  if (method == "mask") return(mask_importance(object, new_data))
  if (is.null(new_data)) {
    abort_input("{.arg new_data} is needed for {.code method = \"{method}\"}.")
  }
  new_data <- node_new_data(new_data)
  check_new_data(new_data, object = object)
  if (is.matrix(new_data)) new_data <- as.data.frame(new_data)
  seed <- new_seed(seed, kind = "input")
  task <- object$fit$outcome$task
  # the MAD relevance explains each row's true class (no outcome for regression)
  needs_outcome <- method != "mad" || task != "regression"
  check_importance_rows(new_data, method)
  if (needs_outcome) {
    check_outcome_columns(object, new_data, method)
    if (method != "mad") check_metric_classes(object, new_data, method)
  }
  model <- live_network(object)
  ds <- forge_dataset(object, new_data, model, outcomes = needs_outcome)
  vars <- predictor_labels(object$fit$layout$names)
  if (method == "mad") return(with_groups(mad_importance(object, model, ds, vars, nrow(new_data)), object))
  res <- run_importance_job(model, ds, method, if (method == "permutation") n_repeats else 1, seed)
  values <- res$values
  tib <- tibble::tibble(Variable = vars, Importance = rowMeans(values))
  if (method == "permutation") {
    tib$StDev <- if (ncol(values) > 1) apply(values, 1, stats::sd) else NA_real_
  }
  if (method == "occlusion" && identical(res$metric, "roc_auc")) {
    # the seed's "percent drop in AUC": 100 (AUC - AUC with the column at its mean)
    tib$DeltaAUC <- 100 * tib$Importance
  }
  out <- new_tabnet_importance(tib, method, res$metric,
                               baseline = if (is.finite(res$baseline)) res$baseline else NA_real_,
                               n_repeats = if (method == "permutation") as.integer(n_repeats) else 1L,
                               n_rows = nrow(new_data))
  with_groups(out, object)
}

# A permutation / occlusion importance run in the core in slices of about
# 0.25 s (one perturbed column and prediction at least), with a progress bar
# and Ctrl-C honoured between prediction slices.
run_importance_job <- function(model, ds, method, n_repeats, seed) {
  job <- rs_importance_job(model, ds, method, n_repeats, inference_batch_size, seed)
  show_bar <- interactive() && !is_knitting()
  bar <- FALSE
  repeat {
    state <- rs_importance_run(job, model, 0.25)
    if (state[[1]] < 0) rlang::interrupt()
    if (state[[1]] >= state[[2]]) break
    if (show_bar && !bar) {
      cli::cli_progress_bar(sprintf("%s importance", method), total = state[[2]], .envir = environment())
      bar <- TRUE
    }
    if (bar) cli::cli_progress_update(set = state[[1]], .envir = environment())
  }
  if (bar) cli::cli_progress_done(.envir = environment())
  rs_importance_result(job)
}

# MAD relevance (Khot, Neubauer and Roy): overall per predictor, and per class
# (attribute `by_class`).
mad_importance <- function(object, model, ds, vars, n_rows) {
  res <- rs_mad(model, ds, inference_batch_size)
  if (is.null(res)) rlang::interrupt()
  outcome <- object$fit$outcome
  tib <- tibble::tibble(Variable = vars, Importance = res$overall)
  out <- new_tabnet_importance(tib, "mad", "mad", baseline = NA_real_, n_repeats = 1L, n_rows = n_rows)
  label <- vapply(seq_along(res$class), function(g) {
    k <- res$outcome[[g]] + 1L
    if (outcome$task == "regression") return(outcome$names[[k]])
    lv <- outcome$levels[[k]][[res$class[[g]] + 1L]]
    if (length(outcome$names) > 1) paste(outcome$names[[k]], lv, sep = "_") else lv
  }, character(1))
  by <- tibble::tibble(
    Variable = rep(vars, each = length(label)),
    class = rep(label, times = length(vars)),
    Importance = as.vector(res$by_class)
  )
  attr(out, "by_class") <- by[order(by$class, -by$Importance), , drop = FALSE]
  attr(out, "rows_by_class") <- stats::setNames(res$rows, label)
  out
}

# Adds the per-group table (attribute "groups") of a model with feature groups.
with_groups <- function(tib, object) {
  groups <- model_groups(object)
  if (length(groups)) attr(tib, "groups") <- group_importance(tib$Variable, tib$Importance, groups)
  tib
}

#' @export
#' @rdname tabnet_importance
tabnet_importance.tabnet_pretrain <- function(object, new_data = NULL,
                                              method = c("mask", "permutation", "occlusion", "mad"),
                                              n_repeats = 5, seed = NULL, ...) {
  check_dots_unused(..., fn_args = c("new_data", "method", "n_repeats", "seed"))
  method <- check_importance_method(method)
  if (method != "mask") {
    abort_model(c(
      "A {.cls tabnet_pretrain} model has no prediction head, so only {.code method = \"mask\"} applies, not {.val {method}}.",
      i = "Fine-tune it with {.code tabnet_fit(..., tabnet_model = <pretrained>)} for the other methods."
    ))
  }
  mask_importance(object, new_data)
}

#' @param outcome For a parsnip fit made with `fit_xy()` and an outcome
#'   vector (which parsnip names `..y`), the name of the outcome column of
#'   `new_data`.
#' @export
#' @rdname tabnet_importance
tabnet_importance.model_fit <- function(object, new_data = NULL,
                                        method = c("mask", "permutation", "occlusion", "mad"),
                                        n_repeats = 5, seed = NULL, ..., outcome = NULL) {
  fit <- engine_fit(object)
  check_dots_unused(..., fn_args = c("new_data", "method", "n_repeats", "seed", "outcome"))
  method <- check_importance_method(method)
  # fit_xy() names a single vector outcome `..y`: map the user's column to it
  if (!is.null(new_data) && method %in% c("permutation", "occlusion", "mad") && inherits(fit, "tabnet_fit")) {
    user_names <- outcome %||% object$preproc$y_var
    engine_names <- fit$fit$outcome$names
    if (identical(engine_names, "..y") && !"..y" %in% names(new_data) && !length(user_names)) {
      abort_input(c(
        "This model was fitted with {.fn fit_xy} on an outcome vector, so the outcome column of {.arg new_data} is unknown.",
        i = "Name it with {.code outcome = \"<column>\"}."
      ))
    }
    new_data <- rename_outcomes(new_data, engine_names, user_names)
  }
  tabnet_importance(fit, new_data, method = method, n_repeats = n_repeats, seed = seed, ...)
}

#' @export
#' @rdname tabnet_importance
tabnet_importance.workflow <- function(object, new_data = NULL,
                                       method = c("mask", "permutation", "occlusion", "mad"),
                                       n_repeats = 5, seed = NULL, ...) {
  fit <- engine_fit(object)
  check_dots_unused(..., fn_args = c("new_data", "method", "n_repeats", "seed"))
  method <- check_importance_method(method)
  if (!is.null(new_data)) {
    needs_outcome <- method %in% c("permutation", "occlusion") ||
      (method == "mad" && fit$fit$outcome$task != "regression")
    forged <- forge_workflow(object, new_data, outcomes = needs_outcome)
    new_data <- forged$predictors
    if (needs_outcome) {
      outcomes <- forged$outcomes
      if (ncol(outcomes) == length(fit$fit$outcome$names)) names(outcomes) <- fit$fit$outcome$names
      new_data <- vctrs::vec_cbind(new_data, outcomes)
    }
  }
  tabnet_importance(fit, new_data, method = method, n_repeats = n_repeats, seed = seed, ...)
}

check_importance_method <- function(method) {
  if (identical(method, importance_methods)) return("mask")
  if (!is.character(method) || length(method) != 1 || !method %in% importance_methods) {
    value <- format_value(method)
    abort_input("{.arg method} must be one of {.or {.val {importance_methods}}}, not {value}.")
  }
  method
}

check_outcome_columns <- function(object, new_data, method) {
  need <- object$fit$outcome$names
  missing_cols <- setdiff(need, names(new_data))
  if (length(missing_cols)) {
    abort_input(c(
      "{.arg new_data} needs the outcome column{cli::qty(length(missing_cols))}{?s} {.field {missing_cols}} for the {method} importance.",
      i = "{.code method = \"mask\"} needs no outcome (nor does {.code method = \"mad\"} for regression)."
    ))
  }
}

# The model-agnostic importances compare predictions across rows (a column
# permuted, or replaced by its mean): one row gives nothing to compare.
check_importance_rows <- function(new_data, method) {
  n <- nrow(new_data)
  if (n < 2) {
    why <- switch(method,
      permutation = "Permuting a column of one row leaves it unchanged.",
      "Replacing a column of one row by its mean leaves it unchanged."
    )
    abort_input(c("The {method} importance needs at least 2 rows of {.arg new_data}, not {n}.",
                  i = why))
  }
  invisible()
}

# The ROC AUC (the metric for one binary outcome) needs both classes in the
# outcome column of `new_data`.
check_metric_classes <- function(object, new_data, method) {
  outcome <- object$fit$outcome
  if (!identical(outcome$task, "classification") || length(outcome$names) != 1 ||
      !identical(as.integer(outcome$dims), 2L)) return(invisible())
  nm <- outcome$names[[1]]
  y <- as.character(new_data[[nm]])
  present <- intersect(outcome$levels[[1]], unique(y[!is.na(y)]))
  if (length(present) < 2) {
    levels <- outcome$levels[[1]]
    abort_input(c(
      "The {method} importance of this binary classifier uses the ROC AUC, which needs both classes in the outcome column {.field {nm}} of {.arg new_data}.",
      x = if (length(present)) "{.arg new_data} has only class {.val {present}} (the model's classes are {.val {levels}})."
          else "{.arg new_data} has none of the model's classes {.val {levels}}.",
      i = "Use rows with both classes, or {.code method = \"mad\"}, which needs no outcome."
    ))
  }
  invisible()
}

rename_outcomes <- function(new_data, engine_names, user_names) {
  if (length(engine_names) != length(user_names) || !length(user_names)) return(new_data)
  if (all(engine_names %in% names(new_data)) || !all(user_names %in% names(new_data))) return(new_data)
  new_data <- as.data.frame(new_data)
  new_data[engine_names] <- new_data[user_names]
  new_data
}

# Mask importance: stored (no new_data) or over new_data.
mask_importance <- function(object, new_data = NULL) {
  if (is.null(new_data)) {
    imp <- object$fit$importances
    if (is.null(imp)) {
      msg <- if (inherits(object, "tabnet_pretrain")) {
        "This model stores no importance (it was trained with {.code skip_importance = TRUE}, or pretrained by a tabnetrs version that stored none)."
      } else "This model stores no importance (it was fitted with {.code skip_importance = TRUE})."
      abort_model(c(msg, i = "Compute it on data with {.code tabnet_importance(object, new_data)}."))
    }
    tib <- tibble::tibble(Variable = imp$variables, Importance = imp$importance)
    n_rows <- NA_integer_
  } else {
    new_data <- node_new_data(new_data)
    check_new_data(new_data, object = object)
    model <- live_network(object)
    ds <- forge_dataset(object, new_data, model)
    tib <- tibble::tibble(Variable = predictor_labels(object$fit$layout$names),
                          Importance = rs_mask_importance(model, ds, inference_batch_size))
    n_rows <- nrow(new_data)
  }
  with_groups(new_tabnet_importance(tib, "mask", "share", baseline = NA_real_, n_repeats = 1L, n_rows = n_rows),
              object)
}

new_tabnet_importance <- function(tib, method, metric, baseline, n_repeats, n_rows) {
  tib <- tib[order(-tib$Importance), , drop = FALSE]
  tib <- tibble::new_tibble(tib, nrow = nrow(tib), class = "tabnet_importance")
  attr(tib, "method") <- method
  attr(tib, "metric") <- metric
  attr(tib, "baseline") <- baseline
  attr(tib, "n_repeats") <- n_repeats
  attr(tib, "n_rows") <- n_rows
  tib
}

metric_names <- c(roc_auc = "ROC AUC", accuracy = "accuracy", rmse = "RMSE", mad = "MAD", share = "share")

metric_name <- function(metric) {
  if (is.null(metric) || !metric %in% names(metric_names)) return(metric %||% "")
  metric_names[[metric]]
}

importance_label <- function(x) {
  method <- attr(x, "method") %||% "importance"
  metric <- metric_name(attr(x, "metric"))
  switch(method,
    mask = "share of the aggregated attention masks",
    permutation = sprintf("drop in %s when permuted", metric),
    occlusion = sprintf("drop in %s when replaced by the mean", metric),
    mad = "mean absolute output change (MAD relevance)",
    method
  )
}

importance_summary <- function(x) {
  method <- attr(x, "method") %||% "importance"
  baseline <- attr(x, "baseline")
  n_rows <- attr(x, "n_rows")
  n_repeats <- attr(x, "n_repeats") %||% 1L
  parts <- c(
    importance_label(x),
    if (!is.null(baseline) && !is.na(baseline)) {
      sprintf("baseline %s %s", metric_name(attr(x, "metric")), format(signif(baseline, 4)))
    },
    if (identical(method, "permutation")) sprintf("%d repeat%s", n_repeats, if (n_repeats == 1) "" else "s"),
    if (!is.null(n_rows) && !is.na(n_rows)) {
      sprintf("%s rows", format(n_rows, big.mark = ","))
    } else if (identical(method, "mask")) "stored at fit time"
  )
  sprintf("%s: %s", method, paste(parts, collapse = "; "))
}

#' @importFrom tibble tbl_sum
#' @method tbl_sum tabnet_importance
#' @export
tbl_sum.tabnet_importance <- function(x, ...) {
  c("TabNet importance" = importance_summary(x))
}

#' Variable importance of a TabNet model for vip
#'
#' Methods for `vip::vi_model()`, so `vip::vi()` and `vip::vip()` work on a
#' `tabnet_fit` and, through vip's own unwrapping, on a parsnip `model_fit` or
#' fitted `workflow` of [tabnet()]. They return the mask importance stored at
#' fit or pretraining time (as the `tabnet` package does), or computed on
#' `new_data` when it is given.
#'
#' @param object A `tabnet_fit` or `tabnet_pretrain`.
#' @param new_data Optional data frame of predictors.
#' @param ... Not used.
#' @return A tibble with columns `Variable` and `Importance`.
#' @name vi_model.tabnet_fit
#' @keywords internal
NULL

#' @rdname vi_model.tabnet_fit
#' @exportS3Method vip::vi_model
vi_model.tabnet_fit <- function(object, new_data = NULL, ...) {
  vi_tibble(mask_importance(object, new_data), object)
}

#' @rdname vi_model.tabnet_fit
#' @exportS3Method vip::vi_model
vi_model.tabnet_pretrain <- function(object, new_data = NULL, ...) {
  vi_tibble(mask_importance(object, new_data), object)
}

vi_tibble <- function(imp, object) {
  # vip sorts itself; keep the model's predictor order like `tabnet`
  vars <- predictor_labels(object$fit$layout$names)
  imp <- imp[match(vars, imp$Variable), , drop = FALSE]
  tib <- tibble::tibble(Variable = imp$Variable, Importance = imp$Importance)
  attr(tib, "type") <- "mask"
  tib
}
