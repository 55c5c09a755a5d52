#' SHAP values of a TabNet model
#'
#' Interventional SHAP values (Shapley values of the model output with the
#' absent predictors taken from a background sample), computed natively: the
#' coalitions are built inside the Rust core's batches (never as R data
#' frames), run through the network in fixed-size chunks and averaged over
#' the background there. A progress bar shows for long runs, and Ctrl-C stops
#' the computation within a fraction of a second.
#'
#' * `exact = TRUE` (the default up to 14 players): all \eqn{2^p}
#'   coalitions, combined with Shapley's weights: the values of
#'   `kernelshap::permshap(exact = TRUE)` (and of exact Kernel SHAP) with the
#'   same background.
#' * `exact = FALSE`: Kernel SHAP as `kernelshap::kernelshap()` computes it
#'   (Covert & Lee's constrained regression): coalitions of sizes up to
#'   `hybrid_degree` and their complements enter exactly, the rest by paired
#'   sampling of `m` coalitions per iteration until every output's largest
#'   standard error is at most `tol` times the range of its values (or
#'   `max_iter` iterations). The random numbers are tabnetrs' own (see
#'   `seed`), so single values differ from kernelshap's within their standard
#'   errors.
#'
#' A player is an original predictor: a factor moves with all its embedding
#' columns, and a missing value (`NA`) with its column. For a model fitted
#' with `grouped_features` (see [tabnet_config()]) each attention group is one
#' player (its predictors move together) and `S` has one column per group
#' (named as in [tabnet_explain()]'s `M_explain_groups`); `X` then holds, for
#' a group of several predictors, a column of `NA` (no single value to show).
#'
#' The efficiency property holds: `rowSums(S) + baseline` equals
#' `predictions` (up to float rounding).
#'
#' @param object A `tabnet_fit`, or a parsnip `model_fit` or fitted
#'   `workflow` holding one.
#' @param new_data A data frame of the rows to explain (for a workflow, the
#'   raw data: its preprocessing is applied).
#' @param background A data frame with the same predictors (other columns,
#'   such as the outcome, are ignored): the reference distribution of the
#'   absent predictors. 50 to 200 rows is usual; the work grows linearly with
#'   its size.
#' @param type `"prob"` explains the class probabilities (the predicted value
#'   for regression), `"raw"` the network's output before the softmax (the
#'   logits, as `predict(type = "raw")`).
#' @param exact `TRUE` for exact SHAP (at most 16 players), `FALSE` for
#'   Kernel SHAP; by default exact up to 14 players.
#' @param bg_w Optional non-negative weights of the background rows.
#' @param hybrid_degree,m,tol,max_iter Kernel SHAP's settings, with
#'   kernelshap's defaults: `hybrid_degree` (coalition sizes enumerated
#'   exactly; `1 + (p in 4:16)`), `m` (even; coalitions sampled per iteration;
#'   `2 p (1 + 3 (hybrid_degree == 0))`), `tol` (0.005), `max_iter` (100).
#' @param seed Seed of Kernel SHAP's sampling: a whole number; `NULL` draws
#'   one from R's RNG, so [set.seed()] makes the result reproducible.
#' @param ... Must be empty (a misspelt argument is an error).
#' @return An object of class `c("tabnet_shap", "kernelshap")`, the list
#'   kernelshap returns, so `shapviz::shapviz()` takes it:
#'   * `S`: the SHAP values, an n × p matrix with the players' names as
#'     column names; for an outcome of more than two classes (or several
#'     outcomes) a named list of such matrices, one per class. For a binary
#'     outcome only the first level (yardstick's default event level) is
#'     explained;
#'   * `X`: the explained predictors (a data frame, one column per player);
#'   * `baseline`: the background's weighted mean output (one per matrix);
#'   * `bg_X`, `bg_w`: the background and its weights (`NULL`: equal);
#'   * `SE`: standard errors like `S` (zero for exact values); `n_iter`,
#'     `converged`: Kernel SHAP's iterations and convergence per row (1 and
#'     `TRUE` for exact values); `exact`, `m` (coalitions per row and
#'     iteration), `m_exact` (coalitions enumerated), `prop_exact`, `txt`;
#'   * `predictions`: the outputs explained, an n × K matrix;
#'   * `algorithm`: `"permshap"` (exact) or `"kernelshap"`; `type`.
#'
#'   Plot it with [autoplot()][autoplot.tabnet_shap].
#' @references Lundberg, S. M. and Lee, S.-I. (2017). A unified approach to
#'   interpreting model predictions. NeurIPS 30.
#'
#'   Covert, I. and Lee, S.-I. (2021). Improving KernelSHAP: practical Shapley
#'   value estimation using linear regression. AISTATS.
#' @seealso [tabnet_importance()], [tabnet_explain()].
#' @examples
#' \donttest{
#' set.seed(1)
#' x <- data.frame(a = rnorm(400), b = rnorm(400), c = rnorm(400))
#' x$y <- factor(ifelse(x$a - x$b > 0, "yes", "no"))
#' fit <- tabnet_fit(y ~ ., x, epochs = 3)
#' sh <- tabnet_shap(fit, x[1:20, ], background = x[301:400, ])
#' head(sh$S)
#' autoplot(sh)
#' autoplot(sh, row = 1)
#' }
#' @export
tabnet_shap <- function(object, new_data, background, type = c("prob", "raw"), exact = NULL,
                        bg_w = NULL, hybrid_degree = NULL, m = NULL, tol = 0.005,
                        max_iter = 100, seed = NULL, ...) {
  UseMethod("tabnet_shap")
}

