#' Layer-wise relevance propagation through a TabNet
#'
#' Explains one raw output of the network (a class's pre-softmax score, or a
#' regression value) for each row of `new_data` by propagating it back,
#' layer by layer, to the predictors (layer-wise relevance propagation, LRP:
#' Bach et al. 2015, PLoS ONE 10(7) e0130140; rules as in Montavon et al.
#' 2019, "Layer-wise relevance propagation: an overview", in *Explainable AI*,
#' LNCS 11700). Computed in the Rust core on the network's own layers, in
#' eval mode (so a row's relevance never depends on the other rows), in
#' chunks of rows with a progress bar; Ctrl-C stops it between chunks.
#'
#' @section The rules, layer by layer:
#' * **Head** (bias-free linear map of the decision output): the linear rule
#'   starting from \eqn{R = y_c}, the explained output.
#' * **Linear rule** for every linear map \eqn{z_k = \sum_j a_j w_{kj} + b_k}:
#'   `rule = "epsilon"` (LRP-\eqn{\epsilon}):
#'   \eqn{R_j = \sum_k a_j w_{kj} / (z_k + \epsilon\,\mathrm{sign}(z_k))\, R_k};
#'   `rule = "gamma"` (LRP-\eqn{\gamma}) replaces weights and biases by
#'   \eqn{\rho(w) = w + \gamma \max(w, 0)}, which favours positive
#'   contributions (\eqn{\epsilon} then only stabilises the division;
#'   `gamma = 0` is LRP-0). Seed study's default: \eqn{\gamma = 2}. The
#'   rule was written for non-negative (ReLU) activations; TabNet's inputs to
#'   its linear maps are signed, and the formula is applied as written.
#'   The default `epsilon` rule is the one the Syn2 test validates (LRP-\eqn{\epsilon}
#'   ranks the generating features first in 10 of 10 seeds, LRP-\eqn{\gamma} in 8).
#' * **Batch norm** (ghost batch norm evaluates with its running statistics)
#'   is folded into the preceding FC layer: \eqn{s \odot (W x) + t} with
#'   \eqn{s = \gamma_{BN} / \sqrt{\sigma^2 + \epsilon_{BN}}},
#'   \eqn{t = \beta - \mu s}; the shift \eqn{t} acts as a bias.
#' * **GLU**: the sigmoid gate is held constant and the relevance of an output
#'   goes entirely to its linear (signal) half ("signal-take-all", Arras et
#'   al. 2017, arXiv:1706.07206, for the multiplicative gates of LSTMs).
#' * **Residual sums** \eqn{\sqrt{1/2}(x + f(x))} and the **sum over decision
#'   steps**: split in proportion to the terms (the z-rule,
#'   \eqn{R_i = p_i / \sum p \cdot R}). Each step's share of the decision
#'   passes its ReLU unchanged; the step outputs that feed the next attentive
#'   transformer receive none.
#' * **Attentive masks**: a mask multiplies the input, \eqn{M \odot x}, and is
#'   held constant, so the relevance of the masked input goes to the input;
#'   none flows into the attentive transformers or their prior.
#' * **Initial batch norm** on the input: an element-wise affine map, with the
#'   linear rule of a diagonal weight.
#' * **Embeddings**: the relevance of a categorical predictor's embedding
#'   dimensions is summed back to the predictor.
#'
#' The batch-norm shifts keep their share of the relevance and the stabiliser
#' \eqn{\epsilon} absorbs a little: `residual = output - rowSums(relevance)`
#' is what they took (it is 0 up to rounding on a network without shifts as
#' \eqn{\epsilon \to 0}; this is tested).
#'
#' @section Mean-behaviour and differential relevance:
#' Khot, Neubauer & Roy (2023, Mach. Learn.: Sci. Technol. 4 035003) point
#' out that the LRP of a row includes "mean-behaviour" relevance, the
#' relevance a feature gets even at its mean, whereas occlusion, SHAP and
#' differential relevance measure the *deviation* from that behaviour. With
#' `reference = "mean"` the result also holds the LRP of the mean row of
#' `new_data` (numeric predictors at their mean, factors at their most
#' frequent level), explaining the same output as each row, as
#' `mean_relevance`, and `differential = relevance - mean_relevance` (the
#' part of a row's relevance beyond the mean behaviour; features are assumed
#' weakly correlated, as in the study).
#'
#' @param object A `tabnet_fit`, or a parsnip `model_fit` / fitted `workflow`
#'   holding one.
#' @param new_data A data frame with the predictors used at fit time; when
#'   it also holds the outcome, each row explains its true class.
#' @param rule `"epsilon"` or `"gamma"` (see the rules above).
#' @param epsilon The stabiliser \eqn{\epsilon \ge 0} of every division.
#' @param gamma \eqn{\gamma \ge 0} of `rule = "gamma"`.
#' @param class For a classification outcome: the level whose output every
#'   row explains. `NULL` (default): each row's true class when the outcome
#'   is in `new_data`, else its predicted class.
#' @param reference `"none"` or `"mean"` (see above).
#' @param outcome With several outcomes, the name of the one explained
#'   (default: the first).
#' @param ... Not used; a misspelt argument is an error.
#' @return An object of class `tabnet_lrp`, a list with
#'   * `relevance`: a tibble, one row per row of `new_data`, one column per
#'     predictor;
#'   * `output`: the explained raw output of each row (pre-softmax score of
#'     the class; `predict(type = "raw")`'s column);
#'   * `residual`: `output - rowSums(relevance)`;
#'   * `class`: the explained class of each row (a factor; `NULL` for
#'     regression), `outcome`, `rule`, `epsilon`, `gamma`;
#'   * with `reference = "mean"`: `mean_relevance`, `mean_output`,
#'     `differential`.
#'
#'   Summarise it with [summary()][summary.tabnet_lrp] and plot it with
#'   [autoplot()][autoplot.tabnet_lrp].
#' @seealso [tabnet_explain()] for the attention masks, [tabnet_nap()],
#'   [tabnet_latent()].
#' @examples
#' \donttest{
#' set.seed(1)
#' x <- data.frame(a = rnorm(400), b = rnorm(400), c = rnorm(400))
#' x$y <- factor(ifelse(x$a - x$b > 0, "yes", "no"))
#' fit <- tabnet_fit(y ~ ., x, epochs = 5)
#' lrp <- tabnet_lrp(fit, x[1:100, ], reference = "mean")
#' summary(lrp)
#' head(lrp$relevance)
#' }
#' @export
tabnet_lrp <- function(object, new_data, ...) {
  UseMethod("tabnet_lrp")
}

