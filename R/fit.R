#' Fit a TabNet model
#'
#' Trains a TabNet network (Arik & Pfister, 2021) for classification (factor
#' outcomes) or regression (numeric outcomes), with one or several outcomes.
#' Numeric predictors are used as they are, factors through learned embeddings.
#' Missing predictor values are allowed: a missing cell gets no prior attention
#' (as in the `tabnet` package); a factor level not seen at fit time is
#' handled as a missing value at prediction (with a warning), as through a
#' workflow and in the `tabnet` package.
#'
#' @param x Depending on the context:
#'   * A __data frame__ or __matrix__ of predictors.
#'   * A __formula__ specifying the outcome(s) and predictors.
#'   * A __recipe__ specifying a set of preprocessing steps.
#'   * A `data.tree` __Node__ (hierarchical classification): its leaves are
#'     the rows, their attributes the predictors and the levels between the
#'     root and the leaves the outcomes `level_2`, `level_3`, ... (see
#'     [node_to_df()] and [check_compliant_node()]). The network has one
#'     output per node of these levels, trained and predicted with the max
#'     constraint of C-HMCNN (Giunchiglia & Lukasiewicz, 2020): a node's
#'     probability is the maximum of its own and its descendants' sigmoid
#'     outputs, so it is never below a descendant's, and the loss is their
#'     MCLoss (a binary cross-entropy per node). See
#'     `vignette("hierarchical", package = "tabnetrs")`.
#' @param y When `x` is a data frame or matrix, the outcome: a factor or numeric
#'   vector with one value per row of `x`, or a data frame of outcomes (all
#'   factors or all numeric). A character or logical outcome is an error:
#'   convert it with [factor()] for classification. Predictor column names
#'   must be unique.
#' @param data When a __recipe__ or __formula__ is used, the data frame holding
#'   predictors and outcome(s); with a formula, also [tabnet_arrow()] data
#'   (Arrow files or streams, trained on record batch by record batch).
#' @param formula A formula such as `y ~ .` or `y1 + y2 ~ .`.
#' @param tabnet_model A previously fitted `tabnet_fit` to continue training
#'   (epochs, metrics, checkpoints and the learning-rate schedule continue; without
#'   `config`, its training settings are reused and `...` overrides them), or a
#'   `tabnet_pretrain` whose encoder is the starting point (fine-tuning).
#'   Predictors are matched by name and factor levels as sets, so the data may
#'   come through another interface (data frame, formula, recipe, matrix) and
#'   in another column order; the model keeps `tabnet_model`'s column and
#'   level order, on which its weights depend.
#' @param config A [tabnet_config()]; arguments in `...` override it.
#' @param ... [tabnet_config()] arguments, e.g. `epochs = 10`.
#' @param from_epoch With `tabnet_model`, restart from the weights of this
#'   checkpointed epoch (metrics after it are dropped).
#' @param weights Optional case weights (numeric, or hardhat
#'   `importance_weights()` / `frequency_weights()`); they weight each row's loss.
#' @return A `tabnet_fit` object (a `hardhat_model`) with elements `fit`
#'   (`network`, `metrics`, `config`, `checkpoints`, `importances`, ...),
#'   `serialized_net` (the weights as a raw vector, so [saveRDS()] keeps
#'   everything) and `blueprint`. `fit$metrics[[epoch]]` is a list with `train`
#'   (mean training loss of the epoch), `valid` (validation loss, `NULL`
#'   without `valid_split`), `checkpoint` (whether the epoch's weights were
#'   kept), `learn_rate` (the learning rate the epoch started with) and
#'   `seconds` (wall-clock time of the epoch's training pass, validation
#'   excluded).
#'   With early stopping, `fit$best_epoch` is the epoch whose weights the model
#'   holds; `fit$interrupted` is `TRUE` when training was stopped with Ctrl-C
#'   (the model keeps what was trained so far).
#' @examples
#' \donttest{
#' set.seed(1)
#' df <- data.frame(a = rnorm(500), b = rnorm(500))
#' df$y <- factor(ifelse(df$a + df$b > 0, "yes", "no"))
#' fit <- tabnet_fit(y ~ ., df, epochs = 3)
#' predict(fit, df[1:5, ], type = "prob")
#' }
#' @export
tabnet_fit <- function(x, ...) {
  UseMethod("tabnet_fit")
}