#' @export
#' @rdname tabnet_shap
tabnet_shap.default <- function(object, new_data, background, type = c("prob", "raw"), exact = NULL,
                                bg_w = NULL, hybrid_degree = NULL, m = NULL, tol = 0.005,
                                max_iter = 100, seed = NULL, ...) {
  abort_input(c(
    "{.fn tabnet_shap} is not defined for a {.cls {class(object)[1]}}.",
    i = "Use a model from {.fn tabnet_fit}, or a parsnip/workflow fit of {.fn tabnet}."
  ))
}

#' @export
#' @rdname tabnet_shap
tabnet_shap.model_fit <- function(object, new_data, background, type = c("prob", "raw"), exact = NULL,
                                  bg_w = NULL, hybrid_degree = NULL, m = NULL, tol = 0.005,
                                  max_iter = 100, seed = NULL, ...) {
  check_shap_dots(...)
  shap_impl(engine_fit(object), new_data, background, type, exact, bg_w, hybrid_degree, m, tol,
            max_iter, seed)
}

#' @export
#' @rdname tabnet_shap
tabnet_shap.workflow <- function(object, new_data, background, type = c("prob", "raw"), exact = NULL,
                                 bg_w = NULL, hybrid_degree = NULL, m = NULL, tol = 0.005,
                                 max_iter = 100, seed = NULL, ...) {
  check_shap_dots(...)
  fit <- engine_fit(object)
  new_data <- forge_workflow(object, new_data)$predictors
  check_background_arg(background)
  background <- forge_workflow(object, background, outcomes = FALSE)$predictors
  shap_impl(fit, new_data, background, type, exact, bg_w, hybrid_degree, m, tol, max_iter, seed)
}

#' @export
#' @rdname tabnet_shap
tabnet_shap.tabnet_fit <- function(object, new_data, background, type = c("prob", "raw"), exact = NULL,
                                   bg_w = NULL, hybrid_degree = NULL, m = NULL, tol = 0.005,
                                   max_iter = 100, seed = NULL, ...) {
  check_shap_dots(...)
  shap_impl(object, new_data, background, type, exact, bg_w, hybrid_degree, m, tol, max_iter, seed)
}

check_shap_dots <- function(...) check_dots_unused(..., fn_args = shap_args)

shap_args <- c("new_data", "background", "type", "exact", "bg_w", "hybrid_degree", "m", "tol",
               "max_iter", "seed")

check_background_arg <- function(background) {
  if (missing(background) || is.null(background)) {
    tabnetrs_abort(c("{.arg background} is missing: give a data frame of reference rows with the predictors.",
                     i = "50 to 200 rows of the training data are usual."),
                   "input", subclass = "tabnetrs_error_shap_background")
  }
  if (!is.data.frame(background) && !is.matrix(background)) {
    tabnetrs_abort("{.arg background} must be a data frame, not {.obj_type_friendly {background}}.",
                   "input", subclass = "tabnetrs_error_shap_background")
  }
  if (nrow(background) == 0) {
    tabnetrs_abort("{.arg background} has zero rows: SHAP needs at least one reference row.",
                   "input", subclass = "tabnetrs_error_shap_background")
  }
  invisible()
}