#' @export
#' @rdname tabnet_lrp
tabnet_lrp.default <- function(object, new_data, ...) {
  abort_input(c(
    "{.fn tabnet_lrp} is not defined for a {.cls {class(object)[1]}}.",
    i = "Use a model from {.fn tabnet_fit}, or a parsnip/workflow fit of {.fn tabnet}."
  ))
}

#' @export
#' @rdname tabnet_lrp
tabnet_lrp.tabnet_fit <- function(object, new_data, rule = c("epsilon", "gamma"), epsilon = 1e-6,
                                  gamma = 2, class = NULL, reference = c("none", "mean"),
                                  outcome = NULL, ...) {
  check_dots_unused(...)
  if (identical(rule, c("epsilon", "gamma"))) rule <- "epsilon"
  rule <- match_choice(rule, c("epsilon", "gamma"), "rule")
  if (identical(reference, c("none", "mean"))) reference <- "none"
  reference <- match_choice(reference, c("none", "mean"), "reference")
  check_number(epsilon, "epsilon", min = 0)
  check_number(gamma, "gamma", min = 0)
  lrp_impl(object, new_data, rule, epsilon, gamma, class, reference, outcome)
}

#' @export
#' @rdname tabnet_lrp
tabnet_lrp.tabnet_pretrain <- function(object, new_data, ...) {
  check_supervised(object, "tabnet_lrp")
}

#' @export
#' @rdname tabnet_lrp
tabnet_lrp.model_fit <- function(object, new_data, ...) {
  tabnet_lrp(engine_fit(object), new_data, ...)
}

#' @export
#' @rdname tabnet_lrp
tabnet_lrp.workflow <- function(object, new_data, ...) {
  tabnet_lrp(engine_fit(object), workflow_data(object, new_data), ...)
}

