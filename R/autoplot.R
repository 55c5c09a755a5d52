#' @importFrom ggplot2 autoplot
#' @importFrom rlang .data
#' @export
ggplot2::autoplot

#' Plot TabNet explanations
#'
#' Heat maps of the feature-selection masks of a [tabnet_explain()] result:
#' observations (rows of `new_data`, in their order) on the x axis, predictors
#' on the y axis, the mask value as the (viridis) fill.
#'
#' @param object A `tabnet_explain` object.
#' @param type `"mask_agg"` for the aggregated mask `M_explain`, or `"steps"`
#'   for the mask of each decision step, one facet per step.
#' @param quantile Values above this quantile (of all the plotted values, per
#'   step for `"steps"`) are clipped to it, so a few large values do not wash
#'   out the colour scale (e.g. `quantile = .995`).
#' @param ... Not used: an argument given here is an error (class
#'   `tabnetrs_error_unused_argument`).
#' @return A ggplot object.
#' @examples
#' \donttest{
#' set.seed(1)
#' x <- data.frame(a = rnorm(400), b = rnorm(400), c = rnorm(400))
#' x$y <- factor(ifelse(x$a - x$b > 0, "yes", "no"))
#' fit <- tabnet_fit(y ~ ., x, epochs = 3)
#' ex <- tabnet_explain(fit, x[order(x$a), ])
#' autoplot(ex)
#' autoplot(ex, type = "steps", quantile = .99)
#' }
#' @method autoplot tabnet_explain
#' @export
autoplot.tabnet_explain <- function(object, type = c("mask_agg", "steps"), quantile = 1, ...) {
  check_dots_unused(..., fn_args = c("type", "quantile"))
  type <- match.arg(type)
  check_number(quantile, "quantile", min = 0, max = 1)
  vars <- names(object$M_explain)
  if (type == "mask_agg") {
    long <- mask_long(object$M_explain, vars, quantile)
    long$step <- "Aggregated mask"
    fill <- "M_explain"
  } else {
    if (!length(object$masks)) abort_input("This explanation has no step masks.")
    steps <- sprintf("Step %d", seq_along(object$masks))
    long <- do.call(rbind, lapply(seq_along(object$masks), function(i) {
      d <- mask_long(object$masks[[i]], vars, quantile)
      d$step <- steps[i]
      d
    }))
    long$step <- factor(long$step, levels = steps)
    fill <- "Mask"
  }
  # tiles outlined in their own colour: no white seams between sub-pixel tiles
  ggplot2::ggplot(long, ggplot2::aes(x = .data$observation, y = .data$variable,
                                     fill = .data$mask_agg, colour = .data$mask_agg)) +
    ggplot2::geom_tile(linewidth = 0.1) +
    ggplot2::scale_fill_viridis_c(name = fill) +
    ggplot2::scale_colour_viridis_c(guide = "none") +
    ggplot2::scale_x_continuous(expand = c(0, 0)) +
    ggplot2::facet_wrap(~step) +
    ggplot2::labs(x = "Observation", y = "Variable") +
    ggplot2::theme_minimal() +
    ggplot2::theme(panel.grid = ggplot2::element_blank())
}

# One mask matrix as long data (observation, variable, mask_agg), clipped at
# the quantile. Variables are a factor with the first predictor at the top.
mask_long <- function(m, vars, quantile) {
  m <- as.matrix(m)
  n <- nrow(m)
  values <- as.vector(m)
  if (quantile < 1 && length(values)) {
    cap <- stats::quantile(values, probs = quantile, na.rm = TRUE, names = FALSE)
    values <- pmin(values, cap)
  }
  data.frame(
    observation = rep(seq_len(n), times = ncol(m)),
    variable = factor(rep(vars, each = n), levels = rev(vars)),
    mask_agg = values
  )
}

#' Plot the training history of a TabNet model
#'
#' The mean training loss per epoch (and the validation loss when
#' `valid_split > 0`), with a point on each epoch that has a checkpoint and,
#' when early stopping restored an earlier epoch, a dashed line at that epoch.
#' The y axis is on a log scale when every loss is positive.
#'
#' @param object A `tabnet_fit` or `tabnet_pretrain`.
#' @param ... Not used: an argument given here is an error (class
#'   `tabnetrs_error_unused_argument`).
#' @return A ggplot object.
#' @examples
#' \donttest{
#' set.seed(1)
#' x <- data.frame(a = rnorm(400), b = rnorm(400))
#' x$y <- x$a - x$b + rnorm(400, sd = .1)
#' fit <- tabnet_fit(y ~ ., x, epochs = 6, valid_split = .2, checkpoint_epochs = 2)
#' autoplot(fit)
#' }
#' @method autoplot tabnet_fit
#' @export
autoplot.tabnet_fit <- function(object, ...) {
  check_dots_unused(...)
  plot_history(object, "Training history")
}