#' @export
#' @rdname tabnet_fit
tabnet_fit.default <- function(x, ...) {
  abort_input(c("{.fn tabnet_fit} is not defined for {.obj_type_friendly {x}}.",
                i = "Give a data frame or matrix of predictors with {.arg y}, a formula with {.arg data}, or a recipe with {.arg data}."))
}

#' @export
#' @rdname tabnet_fit
tabnet_fit.data.frame <- function(x, y, tabnet_model = NULL, config = tabnet_config(), ...,
                                  from_epoch = NULL, weights = NULL) {
  if (missing(y) || is.null(y)) abort_input("{.arg y} (the outcome) is missing.")
  check_predictor_names(names(x), "x")
  check_outcome_arg(y, nrow(x))
  processed <- hardhat::mold(x, y)
  tabnet_bridge(processed, config, list(...), tabnet_model, from_epoch, weights, "supervised")
}

#' @export
#' @rdname tabnet_fit
tabnet_fit.matrix <- function(x, y, tabnet_model = NULL, config = tabnet_config(), ...,
                              from_epoch = NULL, weights = NULL) {
  if (is.null(colnames(x))) colnames(x) <- sprintf("V%d", seq_len(ncol(x)))
  check_predictor_names(colnames(x), "x")
  tabnet_fit.data.frame(as.data.frame(x), y, tabnet_model = tabnet_model, config = config, ...,
                        from_epoch = from_epoch, weights = weights)
}

#' @export
#' @rdname tabnet_fit
tabnet_fit.formula <- function(formula, data, tabnet_model = NULL, config = tabnet_config(), ...,
                               from_epoch = NULL, weights = NULL) {
  if (inherits(data, "tabnet_arrow")) {
    return(arrow_fit(formula, data, tabnet_model, config, list(...), from_epoch, weights))
  }
  if (is.data.frame(data)) check_predictor_names(names(data), "data")
  processed <- mold_formula(formula, data)
  tabnet_bridge(processed, config, list(...), tabnet_model, from_epoch, weights, "supervised")
}

#' @export
#' @rdname tabnet_fit
tabnet_fit.recipe <- function(x, data, tabnet_model = NULL, config = tabnet_config(), ...,
                              from_epoch = NULL, weights = NULL) {
  processed <- hardhat::mold(x, data)
  tabnet_bridge(processed, config, list(...), tabnet_model, from_epoch, weights, "supervised")
}

#' @export
#' @rdname tabnet_fit
tabnet_fit.Node <- function(x, tabnet_model = NULL, config = tabnet_config(), ..., from_epoch = NULL) {
  xy <- node_to_df(x)
  check_predictor_names(names(xy$x), "x")
  processed <- hardhat::mold(xy$x, xy$y)
  tabnet_bridge(processed, config, list(...), tabnet_model, from_epoch, NULL, "supervised",
                hierarchical = TRUE)
}

