#' Interpretation metrics from a TabNet model
#'
#' Computes the instance-wise feature-selection masks of a fitted (or
#' pretrained) TabNet network for `new_data`: the mask of every decision step
#' and their aggregate. Everything is computed in the Rust core in batches, and
#' a row's explanation never depends on the other rows passed with it (batch
#' norm runs in inference mode).
#'
#' `M_explain` is the aggregate of the paper (Arik & Pfister, 2021, section
#' "Interpretability"): for row \eqn{b} and predictor \eqn{j},
#' \eqn{\sum_i \eta_b[i] M_{b,j}[i]}, where \eqn{M[i]} is the step-\eqn{i} mask
#' and \eqn{\eta_b[i] = \sum_c \mathrm{ReLU}(d_{b,c}[i])} is how much step
#' \eqn{i} contributes to the decision. As in the `tabnet` package it is *not*
#' normalised per row (divide each row by its sum to get the paper's
#' \eqn{M_{agg}}); its column sums divided by the grand total are the model's
#' global (mask) importance. A categorical predictor's embedding columns are
#' summed back into one column, so there is one column per predictor, named
#' after it.
#'
#' @param object A `tabnet_fit` or `tabnet_pretrain` object, or a parsnip
#'   `model_fit` / fitted `workflow` holding a `tabnet_fit`.
#' @param new_data A data frame with the predictors used at fit time (outcome
#'   columns may be present; they are ignored), or [tabnet_arrow()] data
#'   (read into memory).
#' @return An object of class `tabnet_explain`: a list with
#'   * `M_explain`: a tibble with one row per row of `new_data` and one column
#'     per predictor (the aggregated mask, not normalised);
#'   * `masks`: a list with one such tibble per decision step (each row of a
#'     step mask sums to 1 over the predictors).
#'
#'   For a model fitted with `grouped_features` (see [tabnet_config()]), the
#'   attention runs over groups: every predictor of a group gets the group's
#'   mask divided by the group's size, so its columns in `M_explain` and
#'   `masks` are equal. The list then also holds
#'   * `M_explain_groups` and `masks_groups`: the same with one column per
#'     attention group (the sum of its predictors' columns): the named groups
#'     first, then each predictor in no group under its own name;
#'   * `groups`: the groups, a named list of predictor names.
#'
#' Plot it with [autoplot()][autoplot.tabnet_explain].
#' @seealso [tabnet_importance()] for global importances,
#'   [autoplot.tabnet_explain()].
#' @examples
#' \donttest{
#' set.seed(1)
#' x <- data.frame(a = rnorm(400), b = rnorm(400), c = rnorm(400))
#' x$y <- factor(ifelse(x$a - x$b > 0, "yes", "no"))
#' fit <- tabnet_fit(y ~ ., x, epochs = 3)
#' ex <- tabnet_explain(fit, x[1:50, ])
#' ex
#' head(ex$M_explain)
#' }
#' @export
tabnet_explain <- function(object, new_data) {
  UseMethod("tabnet_explain")
}

#' @export
#' @rdname tabnet_explain
tabnet_explain.default <- function(object, new_data) {
  abort_input(c(
    "{.fn tabnet_explain} is not defined for a {.cls {class(object)[1]}}.",
    i = "Use a model from {.fn tabnet_fit}, {.fn tabnet_pretrain}, or a parsnip/workflow fit of {.fn tabnet}."
  ))
}

#' @export
#' @rdname tabnet_explain
tabnet_explain.tabnet_fit <- function(object, new_data) {
  explain_impl(object, new_data)
}

#' @export
#' @rdname tabnet_explain
tabnet_explain.tabnet_pretrain <- function(object, new_data) {
  explain_impl(object, new_data)
}

#' @export
#' @rdname tabnet_explain
tabnet_explain.model_fit <- function(object, new_data) {
  tabnet_explain(engine_fit(object), new_data)
}

#' @export
#' @rdname tabnet_explain
tabnet_explain.workflow <- function(object, new_data) {
  forged <- forge_workflow(object, new_data, outcomes = FALSE)
  tabnet_explain(engine_fit(object), forged$predictors)
}

explain_impl <- function(object, new_data) {
  new_data <- node_new_data(new_data)
  check_new_data(new_data, object = object)
  model <- live_network(object)
  ds <- forge_dataset(object, new_data, model)
  res <- rs_explain(model, ds, inference_batch_size)
  # NULL: Ctrl-C, seen between slices of rows (about every 0.1 s)
  if (is.null(res)) rlang::interrupt()
  vars <- predictor_labels(object$fit$layout$names)
  new_tabnet_explain(res$M_explain, res$masks, vars, model_groups(object))
}

