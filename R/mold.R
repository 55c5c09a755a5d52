# The formula blueprint of every tabnetrs model: factors kept as they are (for
# the embeddings), no intercept.
tabnet_formula_blueprint <- function() {
  hardhat::default_formula_blueprint(indicators = "none", intercept = FALSE)
}

# Molding a formula without copying the predictors.
#
# hardhat's formula blueprint builds a model matrix and then a tibble of it:
# two full copies of the predictors (2 × 2.35 GB for a Higgs-size,
# 10.5M × 28 data frame). When the formula only names columns
# (`y ~ .`, `y ~ a + b`, `y ~ . - c`), the x/y blueprint on those columns gives
# the same predictors, outcome and prediction-time checks, and the data
# frame's column vectors are shared instead of copied.
mold_formula <- function(formula, data, call = rlang::caller_env()) {
  cols <- plain_formula_columns(formula, data)
  if (is.null(cols)) {
    return(hardhat::mold(formula, data, blueprint = tabnet_formula_blueprint()))
  }
  y <- data[[cols$outcome]]
  if (!is.factor(y) && !is.numeric(y)) abort_bad_outcome(y, cols$outcome, call = call)
  processed <- hardhat::mold(data[cols$predictors], data[cols$outcome])
  # the formula's order, before factors were moved last (user_predictor_order())
  attr(processed, "predictor_order") <- cols$labels
  processed
}

# The predictors in the order the user gave them: the formula's (or, for
# `y ~ .`, the data's) order, which hardhat's formula blueprint changes by
# putting factors last; the molded order for the other interfaces (x/y, recipe,
# Node), which keep it. NULL when a formula's terms are not plain columns.
# Positions in `grouped_features` refer to this order.
user_predictor_order <- function(processed) {
  molded <- predictor_labels(names(processed$predictors))
  order <- attr(processed, "predictor_order")
  bp <- processed$blueprint
  if (is.null(order) && inherits(bp, "formula_blueprint")) {
    terms <- tryCatch(stats::terms(bp$formula, data = bp$ptypes$predictors), error = function(e) NULL)
    order <- if (is.null(terms)) NULL else predictor_labels(attr(terms, "term.labels"))
    order <- vapply(order, function(l) {
      e <- tryCatch(str2lang(l), error = function(e) NULL)
      if (is.name(e)) as.character(e) else l
    }, character(1), USE.NAMES = FALSE)
  }
  if (is.null(order)) return(molded)
  if (!setequal(order, molded) || length(order) != length(molded)) return(NULL)
  order
}

# The outcome and predictor columns a formula names, or NULL when it does
# anything else (transformations, interactions, offsets, several outcomes, an
# outcome or column that is not in `data`).
plain_formula_columns <- function(formula, data) {
  if (!is.data.frame(data) || !inherits(formula, "formula") || length(formula) != 3L) return(NULL)
  lhs <- formula[[2L]]
  if (!is.name(lhs)) return(NULL)
  outcome <- as.character(lhs)
  if (!outcome %in% names(data)) return(NULL)
  terms <- tryCatch(stats::terms(formula, data = data), error = function(e) NULL)
  if (is.null(terms) || !is.null(attr(terms, "offset"))) return(NULL)
  labels <- attr(terms, "term.labels")
  if (!length(labels) || any(attr(terms, "order") != 1L)) return(NULL)
  # a non-syntactic name is a backticked label (`my var`): the column is `my var`
  labels <- vapply(labels, function(l) {
    e <- tryCatch(str2lang(l), error = function(e) NULL)
    if (is.name(e)) as.character(e) else l
  }, character(1), USE.NAMES = FALSE)
  if (!all(labels %in% names(data)) || outcome %in% labels) return(NULL)
  # the formula blueprint (indicators = "none") puts factor-like columns last
  factorish <- vapply(labels, function(v) is.factor(data[[v]]) || is.character(data[[v]]), logical(1))
  list(outcome = outcome, predictors = c(labels[!factorish], labels[factorish]), labels = labels)
}