# hardhat's three parts, shared by tabnet_fit() and tabnet_pretrain():
# * tabnet_bridge(): from the molded data to what the implementation needs --
#   checks the processed data, resolves the configuration, case weights,
#   threads, device and seed;
# * tabnet_impl(): builds or resumes the network, trains it, computes the
#   importances; returns the fields of the fitted object;
# * new_tabnet_fit() / new_tabnet_pretrain(): validate those fields and make
#   the `hardhat_model`.
# `kind` is the network kind, "supervised" or "pretrain" (model_kind(),
# model_class()).
# `hierarchical = TRUE` (the Node method): the outcomes are the levels of a
# tree (node_to_df()), fitted with the C-HMCNN constraint.
tabnet_bridge <- function(processed, config, dots, tabnet_model, from_epoch, weights, kind,
                          hierarchical = FALSE, call = rlang::caller_env()) {
  config <- resolve_config(config, dots, tabnet_model, kind, call = call)
  config <- groups_by_name(config, processed, call = call)
  predictors <- processed$predictors
  if (inherits(tabnet_model, c("tabnet_fit", "tabnet_pretrain")) && is.list(tabnet_model$fit$layout)) {
    # the earlier model's predictors, in its column order (its weights depend
    # on it), whatever interface either model was molded through
    aligned <- align_predictors(predictors, tabnet_model$fit$layout, call = call)
    predictors <- aligned$predictors
    layout <- aligned$layout
  } else {
    layout <- predictor_layout(predictors, call = call)
  }
  n <- nrow(predictors)
  if (n == 0) abort_input("The training data has zero rows.", call = call)
  if (n < 2) abort_input("Training needs at least 2 rows, not {n}.", call = call)
  outcomes <- if (kind == "supervised") processed$outcomes else NULL
  outcome <- if (kind == "supervised") outcome_layout(outcomes, hierarchical, call = call) else pretrain_outcome()
  if (kind == "supervised") check_loss(config$loss, outcome$task, outcome$dims, call = call)
  weights <- resolve_weights(weights, n, call = call)

  use_threads(config$num_threads, call = call)
  device <- resolve_device(config$device, call = call)
  seed <- new_seed(config$seed, call = call)

  res <- tabnet_impl(predictors, outcomes, weights, layout, outcome, config, kind,
                     tabnet_model, from_epoch, seed, device, call = call)
  constructor <- if (kind == "supervised") new_tabnet_fit else new_tabnet_pretrain
  result <- constructor(res$fit, res$serialized_net, processed$blueprint)
  if (!is.null(res$nonfinite)) abort_nonfinite(res$nonfinite, result, call = call)
  result
}

# The configuration of this call: continuing a fit (or a pretraining) without
# a `config`, its own training settings are the starting point, which `...`
# (`dots`) overrides.
resolve_config <- function(config, dots, tabnet_model, kind, call = rlang::caller_env()) {
  if (inherits(tabnet_model, model_class(kind)) && inherits(tabnet_model$fit$config, "tabnet_config") &&
      identical(config, tabnet_config())) {
    config <- tabnet_model$fit$config
    # the thread count belongs to this session, not to the saved model
    config[["num_threads"]] <- NULL
  }
  merge_config(config, dots, call = call)
}

# Builds (or resumes from `tabnet_model`) the network, trains it on the
# predictors / outcomes / weights checked by tabnet_bridge() and computes the
# importances. Returns list(fit, serialized_net, nonfinite): the fields of the
# fitted object, and list(epoch, loss) when training stopped on a non-finite
# loss (NULL otherwise).
# Where training starts: a fresh network, or (`tabnet_model`) the state of an
# earlier fit or pretraining to continue or fine-tune (resume_from()).
# list(model, history, checkpoints, checkpoint_digests, schedule, config).
start_training <- function(tabnet_model, config, layout, outcome, kind, from_epoch, seed, device, call = rlang::caller_env()) {
  if (!is.null(tabnet_model)) {
    return(resume_from(tabnet_model, config, layout, outcome, kind, from_epoch, seed, device, call = call))
  }
  if (!is.null(from_epoch)) abort_input("{.arg from_epoch} needs {.arg tabnet_model}.", call = call)
  net <- net_config(config, layout, outcome, call = call)
  list(model = rs_model_new(net_config_json(net), kind, config$pretraining_ratio, seed, device),
       history = list(), checkpoints = list(), checkpoint_digests = list(), schedule = NULL,
       config = config)
}

# The validation rows (1-based, sorted) of `n` rows: a `valid_split` share
# drawn with R's RNG (so set.seed() controls it); none without a split.
valid_rows <- function(n, valid_split, call = rlang::caller_env()) {
  if (valid_split <= 0) return(integer())
  n_valid <- max(1L, floor(n * valid_split))
  if (n - n_valid < 2) {
    abort_input("{.arg valid_split} = {valid_split} leaves {n - n_valid} of the {n} rows for training; at least 2 are needed.", call = call)
  }
  sort(sample.int(n, n_valid))
}