lrp_impl <- function(object, new_data, rule, epsilon, gamma, class, reference, which) {
  new_data <- node_new_data(new_data)
  check_new_data(new_data, object = object)
  outcome <- object$fit$outcome
  k <- pick_outcome(outcome, which)
  model <- live_network(object)
  ds <- forge_dataset(object, new_data, model)
  tg <- explained_outputs(object, new_data, model, ds, class, k)
  n <- nrow(new_data)
  parts <- run_chunks(n, "LRP", function(start, len) {
    rs_lrp(model, ds, start, tg$targets[start + seq_len(len)], rule, epsilon, gamma)
  })
  vars <- predictor_labels(object$fit$layout$names)
  rel <- do.call(rbind, lapply(parts, `[[`, "relevance"))
  colnames(rel) <- vars
  out <- unlist(lapply(parts, `[[`, "output"), use.names = FALSE)
  res <- list(
    relevance = tibble::as_tibble(rel),
    output = out,
    residual = out - rowSums(rel),
    class = tg$class,
    outcome = if (length(outcome$names)) outcome$names[[k]] else NULL,
    rule = rule, epsilon = epsilon, gamma = if (rule == "gamma") gamma else NULL
  )
  if (reference == "mean") {
    targets <- sort(unique(tg$targets))
    mean_row <- mean_predictors(object, new_data)
    mds <- rust_dataset(model, mean_row[rep(1L, length(targets)), , drop = FALSE], object$fit$layout)
    m <- rs_lrp(model, mds, 0, targets, rule, epsilon, gamma)
    at <- match(tg$targets, targets)
    mrel <- m$relevance[at, , drop = FALSE]
    colnames(mrel) <- vars
    res$mean_relevance <- tibble::as_tibble(mrel)
    res$mean_output <- m$output[at]
    res$differential <- tibble::as_tibble(rel - mrel)
  }
  structure(res, class = "tabnet_lrp")
}

# The 0-based raw-output column each row explains, and its class.
explained_outputs <- function(object, new_data, model, ds, class, k) {
  outcome <- object$fit$outcome
  offset <- c(0L, cumsum(outcome$dims))[[k]]
  n <- nrow(new_data)
  if (outcome$task == "regression") {
    if (!is.null(class)) {
      abort_input("{.arg class} chooses a class to explain, but the outcome is numeric.")
    }
    return(list(targets = rep(as.integer(offset), n), class = NULL))
  }
  lv <- outcome$levels[[k]]
  if (!is.null(class)) {
    if (!(is.character(class) || is.factor(class)) || length(class) != 1 || !as.character(class) %in% lv) {
      value <- format_value(if (is.factor(class)) as.character(class) else class)
      abort_input(c("{.arg class} must be one of the outcome's levels {.or {.val {lv}}}, not {value}."))
    }
    codes <- rep(match(as.character(class), lv) - 1L, n)
  } else {
    ys <- outcome_columns(object, new_data)
    if (!is.null(ys)) {
      codes <- class_codes(ys[[outcome$names[[k]]]], lv, outcome$names[[k]])
    } else {
      prob <- rs_predict(model, ds, inference_batch_size)
      if (is.null(prob)) rlang::interrupt()
      codes <- max.col(prob[, offset + seq_along(lv), drop = FALSE], ties.method = "first") - 1L
    }
  }
  list(targets = as.integer(offset + codes), class = factor(lv[codes + 1L], levels = lv))
}

# One row: the numeric predictors at their mean over `new_data`, factors at
# their most frequent level (the seed study's "mean row").
mean_predictors <- function(object, new_data) {
  pred <- forge_predictors(object, new_data)$predictors
  row <- lapply(pred, function(col) {
    if (is.factor(col)) {
      tab <- table(col)
      factor(names(tab)[which.max(tab)], levels = levels(col))
    } else {
      mean(as.double(col), na.rm = TRUE)
    }
  })
  tibble::as_tibble(row)
}

#' @export
print.tabnet_lrp <- function(x, ...) {
  n <- nrow(x$relevance)
  p <- ncol(x$relevance)
  rule <- if (x$rule == "gamma") sprintf("gamma (gamma = %g, epsilon = %g)", x$gamma, x$epsilon) else
    sprintf("epsilon (epsilon = %g)", x$epsilon)
  cat(sprintf("TabNet LRP: %s observation%s, %d predictor%s, rule %s\n",
              format(n, big.mark = ","), if (n == 1) "" else "s", p, if (p == 1) "" else "s", rule))
  if (!is.null(x$class)) {
    tab <- table(x$class)
    cat("Explained classes: ", paste(sprintf("%s (%d)", names(tab), as.integer(tab)), collapse = ", "), "\n", sep = "")
  }
  share <- stats::median(abs(x$residual) / pmax(abs(x$output), 1e-12))
  cat(sprintf("Median |residual| / |output| (what biases and the stabiliser absorbed): %.3g\n", share))
  s <- summary(x)
  s <- s[order(-s$importance), ]
  show <- utils::head(s, 10)
  cat("Largest mean |relevance| (IQR-clipped):\n")
  print(show, n = 10)
  cat("Components: $relevance, $output, $residual, $class",
      if (!is.null(x$mean_relevance)) ", $mean_relevance, $mean_output, $differential", ".\n", sep = "")
  invisible(x)
}