# The most players exact SHAP accepts (2^16 coalitions per row).
shap_max_exact <- 16L
# Mixed rows per forward pass in the core (Ctrl-C is polled between passes).
shap_chunk_rows <- 32768L
# Forward rows per call from R (the progress bar moves between calls).
shap_block_rows <- 2^21

shap_impl <- function(object, new_data, background, type, exact, bg_w, hybrid_degree, m, tol,
                      max_iter, seed) {
  if (!inherits(object, "tabnet_fit")) {
    abort_input("{.fn tabnet_shap} needs a fitted model with a prediction head, not a {.cls {class(object)[1]}}.")
  }
  type <- if (identical(type, c("prob", "raw"))) "prob" else match_choice(type, c("prob", "raw"), "type")
  check_new_data(new_data, object = object)
  check_background_arg(background)
  if (is.matrix(new_data)) new_data <- as.data.frame(new_data)
  if (is.matrix(background)) background <- as.data.frame(background)
  need <- names(object$blueprint$ptypes$predictors)
  absent <- setdiff(need, colnames(background))
  if (length(absent)) {
    tabnetrs_abort(c(
      "{.arg background} lacks {cli::qty(length(absent))}{?the predictor/the predictors} {.field {absent}}.",
      i = "It needs the columns the model was fitted on: {.field {need}}."
    ), "input", subclass = "tabnetrs_error_shap_background")
  }
  n_bg <- nrow(background)
  if (!is.null(bg_w)) {
    if (!is.numeric(bg_w) || length(bg_w) != n_bg || anyNA(bg_w) || any(!is.finite(bg_w)) ||
        any(bg_w < 0) || all(bg_w == 0)) {
      tabnetrs_abort("{.arg bg_w} must be {n_bg} finite non-negative weights (one per row of {.arg background}), not all zero.",
                     "input", subclass = "tabnetrs_error_shap_background")
    }
    bg_w <- as.double(bg_w)
  }
  # players: predictors, or the model's attention groups
  vars <- predictor_labels(object$fit$layout$names)
  groups <- model_groups(object)
  players <- if (length(groups)) groups else stats::setNames(as.list(vars), vars)
  p <- length(players)
  if (is.null(exact)) exact <- p <= 14
  check_flag(exact, "exact")
  if (exact && p > shap_max_exact) {
    tabnetrs_abort(c(
      "Exact SHAP handles at most {shap_max_exact} predictors ({2^shap_max_exact} coalitions per row); this model has {p}.",
      i = "Use {.code exact = FALSE} for Kernel SHAP."
    ), "input", subclass = "tabnetrs_error_shap_exact")
  }
  if (is.null(hybrid_degree)) hybrid_degree <- 1L + (p %in% 4:16)
  check_count(hybrid_degree, "hybrid_degree", min = 0, max = max(p %/% 2, 0))
  if (is.null(m)) m <- 2L * p * (1L + 3L * (hybrid_degree == 0L))
  check_count(m, "m", min = 2)
  if (m %% 2 != 0) {
    value <- format_value(m)
    abort_input("{.arg m} must be even (coalitions are sampled in complementary pairs), not {value}.")
  }
  check_number(tol, "tol", min = 0)
  check_count(max_iter, "max_iter", min = 1)
  seed <- new_seed(seed, kind = "input")

  model <- live_network(object)
  ds <- forge_dataset(object, new_data, model)
  bg_ds <- forge_dataset(object, background, model)
  idx <- lapply(players, function(g) as.integer(match(g, vars) - 1L))
  ex <- rs_shap_new(model, ds, bg_ds, bg_w, unname(idx), type, shap_chunk_rows)
  info <- rs_shap_info(ex)
  n <- nrow(new_data)
  k <- length(info$baseline)

  # work per row in forward rows, and the rows of one call
  kernel_exact <- !exact && (p < 2 || p %/% 2 == hybrid_degree)
  m_exact <- if (exact) max(2^p - 2, 0) else if (hybrid_degree >= 1) shap_m_exact(p, hybrid_degree) else 0
  per_row <- (m_exact + if (exact || kernel_exact) 0 else 2 * m) * n_bg
  block <- max(1L, min(n, as.integer(shap_block_rows %/% max(per_row, 1))))
  values <- array(0, c(k, p, n))
  se <- array(0, c(k, p, n))
  n_iter <- integer(n)
  converged <- logical(n)
  show_bar <- n > block && interactive() && !is_knitting()
  if (show_bar) cli::cli_progress_bar("SHAP", total = n, .envir = environment())
  start <- 0L
  while (start < n) {
    len <- min(block, n - start)
    res <- if (exact) {
      rs_shap_exact(ex, model, start, len)
    } else {
      rs_shap_kernel(ex, model, start, len, hybrid_degree, m, tol, max_iter, seed + start)
    }
    if (is.null(res)) rlang::interrupt()
    rows <- start + seq_len(len)
    values[, , rows] <- res$values
    se[, , rows] <- res$se
    n_iter[rows] <- res$n_iter
    converged[rows] <- res$converged
    start <- start + len
    if (show_bar) cli::cli_progress_update(set = start, .envir = environment())
  }
  if (show_bar) cli::cli_progress_done(.envir = environment())
  se[is.nan(se)] <- NA_real_
  new_tabnet_shap(object, new_data, background, bg_w, players, type, values, se, n_iter, converged,
                  info, exact = exact || kernel_exact,
                  algorithm = if (exact) "permshap" else "kernelshap",
                  m = if (exact || kernel_exact) 0L else as.integer(m), m_exact = as.integer(m_exact),
                  hybrid_degree = hybrid_degree)
}