# What a fit or pretraining keeps (`fit$fit`), its weights and, when training
# stopped at a non-finite loss, where: from the trained network and the
# training run (train_epochs()).
fit_result <- function(model, run, config, importances, layout, outcome, kind) {
  serialized <- rs_model_weights(model)
  net_config_string <- as.character(rs_model_config(model))
  digest <- model_digest(kind, net_config_string, serialized)
  fit <- list(
    network = network_cache(model, digest),
    metrics = run$metrics,
    config = config,
    checkpoints = run$checkpoints,
    checkpoint_digests = run$checkpoint_digests,
    schedule = run$schedule,
    importances = importances,
    net_config = net_config_string,
    layout = layout,
    outcome = outcome,
    best_epoch = run$best_epoch,
    stopped_early = run$stopped_early,
    interrupted = run$interrupted,
    n_parameters = rs_model_n_parameters(model),
    digest = digest,
    layout_digest = layout_digest(layout, outcome)
  )
  list(fit = fit, serialized_net = serialized, nonfinite = run$nonfinite)
}

tabnet_impl <- function(predictors, outcomes, weights, layout, outcome, config, kind,
                        tabnet_model, from_epoch, seed, device, call = rlang::caller_env()) {
  n <- nrow(predictors)
  start <- start_training(tabnet_model, config, layout, outcome, kind, from_epoch, seed, device, call = call)
  model <- start$model
  history <- start$history
  checkpoints <- start$checkpoints
  checkpoint_digests <- start$checkpoint_digests
  schedule <- start$schedule
  config <- start$config
  valid_idx <- valid_rows(n, config$valid_split, call = call)
  rows <- function(df, idx) if (is.null(df)) NULL else df[idx, , drop = FALSE]
  train_idx <- if (length(valid_idx)) seq_len(n)[-valid_idx] else seq_len(n)
  whole <- length(valid_idx) == 0
  train_ds <- rust_dataset(model, if (whole) predictors else rows(predictors, train_idx), layout, outcome,
                           if (whole) outcomes else rows(outcomes, train_idx),
                           if (whole) weights else weights[train_idx], call = call)
  valid_ds <- if (length(valid_idx)) {
    rust_dataset(model, rows(predictors, valid_idx), layout, outcome, rows(outcomes, valid_idx), weights[valid_idx], call = call)
  }
  if (kind == "pretrain" && is.null(tabnet_model)) rs_model_prepare(model, train_ds)
  rs_manual_seed(seed + length(history))

  run <- train_epochs(model, train_ds, valid_ds, config, history, checkpoints, schedule,
                      checkpoint_digests, digest_of = function(w) {
                        model_digest(kind, as.character(rs_model_config(model)), w)
                      })

  importances <- NULL
  # also for a pretraining (the tabnet package's `vi_model(<pretrained>)`)
  if (!config$skip_importance) {
    importances <- fit_importance(model, predictors[train_idx, , drop = FALSE], layout, config, call = call)
  }
  fit_result(model, run, config, importances, layout, outcome, kind)
}

new_tabnet_fit <- function(fit, serialized_net, blueprint) {
  new_tabnet_model(fit, serialized_net, blueprint, "supervised")
}

new_tabnet_pretrain <- function(fit, serialized_net, blueprint) {
  new_tabnet_model(fit, serialized_net, blueprint, "pretrain")
}

# The fields a fitted object must have (`fit$fit`).
tabnet_fit_fields <- c("network", "metrics", "config", "checkpoints", "checkpoint_digests", "schedule",
                       "importances", "net_config", "layout", "outcome", "best_epoch", "stopped_early",
                       "interrupted", "n_parameters", "digest", "layout_digest")

# Constructor of tabnet_fit / tabnet_pretrain objects. The checks guard
# tabnetrs' own code (users never call it), so a failure is an internal error.
new_tabnet_model <- function(fit, serialized_net, blueprint, kind) {
  problem <- if (!is.list(fit) || !all(tabnet_fit_fields %in% names(fit))) {
    paste("fields missing:", paste(setdiff(tabnet_fit_fields, names(fit)), collapse = ", "))
  } else if (!is.raw(serialized_net)) {
    "`serialized_net` is not a raw vector"
  } else if (!inherits(blueprint, "hardhat_blueprint")) {
    "`blueprint` is not a hardhat blueprint"
  } else if (!is.environment(fit$network)) {
    "`network` is not a cache environment"
  } else if (!is.character(fit$net_config) || length(fit$net_config) != 1L) {
    "`net_config` is not a string"
  } else if (!is.character(fit$digest) || length(fit$digest) != 1L ||
             !identical(model_digest(kind, fit$net_config, serialized_net), fit$digest)) {
    "`digest` is not the checksum of the weights and network configuration"
  } else if (!is.list(fit$checkpoints) || !all(names(fit$checkpoint_digests) %in% names(fit$checkpoints))) {
    "checkpoint checksums without their checkpoints"
  }
  if (!is.null(problem)) abort_internal(paste0("new_tabnet_model(): ", problem))
  hardhat::new_model(fit = fit, serialized_net = serialized_net, blueprint = blueprint,
                     class = model_class(kind))
}