# The seed study's robust summary of one relevance column: values outside
# [Q1 - 1.5 IQR, Q3 + 1.5 IQR] are set to 0, then mean |R|.
clipped_mean_abs <- function(r) {
  q <- stats::quantile(r, c(0.25, 0.75), names = FALSE, type = 7)
  iqr <- q[[2]] - q[[1]]
  r[r < q[[1]] - 1.5 * iqr | r > q[[2]] + 1.5 * iqr] <- 0
  mean(abs(r))
}

#' Summarise LRP relevances as the seed study does
#'
#' Per predictor (and per explained class), the mean absolute relevance
#' after setting the values outside \eqn{[Q_1 - 1.5\,IQR, Q_3 + 1.5\,IQR]} of
#' that predictor's relevances to zero (Khot, Neubauer & Roy 2023).
#'
#' @param object A `tabnet_lrp` result.
#' @param ... Not used.
#' @return A tibble with columns `class` (absent for regression), `variable`,
#'   `importance` (of `relevance`) and, for `reference = "mean"`,
#'   `mean_behaviour` (the mean row's |relevance|) and `differential` (the
#'   same summary of `differential`).
#' @export
summary.tabnet_lrp <- function(object, ...) {
  check_dots_unused(...)
  vars <- names(object$relevance)
  groups <- if (is.null(object$class)) list(all = seq_len(nrow(object$relevance))) else
    split(seq_len(nrow(object$relevance)), object$class, drop = TRUE)
  rows <- lapply(names(groups), function(g) {
    i <- groups[[g]]
    d <- tibble::tibble(
      class = g, variable = vars,
      importance = vapply(object$relevance[i, , drop = FALSE], clipped_mean_abs, numeric(1),
                          USE.NAMES = FALSE)
    )
    if (!is.null(object$mean_relevance)) {
      d$mean_behaviour <- abs(unlist(object$mean_relevance[i[[1]], ], use.names = FALSE))
      d$differential <- vapply(object$differential[i, , drop = FALSE], clipped_mean_abs, numeric(1),
                               USE.NAMES = FALSE)
    }
    d
  })
  out <- do.call(rbind, rows)
  if (is.null(object$class)) out$class <- NULL
  out
}

#' Plot LRP relevances
#'
#' Bars of the seed study's summary ([summary.tabnet_lrp()]): the mean
#' |relevance| of each predictor after IQR clipping, one facet per explained
#' class, the `top` predictors of each; with `reference = "mean"`, the LRP,
#' mean-behaviour and differential relevances side by side.
#'
#' @param object A `tabnet_lrp` result.
#' @param top How many predictors to show (the largest by `importance`).
#' @param ... Not used.
#' @return A ggplot object.
#' @method autoplot tabnet_lrp
#' @export
autoplot.tabnet_lrp <- function(object, top = 15, ...) {
  check_dots_unused(...)
  check_count(top, "top", min = 1)
  s <- summary(object)
  if (is.null(s$class)) s$class <- "output"
  best <- stats::aggregate(s$importance, list(variable = s$variable), max)
  keep <- utils::head(best$variable[order(-best$x)], top)
  s <- s[s$variable %in% keep, ]
  measures <- intersect(c("importance", "differential", "mean_behaviour"), names(s))
  labels <- c(importance = "LRP", differential = "Differential", mean_behaviour = "Mean-behaviour")
  long <- do.call(rbind, lapply(measures, function(m) {
    data.frame(class = s$class, variable = s$variable, value = s[[m]], measure = labels[[m]])
  }))
  long$measure <- factor(long$measure, levels = labels[measures])
  long$variable <- factor(long$variable, levels = rev(keep))
  ggplot2::ggplot(long, ggplot2::aes(x = .data$value, y = .data$variable, fill = .data$measure)) +
    ggplot2::geom_col(position = ggplot2::position_dodge(width = 0.8), width = 0.75) +
    ggplot2::facet_wrap(~class) +
    ggplot2::scale_fill_brewer(palette = "Set2", name = NULL) +
    ggplot2::labs(x = "Mean |relevance| (IQR-clipped)", y = NULL,
                  title = sprintf("LRP (%s rule)", object$rule)) +
    ggplot2::theme_minimal()
}