# Coalitions Kernel SHAP enumerates exactly for degree `deg`.
shap_m_exact <- function(p, deg) {
  sum(vapply(seq_len(deg), function(k) if (p == 2 * k) choose(p, k) else 2 * choose(p, k), numeric(1)))
}

# Which output columns are explained, and their names.
shap_outputs <- function(outcome) {
  if (outcome$task == "regression") {
    return(list(cols = seq_along(outcome$names), names = outcome$names))
  }
  if (outcome$task == "classification" && length(outcome$names) == 1 && outcome$dims[[1]] == 2) {
    return(list(cols = 1L, names = outcome$levels[[1]][[1]]))
  }
  nm <- if (length(outcome$names) == 1 && outcome$task == "classification") {
    outcome$levels[[1]]
  } else {
    unlist(Map(function(o, lv) paste(o, lv, sep = "_"), outcome$names, outcome$levels), use.names = FALSE)
  }
  list(cols = seq_len(sum(outcome$dims)), names = nm)
}

new_tabnet_shap <- function(object, new_data, background, bg_w, players, type, values, se, n_iter,
                            converged, info, exact, algorithm, m, m_exact, hybrid_degree) {
  outs <- shap_outputs(object$fit$outcome)
  pl <- names(players)
  as_mat <- function(a, col) {
    mat <- matrix(a[col, , ], ncol = length(pl), byrow = TRUE, dimnames = list(NULL, pl))
    mat
  }
  S <- lapply(outs$cols, function(col) as_mat(values, col))
  SE <- lapply(outs$cols, function(col) as_mat(se, col))
  names(S) <- names(SE) <- outs$names
  if (length(S) == 1) {
    S <- S[[1]]
    SE <- SE[[1]]
  }
  pred <- info$predictions[, outs$cols, drop = FALSE]
  colnames(pred) <- outs$names
  X <- shap_display(new_data, players)
  bg_X <- as.data.frame(background)[, names(object$blueprint$ptypes$predictors), drop = FALSE]
  p <- length(pl)
  txt <- if (algorithm == "permshap") "Exact permutation SHAP (tabnetrs)" else if (exact) {
    "Exact Kernel SHAP values by the hybrid approach (tabnetrs)"
  } else if (hybrid_degree == 0) "Kernel SHAP values by iterative sampling (tabnetrs)" else {
    sprintf("Kernel SHAP values by the hybrid strategy of degree %d (tabnetrs)", hybrid_degree)
  }
  structure(list(
    S = S, X = X, baseline = info$baseline[outs$cols], bg_X = bg_X, bg_w = bg_w, SE = SE,
    n_iter = n_iter, converged = converged, exact = exact, m = m, m_exact = m_exact,
    prop_exact = if (exact) 1 else shap_prop_exact(p, hybrid_degree), txt = txt,
    predictions = pred, algorithm = algorithm, type = type
  ), class = c("tabnet_shap", "kernelshap"))
}