# Training met a NaN / infinite loss: an error that carries the model as it was
# before that epoch (`conditionCall(e)`, `e$fit`), so nothing trained is lost.
abort_nonfinite <- function(nonfinite, result, call = rlang::caller_env()) {
  epoch <- nonfinite$epoch
  loss <- format(nonfinite$loss)
  msg <- if (is.finite(nonfinite$loss)) "Training stopped at epoch {epoch}: its weights became infinite or NaN." else
    "Training stopped at epoch {epoch}: its loss was {loss}."
  kept <- length(result$fit$metrics)
  abort_input(c(msg,
                i = if (kept > 0) "The model of epoch {kept} (the last with a finite loss) is in the error's {.field fit} field." else
                  "No epoch finished with a finite loss; the error's {.field fit} field holds the initial model.",
                i = "Lower {.arg learn_rate}, set {.arg clip_value}, or rescale predictors or outcomes with very large values."),
              subclass = "tabnetrs_error_nonfinite", fit = result, call = call)
}

check_loss <- function(loss, task, dims = NULL, call = rlang::caller_env()) {
  if (identical(loss, "aum") && !(task == "classification" && identical(as.integer(dims), 2L))) {
    abort_config(c("{.val aum} is a loss for one binary outcome (a factor of two levels).",
                   i = "Use {.val auto} for this outcome."), call = call)
  }
  ok <- switch(loss,
    auto = TRUE,
    mse = task == "regression",
    cross_entropy = task == "classification",
    bce = task %in% c("classification", "hierarchical"),
    aum = TRUE
  )
  if (!ok && task == "hierarchical") {
    abort_config(c("{.val {loss}} is not a valid loss for a hierarchical outcome.",
                   i = "Hierarchical outcomes are fitted with the binary cross-entropy of C-HMCNN: use {.val auto} or {.val bce}."), call = call)
  }
  if (!ok) {
    type <- if (task == "regression") "numeric" else "factor"
    abort_config("{.val {loss}} is not a valid loss for outcome of type {type}.", call = call)
  }
}

# Positions in `grouped_features` refer to the predictors in the user's order
# (user_predictor_order()), which a formula's molding changes (factors go
# last): they are replaced by the names they stand for, so the stored
# configuration names its groups whatever the interface. A position beyond
# the predictors is left for resolve_groups() to report.
groups_by_name <- function(config, processed, call = rlang::caller_env()) {
  groups <- config$grouped_features
  positional <- vapply(groups, is.numeric, logical(1))
  if (!any(positional)) return(config)
  order <- user_predictor_order(processed)
  if (is.null(order)) {
    abort_config(c("{.arg grouped_features} gives positions, but this formula's predictors are not plain columns, so positions are ambiguous.",
                   i = "Give the groups as predictor names: {.field {predictor_labels(names(processed$predictors))}}."), call = call)
  }
  for (k in which(positional)) {
    g <- groups[[k]]
    if (all(g <= length(order))) groups[[k]] <- order[g]
  }
  config$grouped_features <- groups
  config
}

# Global importance: mask importance on a sample of training rows.
fit_importance <- function(model, predictors, layout, config, call = rlang::caller_env()) {
  n <- nrow(predictors)
  size <- config$importance_sample_size %||% min(n, 1e5)
  idx <- if (size >= n) seq_len(n) else sort(sample.int(n, size))
  mask_importance_of(model, rust_dataset(model, predictors[idx, , drop = FALSE], layout, call = call), layout, config, call = call)
}