new_tabnet_explain <- function(m_explain, masks, vars, groups = NULL) {
  # `m_explain` and each of `masks`: a list of columns, as rs_explain() returns them
  # a group's column is the sum of its members' columns
  by_group <- function(cols) {
    names(cols) <- vars
    columns_tibble(lapply(groups, function(g) Reduce(`+`, cols[g])), names(groups))
  }
  res <- list(M_explain = columns_tibble(m_explain, vars), masks = lapply(masks, columns_tibble, vars))
  if (length(groups)) {
    res$M_explain_groups <- by_group(m_explain)
    res$masks_groups <- lapply(masks, by_group)
    res$groups <- groups
  }
  structure(res, class = "tabnet_explain")
}

# `new_data` must be a data frame or a matrix with column names (and, given
# the fitted `object`, hold the predictor columns it was fitted on).
check_new_data <- function(new_data, arg = "new_data", object = NULL) {
  if (missing(new_data) || is.null(new_data)) {
    abort_input("{.arg {arg}} is missing: give the data frame of predictors to use.")
  }
  if (is.matrix(new_data) && is.null(colnames(new_data))) {
    abort_input("{.arg {arg}} is a matrix without column names.")
  }
  if (!is.data.frame(new_data) && !is.matrix(new_data)) {
    abort_input("{.arg {arg}} must be a data frame, not {.obj_type_friendly {new_data}}.")
  }
  if (nrow(new_data) == 0) abort_input("{.arg {arg}} has zero rows.")
  check_predictor_names(colnames(new_data), arg)
  if (!is.null(object)) {
    need <- names(object$blueprint$ptypes$predictors)
    absent <- setdiff(need, colnames(new_data))
    if (length(absent)) {
      abort_input(c(
        "{.arg {arg}} lacks {cli::qty(length(absent))}{?the predictor/the predictors} {.field {absent}} used at fit time.",
        i = "The model was fitted on {.field {need}}."
      ))
    }
  }
  invisible(new_data)
}

# The tabnet_fit inside a parsnip model_fit or a fitted workflow.
engine_fit <- function(object) {
  fit <- if (inherits(object, "workflow")) {
    rlang::check_installed("workflows")
    if (!isTRUE(object$trained)) {
      abort_model("The workflow has not been fitted yet; call {.fn fit} first.")
    }
    workflows::extract_fit_engine(object)
  } else {
    parsnip::extract_fit_engine(object)
  }
  if (!inherits(fit, c("tabnet_fit", "tabnet_pretrain"))) {
    abort_model("The model inside the {.cls {class(object)[1]}} is a {.cls {class(fit)[1]}}, not a TabNet fit.")
  }
  fit
}

# A fitted workflow's preprocessing applied to `new_data` (the engine fit then
# sees exactly what it was trained on).
forge_workflow <- function(object, new_data, outcomes = FALSE) {
  check_new_data(new_data)
  rlang::check_installed("workflows")
  mold <- workflows::extract_mold(object)
  tryCatch(
    hardhat::forge(new_data, mold$blueprint, outcomes = outcomes),
    error = function(e) {
      abort_input("{.arg new_data} does not match the data the workflow was fitted on.", parent = e)
    }
  )
}

#' @export
print.tabnet_explain <- function(x, ...) {
  m <- x$M_explain
  n <- nrow(m)
  p <- ncol(m)
  k <- length(x$masks)
  cat(sprintf("TabNet explanation: %s observation%s, %d predictor%s, %d decision step%s\n",
              format(n, big.mark = ","), if (n == 1) "" else "s",
              p, if (p == 1) "" else "s", k, if (k == 1) "" else "s"))
  share <- explain_share(x)
  if (length(share)) {
    cat("Share of the aggregated mask (M_explain column sums / total):\n")
    show <- utils::head(share, 15)
    bars <- share_bars(show)
    width <- max(nchar(names(show)))
    cat(sprintf("  %s %s %5.1f%%\n", formatC(names(show), width = -width), bars, 100 * show), sep = "")
    if (length(share) > 15) cat(sprintf("  ... and %d more\n", length(share) - 15))
  }
  cat(sprintf("Components: $M_explain (%s x %d tibble), $masks (list of %d tibbles).\n",
              format(n, big.mark = ","), p, k))
  if (length(x$groups)) {
    cat(sprintf("Feature groups: %d (%s); per group in $M_explain_groups and $masks_groups.\n",
                length(x$groups), paste(names(x$groups), collapse = ", ")))
  }
  cat("Plot with autoplot(x) or autoplot(x, type = \"steps\").\n")
  invisible(x)
}

# Per-predictor share of M_explain, sorted decreasingly (the mask importance of
# these rows).
explain_share <- function(x) {
  sums <- colSums(as.matrix(x$M_explain), na.rm = TRUE)
  total <- sum(sums)
  if (!length(sums)) return(sums)
  share <- if (total > 0) sums / total else sums * 0
  sort(share, decreasing = TRUE)
}

share_bars <- function(share, width = 20) {
  full <- if (cli::is_utf8_output()) "\u2588" else "#"
  top <- max(share, 0)
  len <- if (top > 0) round(width * share / top) else rep(0, length(share))
  paste0(strrep(full, len), strrep(" ", width - len))
}