shap_prop_exact <- function(p, deg) {
  if (deg == 0) return(0)
  s <- seq_len(p - 1)
  w <- 1 / (s * (p - s))
  w <- w / sum(w)
  2 * sum(w[seq_len(deg)]) - w[deg] * (p == 2 * deg)
}

# The explained rows for display: one column per player (a group of several
# predictors has no single value: NA).
shap_display <- function(new_data, players) {
  new_data <- as.data.frame(new_data)
  cols <- lapply(players, function(g) {
    if (length(g) == 1) new_data[[g]] else rep(NA_real_, nrow(new_data))
  })
  out <- as.data.frame(cols, optional = TRUE, stringsAsFactors = FALSE)
  names(out) <- names(players)
  rownames(out) <- NULL
  out
}

#' @export
print.tabnet_shap <- function(x, n = 2L, ...) {
  S <- x$S
  one <- if (is.list(S)) S[[1]] else S
  cat(sprintf("%s: %s row%s x %d predictor%s, %s background row%s, output %s\n",
              x$txt, format(nrow(one), big.mark = ","), if (nrow(one) == 1) "" else "s",
              ncol(one), if (ncol(one) == 1) "" else "s",
              format(nrow(x$bg_X), big.mark = ","), if (nrow(x$bg_X) == 1) "" else "s",
              if (identical(x$type, "raw")) "raw (logits)" else "probability / value"))
  if (!isTRUE(x$exact)) {
    cat(sprintf("Iterations: mean %.1f; rows not converged: %d\n", mean(x$n_iter), sum(!x$converged)))
  }
  cat("SHAP values of the first rows:\n")
  if (is.list(S)) print(lapply(S, utils::head, n)) else print(utils::head(S, n))
  invisible(x)
}

#' Plot SHAP values
#'
#' A beeswarm summary of a [tabnet_shap()] result (one row of points per
#' predictor, sorted by mean absolute SHAP value, coloured by the predictor's
#' value scaled to \[0, 1\] within the explained rows), or, with `row`, the
#' waterfall of one row: from the baseline, each predictor's SHAP value in
#' turn (largest absolute value first) to the prediction.
#'
#' @param object A `tabnet_shap` object.
#' @param row `NULL` for the summary, or the row (a single index) to draw as
#'   a waterfall.
#' @param class For several classes, which one (a name or index; default the
#'   first).
#' @param max_display At most this many predictors (the rest are summed into
#'   one bar or dropped from the summary).
#' @param ... Not used.
#' @return A ggplot object.
#' @method autoplot tabnet_shap
#' @export
autoplot.tabnet_shap <- function(object, row = NULL, class = 1, max_display = 15, ...) {
  S <- object$S
  baseline <- object$baseline
  pred <- object$predictions
  if (is.list(S)) {
    ok <- (is.numeric(class) && length(class) == 1 && class >= 1 && class <= length(S)) ||
      (is.character(class) && length(class) == 1 && class %in% names(S))
    if (!ok) {
      value <- format_value(class)
      choices <- names(S)
      abort_input("{.arg class} must be one of {.or {.val {choices}}} or an index, not {value}.")
    }
    i <- if (is.character(class)) match(class, names(S)) else class
    S <- S[[i]]
    baseline <- baseline[[i]]
    pred <- pred[, i]
  } else {
    pred <- pred[, 1]
  }
  check_count(max_display, "max_display", min = 1)
  if (is.null(row)) return(shap_beeswarm(S, object$X, max_display))
  check_count(row, "row", min = 1, max = nrow(S))
  shap_waterfall(S[row, ], object$X[row, , drop = FALSE], baseline, pred[[row]], max_display)
}