#' @rdname autoplot.tabnet_fit
#' @method autoplot tabnet_pretrain
#' @export
autoplot.tabnet_pretrain <- function(object, ...) {
  check_dots_unused(...)
  plot_history(object, "Pretraining history")
}

history_data <- function(object) {
  metrics <- object$fit$metrics
  if (!length(metrics)) return(NULL)
  rows <- lapply(seq_along(metrics), function(e) {
    m <- metrics[[e]]
    if (is.null(m)) return(NULL)
    checkpoint <- isTRUE(m$checkpoint)
    out <- data.frame(epoch = e, dataset = "train", loss = mean(m$train), checkpoint = checkpoint)
    if (length(m$valid)) {
      out <- rbind(out, data.frame(epoch = e, dataset = "valid", loss = mean(m$valid), checkpoint = checkpoint))
    }
    out
  })
  d <- do.call(rbind, rows)
  d$dataset <- factor(d$dataset, levels = c("train", "valid"))
  d
}

plot_history <- function(object, title) {
  d <- history_data(object)
  if (is.null(d)) abort_model("This model has no training history to plot.")
  log_y <- all(is.finite(d$loss) & d$loss > 0)
  p <- ggplot2::ggplot(d, ggplot2::aes(x = .data$epoch, y = .data$loss, colour = .data$dataset)) +
    ggplot2::geom_line()
  # each manual scale only with the layer that uses it (ggplot2 >= 3.5 warns
  # about a manual scale whose values match no data)
  cp <- d[d$checkpoint, , drop = FALSE]
  if (nrow(cp)) {
    p <- p + ggplot2::geom_point(data = cp, ggplot2::aes(shape = "checkpoint"), size = 2) +
      ggplot2::scale_shape_manual(values = c(checkpoint = 16))
  }
  best <- object$fit$best_epoch
  if (length(best) == 1 && !is.na(best)) {
    label <- if (isTRUE(object$fit$stopped_early)) "best epoch (restored)" else "best epoch"
    p <- p + ggplot2::geom_vline(data = data.frame(best = best, label = label),
                                 ggplot2::aes(xintercept = .data$best, linetype = .data$label),
                                 colour = "grey40") +
      ggplot2::scale_linetype_manual(values = stats::setNames("dashed", label))
  }
  colours <- c(train = "#1b9e77", valid = "#d95f02")
  p <- p +
    ggplot2::scale_colour_manual(values = colours[intersect(names(colours), as.character(unique(d$dataset)))]) +
    ggplot2::labs(x = "Epoch", y = if (log_y) "Mean loss (log scale)" else "Mean loss",
                  colour = "Dataset", shape = NULL, linetype = NULL, title = title) +
    ggplot2::theme_minimal() +
    ggplot2::theme(legend.position = "bottom")
  if (max(d$epoch) <= 20) p <- p + ggplot2::scale_x_continuous(breaks = unique(d$epoch))
  if (log_y) p <- p + ggplot2::scale_y_log10()
  p
}

#' Plot TabNet feature importances
#'
#' A bar chart of a [tabnet_importance()] result, the most important predictor
#' at the top; permutation importances get error bars of one standard
#' deviation over the repeats.
#'
#' @param object A `tabnet_importance` tibble.
#' @param top Show only this many of the most important predictors.
#' @param ... Not used: an argument given here is an error (class
#'   `tabnetrs_error_unused_argument`).
#' @return A ggplot object.
#' @method autoplot tabnet_importance
#' @export
autoplot.tabnet_importance <- function(object, top = Inf, ...) {
  check_dots_unused(..., fn_args = "top")
  if (!identical(top, Inf)) check_count(top, "top", min = 1)
  d <- as.data.frame(object)
  if (!all(c("Variable", "Importance") %in% names(d))) {
    abort_input("{.arg object} needs the columns {.field Variable} and {.field Importance}.")
  }
  d <- d[order(-d$Importance), , drop = FALSE]
  d <- utils::head(d, min(nrow(d), top))
  d$Variable <- factor(d$Variable, levels = rev(d$Variable))
  p <- ggplot2::ggplot(d, ggplot2::aes(x = .data$Importance, y = .data$Variable)) +
    ggplot2::geom_col(fill = "#3b528b")
  if ("StDev" %in% names(d) && any(!is.na(d$StDev))) {
    p <- p + ggplot2::geom_errorbar(
      ggplot2::aes(xmin = .data$Importance - .data$StDev, xmax = .data$Importance + .data$StDev),
      width = 0.3, colour = "grey30", na.rm = TRUE
    )
  }
  method <- attr(object, "method")
  p +
    ggplot2::labs(x = capitalise_first(importance_label(object)), y = NULL,
                  title = if (is.null(method)) "Feature importance" else sprintf("Feature importance (%s)", method)) +
    ggplot2::theme_minimal()
}

capitalise_first <- function(x) {
  paste0(toupper(substr(x, 1, 1)), substr(x, 2, nchar(x)))
}