# The mask importance stored with a fit, from the rows of the Rust data set
# `ds` (and per attention group, with feature groups).
mask_importance_of <- function(model, ds, layout, config, call = rlang::caller_env()) {
  imp <- tibble::tibble(variables = predictor_labels(layout$names), importance = rs_mask_importance(model, ds, inference_batch_size))
  idx0 <- resolve_groups(config$grouped_features, layout, call = call)
  if (length(idx0)) {
    groups <- attention_groups(idx0, layout, config$grouped_features)
    attr(imp, "groups") <- group_importance(imp$variables, imp$importance, groups)
  }
  imp
}

# The outcome of a continued fit: the same task, outputs, levels and (for a
# hierarchy) the same tree; the name
# only counts with several outcomes (the x/y interface names a vector outcome
# `.outcome`, a formula after its column).
same_outcome <- function(old, new) {
  identical(old$task, new$task) && identical(as.integer(old$dims), as.integer(new$dims)) &&
    identical(unname(old$levels), unname(new$levels)) &&
    identical(as.integer(old$parent), as.integer(new$parent)) &&
    (length(new$names) == 1L || identical(old$names, new$names))
}

# Starting point when `tabnet_model` is given: continue a fit (optionally from
# a checkpoint) or fine-tune from a pretrained encoder.
resume_from <- function(tabnet_model, config, layout, outcome, kind, from_epoch, seed, device, call = rlang::caller_env()) {
  if (!inherits(tabnet_model, c("tabnet_fit", "tabnet_pretrain"))) {
    abort_input("{.arg tabnet_model} must be a {.cls tabnet_fit} or {.cls tabnet_pretrain}, not {.obj_type_friendly {tabnet_model}}.", call = call)
  }
  old <- tabnet_model$fit
  # the predictors were matched by name and put in the model's order
  # (align_predictors())
  # architecture comes from the earlier model; training settings from `config`
  # (an element a model saved before it existed lacks becomes NULL, which
  # net_config() reads as that element's default)
  for (k in arch_settings()) config[k] <- list(old$config[[k]])
  old_kind <- model_kind(tabnet_model)
  # a fresh copy (training changes it), verified like any saved model
  src <- if (is.null(from_epoch)) {
    load_network(tabnet_model, tabnet_model$serialized_net, old$digest, device)
  } else {
    load_network(tabnet_model, checkpoint_weights(tabnet_model, from_epoch),
                 old$checkpoint_digests[[paste0("epoch_", from_epoch)]], device)
  }
  if (old_kind == kind) {
    if (kind == "supervised" && !same_outcome(old$outcome, outcome)) {
      abort_model(c("Model dimensions don't match.", i = "The outcome differs from the one {.arg tabnet_model} was trained on."), call = call)
    }
    # the loss is part of the network configuration (net_config()): kept
    config["loss"] <- list(old$config$loss %||% "auto")
    # epochs, metrics, checkpoints and the learning-rate schedule continue
    # (from `from_epoch` if given: later epochs are dropped)
    history <- old$metrics
    checkpoints <- old$checkpoints
    checkpoint_digests <- old$checkpoint_digests
    schedule <- old$schedule
    if (!is.null(from_epoch)) {
      history <- history[seq_len(from_epoch)]
      keep <- as.integer(sub("epoch_", "", names(checkpoints))) <= from_epoch
      checkpoints <- checkpoints[keep]
      checkpoint_digests <- checkpoint_digests[intersect(names(checkpoint_digests), names(checkpoints))]
      if (length(schedule) >= from_epoch) schedule <- schedule[seq_len(from_epoch)]
    }
    return(list(model = src, history = history, checkpoints = checkpoints,
                checkpoint_digests = checkpoint_digests, schedule = schedule,
                config = config))
  }
  if (old_kind == "supervised") {
    abort_model("A {.cls tabnet_fit} cannot be used to start {.fn tabnet_pretrain}.", call = call)
  }
  # fine-tuning: a new supervised network with the pretrained encoder
  net <- net_config(config, layout, outcome, call = call)
  model <- rs_model_new(net_config_json(net), "supervised", config$pretraining_ratio, seed, device)
  rs_model_copy_encoder(model, src)
  list(model = model, history = list(), checkpoints = list(), checkpoint_digests = list(), schedule = NULL,
       config = config)
}