shap_beeswarm <- function(S, X, max_display) {
  imp <- colMeans(abs(S))
  keep <- names(sort(imp, decreasing = TRUE))[seq_len(min(max_display, length(imp)))]
  scaled <- vapply(keep, function(v) {
    x <- X[[v]]
    x <- if (is.factor(x)) as.numeric(x) else suppressWarnings(as.numeric(x))
    r <- range(x, na.rm = TRUE)
    if (!all(is.finite(r)) || r[2] == r[1]) rep(0.5, length(x)) else (x - r[1]) / (r[2] - r[1])
  }, numeric(nrow(S)))
  if (!is.matrix(scaled)) scaled <- matrix(scaled, nrow = nrow(S), dimnames = list(NULL, keep))
  long <- data.frame(
    variable = factor(rep(keep, each = nrow(S)), levels = rev(keep)),
    shap = as.vector(S[, keep, drop = FALSE]),
    value = as.vector(scaled)
  )
  # a deterministic vertical spread within each predictor's row, widest where
  # the values are dense (a simple beeswarm)
  long$y <- as.numeric(long$variable) + shap_spread(long$shap, long$variable)
  ggplot2::ggplot(long, ggplot2::aes(x = .data$shap, y = .data$y, colour = .data$value)) +
    ggplot2::geom_vline(xintercept = 0, colour = "grey60") +
    ggplot2::geom_point(size = 1.2, alpha = 0.8) +
    ggplot2::scale_colour_gradient(low = "#0052A5", high = "#E0162B", name = "Feature value",
                                   breaks = c(0, 1), labels = c("low", "high"), limits = c(0, 1)) +
    ggplot2::scale_y_continuous(breaks = seq_along(levels(long$variable)),
                                labels = levels(long$variable)) +
    ggplot2::labs(x = "SHAP value", y = NULL) +
    ggplot2::theme_minimal()
}

shap_spread <- function(x, group, width = 0.35) {
  out <- numeric(length(x))
  for (g in unique(group)) {
    i <- which(group == g)
    if (length(i) < 2) next
    d <- stats::density(x[i], n = 128)
    dens <- stats::approx(d$x, d$y, xout = x[i], rule = 2)$y
    dens <- dens / max(dens)
    r <- rank(x[i], ties.method = "first")
    out[i] <- width * dens * ifelse(r %% 2 == 0, 1, -1) * ((r %% 7) / 7)
  }
  out
}

shap_waterfall <- function(s, x, baseline, prediction, max_display) {
  ord <- order(-abs(s))
  s <- s[ord]
  labels <- vapply(names(s), function(v) {
    val <- x[[v]]
    if (is.null(val) || (length(val) == 1 && is.na(val))) v else paste0(v, " = ", format(val, digits = 3))
  }, character(1))
  if (length(s) > max_display) {
    rest <- sum(s[-seq_len(max_display - 1)])
    s <- c(s[seq_len(max_display - 1)], rest)
    labels <- c(labels[seq_len(max_display - 1)], sprintf("%d other predictors", length(ord) - max_display + 1))
  }
  ends <- baseline + cumsum(s)
  starts <- c(baseline, utils::head(ends, -1))
  df <- data.frame(
    label = factor(labels, levels = rev(labels)),
    start = starts, end = ends,
    sign = ifelse(s >= 0, "positive", "negative")
  )
  df$pos <- as.numeric(df$label)
  ggplot2::ggplot(df) +
    ggplot2::geom_rect(ggplot2::aes(xmin = .data$start, xmax = .data$end,
                                    ymin = .data$pos - 0.4, ymax = .data$pos + 0.4, fill = .data$sign)) +
    ggplot2::geom_vline(xintercept = c(baseline, prediction), linetype = c("dashed", "solid"),
                        colour = "grey40") +
    ggplot2::scale_fill_manual(values = c(positive = "#E0162B", negative = "#0052A5"), guide = "none") +
    ggplot2::scale_y_continuous(breaks = df$pos, labels = as.character(df$label)) +
    ggplot2::labs(x = sprintf("Output (baseline %s, prediction %s)", format(baseline, digits = 3),
                              format(prediction, digits = 3)), y = NULL) +
    ggplot2::theme_minimal()
}
