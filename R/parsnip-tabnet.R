# parsnip model specification `tabnet()` and its methods.
#
# The registration itself (engines, argument mapping, fit and predict
# templates) is in R/parsnip-register.R and runs when the package loads.

#' Parsnip compatible TabNet model
#'
#' @description
#' `tabnet()` defines a TabNet model for the
#' [tidymodels](https://www.tidymodels.org) framework. It can be fitted with
#' `parsnip::fit()`, used in a `workflows::workflow()` and tuned with tune or
#' finetune. The fitting is done by [tabnet_fit()] (through its formula
#' method), so factor predictors are used as they are, through embeddings.
#'
#' The function is a drop-in replacement for `tabnet::tabnet()` of the mlverse
#' package: same arguments, in the same order, and the same engine name
#' `"torch"` (also available as `"tabnetrs"`).
#'
#' @details
#' Arguments are captured and only evaluated at fit time, so they may be
#' `tune()`. The parameter objects used for tuning are listed by
#' `tunable(tabnet())`: tabnetrs' own functions (see [decision_width()]) for
#' the TabNet-specific arguments, and dials' `penalty()`, `epochs()`,
#' `batch_size()`, `learn_rate()`, `rate_decay()`, `rate_step_size()` and
#' `stop_iter()` for the others.
#'
#' Any other argument of [tabnet_config()] (for example `valid_split`,
#' `device`, `num_workers`, `num_threads`, `seed`, `pretraining_ratio`) can be
#' given as an engine argument: `set_engine("torch", valid_split = 0.2)`.
#'
#' Case weights given with `workflows::add_case_weights()` or the
#' `case_weights` argument of `parsnip::fit()` are passed to [tabnet_fit()] as
#' `weights` and weigh the loss.
#'
#' @param mode A single character string for the type of model: `"unknown"`,
#'   `"regression"` or `"classification"`.
#' @param cat_emb_dim Size of the embedding of categorical predictors: a single
#'   integer, or one per categorical predictor.
#' @param decision_width Width of the decision prediction layer (N_d).
#' @param attention_width Width of the attention embedding for each mask (N_a).
#' @param num_steps Number of decision steps.
#' @param mask_type Final layer of the feature selector: `"sparsemax"`,
#'   `"entmax"`, `"sparsemax15"` or `"entmax15"`.
#' @param mask_topk The initial `k` of the `tabnet` package's partial sort for
#'   `"sparsemax15"` and `"entmax15"`; the masks do not depend on it (see
#'   [tabnet_config()]).
#' @param num_independent Number of step-specific GLU layers in each feature
#'   transformer.
#' @param num_shared Number of shared GLU layers in each feature transformer.
#' @param num_independent_decoder,num_shared_decoder The same for the
#'   pretraining decoder.
#' @param penalty Sparsity regularisation coefficient (lambda_sparse).
#' @param feature_reusage Relaxation factor gamma for reusing features across
#'   steps.
#' @param momentum Momentum of the batch normalisation (torch semantics),
#'   typically between 0.01 and 0.4.
#' @param epochs Number of training epochs.
#' @param batch_size Number of rows per batch.
#' @param virtual_batch_size Size of the ghost batches of the batch
#'   normalisation.
#' @param learn_rate Initial learning rate of the optimizer.
#' @param optimizer The optimizer, `"adam"`.
#' @param loss The loss: `"auto"`, `"mse"`, `"cross_entropy"`, ...
#' @param clip_value If not `NULL`, the gradient norm is clipped to this value.
#' @param drop_last Whether to drop the last incomplete batch of each epoch.
#' @param lr_scheduler `NULL`, `"step"` or `"reduce_on_plateau"`.
#' @param rate_decay Multiplicative factor of the learning rate decay (the
#'   `lr_decay` argument of [tabnet_config()]).
#' @param rate_step_size Number of epochs between two learning rate decays
#'   (the `step_size` argument of [tabnet_config()]).
#' @param checkpoint_epochs Number of epochs between model checkpoints.
#' @param verbose Whether to print the loss during training.
#' @param importance_sample_size Number of rows used to compute the feature
#'   importances.
#' @param early_stopping_monitor,early_stopping_tolerance,early_stopping_patience
#'   Early stopping: the loss to monitor (`"auto"`, `"train_loss"` or
#'   `"valid_loss"`), the relative tolerance and the number of epochs without
#'   improvement.
#' @param skip_importance If `TRUE`, do not compute feature importances.
#' @param tabnet_model A previously fitted `tabnet_fit` or pretrained model to
#'   continue training from.
#' @param from_epoch The epoch of `tabnet_model` to continue training from.
#' @param engine The engine: `"torch"` (the default, named after the mlverse
#'   engine) or `"tabnetrs"`. Both run tabnetrs. When another package (the
#'   mlverse tabnet package) registered the `"torch"` engine first, the default
#'   becomes `"tabnetrs"`.
#'
#' @return A model specification of class `c("tabnet", "model_spec")`.
#' @seealso [tabnet_fit()], [tabnet_config()], [tabnet_params]
#' @examples
#' library(parsnip)
#' tabnet(epochs = 3, decision_width = 24, attention_width = 26) %>%
#'   set_engine("torch", verbose = TRUE) %>%
#'   set_mode("classification")
#'
#' # tuning
#' spec <- tabnet(decision_width = tune::tune(), num_steps = tune::tune()) %>%
#'   set_mode("regression")
#' hardhat::extract_parameter_set_dials(spec)
#' @export
tabnet <- function(mode = "unknown", cat_emb_dim = NULL, decision_width = NULL,
                   attention_width = NULL, num_steps = NULL, mask_type = NULL,
                   mask_topk = NULL, num_independent = NULL, num_shared = NULL,
                   num_independent_decoder = NULL, num_shared_decoder = NULL,
                   penalty = NULL, feature_reusage = NULL, momentum = NULL,
                   epochs = NULL, batch_size = NULL, virtual_batch_size = NULL,
                   learn_rate = NULL, optimizer = NULL, loss = NULL,
                   clip_value = NULL, drop_last = NULL, lr_scheduler = NULL,
                   rate_decay = NULL, rate_step_size = NULL,
                   checkpoint_epochs = NULL, verbose = NULL,
                   importance_sample_size = NULL, early_stopping_monitor = NULL,
                   early_stopping_tolerance = NULL,
                   early_stopping_patience = NULL, skip_importance = NULL,
                   tabnet_model = NULL, from_epoch = NULL, engine = "torch") {
  ensure_tabnet_registered()
  user_specified_engine <- !missing(engine)
  if (!user_specified_engine) {
    engine <- tabnet_default_engine()
  }

  args <- capture_main_args(environment())

  parsnip::new_model_spec(
    "tabnet",
    args = args,
    eng_args = NULL,
    mode = mode,
    user_specified_mode = !missing(mode),
    method = NULL,
    engine = engine,
    user_specified_engine = user_specified_engine
  )
}

# Registration normally happens in .onLoad(); this covers a session where it
# failed there, or where parsnip's model environment was reset.
ensure_tabnet_registered <- function() {
  rlang::check_installed("parsnip")
  env <- parsnip::get_model_env()
  if (!"tabnet" %in% env$models ||
      !"tabnetrs" %in% env$tabnet$engine) {
    register_tabnet_model()
  }
  invisible(TRUE)
}

#' Update a `tabnet()` specification
#'
#' Changes some arguments of a [tabnet()] model specification and keeps all
#' the others, including the engine arguments set with
#' `parsnip::set_engine()`. This is what `tune::finalize_workflow()` and
#' `tune::finalize_model()` call.
#'
#' @param object A [tabnet()] model specification.
#' @param parameters A one-row tibble or a named list of new values, such as
#'   the output of `tune::select_best()`.
#' @inheritParams tabnet
#' @param fresh If `TRUE`, replace all the arguments (main and engine) by the
#'   new ones instead of updating them.
#' @param ... Engine arguments to update.
#' @return An updated model specification.
#' @examples
#' spec <- tabnet(epochs = 3, decision_width = tune::tune()) %>%
#'   parsnip::set_engine("torch", valid_split = 0.2)
#' update(spec, decision_width = 16)
#' update(spec, parameters = tibble::tibble(decision_width = 32))
#' @method update tabnet
#' @importFrom stats update
#' @export
update.tabnet <- function(object, parameters = NULL, cat_emb_dim = NULL,
                          decision_width = NULL, attention_width = NULL,
                          num_steps = NULL, mask_type = NULL, mask_topk = NULL,
                          num_independent = NULL, num_shared = NULL,
                          num_independent_decoder = NULL,
                          num_shared_decoder = NULL, penalty = NULL,
                          feature_reusage = NULL, momentum = NULL,
                          epochs = NULL, batch_size = NULL,
                          virtual_batch_size = NULL, learn_rate = NULL,
                          optimizer = NULL, loss = NULL, clip_value = NULL,
                          drop_last = NULL, lr_scheduler = NULL,
                          rate_decay = NULL, rate_step_size = NULL,
                          checkpoint_epochs = NULL, verbose = NULL,
                          importance_sample_size = NULL,
                          early_stopping_monitor = NULL,
                          early_stopping_tolerance = NULL,
                          early_stopping_patience = NULL,
                          skip_importance = NULL, tabnet_model = NULL,
                          from_epoch = NULL, fresh = FALSE, ...) {
  args <- capture_main_args(environment())
  spec <- parsnip::update_spec(
    object = object,
    parameters = parameters,
    args_enquo_list = args,
    fresh = fresh,
    cls = "tabnet",
    ...
  )
  checkpoint_tuned_epochs(object, spec)
}

# The main arguments of the calling tabnet() / update.tabnet() (`env`, its
# frame), captured as quosures: they are evaluated at fit time, and may be
# `tune()`.
capture_main_args <- function(env) {
  nms <- tabnet_main_args()
  stats::setNames(lapply(nms, function(nm) eval(rlang::call2(rlang::enquo, as.name(nm)), env)), nms)
}

is_tune_quo <- function(x) {
  rlang::is_quosure(x) && rlang::is_call(rlang::quo_get_expr(x), "tune", ns = c("", "tune", "hardhat"))
}

# tune's submodel trick: for a grid over `epochs`, tune fits the largest
# value only (min_grid.tabnet()) and predicts the others with multi_predict(),
# which needs a checkpoint at each of them. tune fixes the value by calling
# update() on the specification (`finalize_model()`), so when update()
# replaces a tune() placeholder of `epochs` and `checkpoint_epochs` is not
# set, every epoch is checkpointed. An explicit `checkpoint_epochs` (main or
# engine argument) is kept.
checkpoint_tuned_epochs <- function(old, new) {
  was_tuned <- is_tune_quo(old$args$epochs)
  now_fixed <- rlang::is_quosure(new$args$epochs) && !rlang::quo_is_null(new$args$epochs) &&
    !is_tune_quo(new$args$epochs)
  unset <- (is.null(new$args$checkpoint_epochs) || rlang::quo_is_null(new$args$checkpoint_epochs)) &&
    !"checkpoint_epochs" %in% names(new$eng_args)
  if (was_tuned && now_fixed && unset) {
    new$args$checkpoint_epochs <- rlang::quo(1L)
  }
  new
}

#' Minimal grid for tuning a `tabnet()` model
#'
#' The [tune::min_grid()] method of [tabnet()] specifications: for each
#' combination of the other parameters, only the largest `epochs` value of
#' the grid is fitted, and the smaller ones are predicted from that fit's
#' checkpoints through [multi_predict()][multi_predict._tabnet_fit] (so a grid
#' over `epochs = 1:10` fits once per combination and resample, not ten
#' times). When tune fixes `epochs`, the specification keeps a checkpoint at
#' every epoch unless `checkpoint_epochs` was set; with another
#' `checkpoint_epochs`, grid values between two checkpoints are an error.
#'
#' @param x A [tabnet()] specification.
#' @param grid A tibble of tuning parameter values.
#' @param ... Not used.
#' @return A tibble of the models to fit, with the list column `.submodels`.
#' @keywords internal
#' @exportS3Method tune::min_grid
min_grid.tabnet <- function(x, grid, ...) {
  tune::fit_max_value(x, grid, ...)
}

#' @export
print.tabnet <- function(x, ...) {
  parsnip::print_model_spec(x, desc = "TabNet", ...)
  invisible(x)
}

#' Predictions of a TabNet fit at several epochs
#'
#' The [parsnip::multi_predict()] method of a TabNet `model_fit`: predicts with
#' the network as it was at each of `epochs`. Apart from the epoch whose
#' weights the fit holds, an epoch is only available if a checkpoint was saved
#' at it, so fit with `checkpoint_epochs = 1` (for instance
#' `set_engine("torch", checkpoint_epochs = 1)`) to predict at any epoch.
#' tune uses this method for a grid over `epochs` (see
#' [min_grid.tabnet()]). After early stopping, an epoch past the last one
#' trained predicts with the weights the fit holds (those a fit with that
#' many epochs would have stopped with).
#'
#' @param object A parsnip `model_fit` of a [tabnet()] specification.
#' @param new_data A data frame of predictors.
#' @param type `"class"`, `"prob"` or `"numeric"`; by default `"class"` for
#'   classification and `"numeric"` for regression.
#' @param epochs Integer vector of epochs; by default the epoch whose weights
#'   the fit holds (the last one, or the best one after early stopping).
#' @param ... Not used.
#' @return A tibble with one row per row of `new_data` and a list column
#'   `.pred` of tibbles with a column `epochs` and the prediction columns.
#' @rawNamespace S3method(parsnip::multi_predict, "_tabnet_fit")
multi_predict._tabnet_fit <- function(object, new_data, type = NULL,
                                      epochs = NULL, ...) {
  if (any(names(rlang::enquos(...)) == "newdata")) {
    abort_input("Did you mean to use {.arg new_data} instead of {.arg newdata}?")
  }
  if (is.null(type)) {
    type <- if (identical(object$spec$mode, "classification")) "class" else "numeric"
  }
  type <- match_choice(type, pred_types, "type")
  engine_fit <- object$fit
  last_epoch <- length(engine_fit$fit$metrics)
  # the epoch whose weights the fit holds: the last one, or the best one when
  # early stopping restored it
  current_epoch <- last_epoch
  best <- engine_fit$fit$best_epoch
  if (isTRUE(engine_fit$fit$config$early_stopping) && length(best) == 1 && !is.na(best)) {
    current_epoch <- as.integer(best)
  }
  if (is.null(epochs)) {
    epochs <- current_epoch
  }
  # an early-stopped fit has no epochs past the last one trained: for them a
  # fit with that many epochs would have stopped the same way
  max_epoch <- if (isTRUE(engine_fit$fit$stopped_early)) max(engine_fit$fit$config$epochs, last_epoch) else last_epoch
  if (!is.numeric(epochs) || !length(epochs) || anyNA(epochs) || any(epochs != round(epochs)) ||
      any(epochs < 1) || (last_epoch > 0 && any(epochs > max_epoch))) {
    value <- format_value(epochs)
    abort_input(
      "{.arg epochs} must be whole numbers between 1 and {max_epoch}, the number of epochs of the fit, not {value}."
    )
  }
  epochs <- as.integer(epochs)

  n <- nrow(new_data)
  preds <- lapply(epochs, function(epoch) {
    # other epochs come from checkpoints; predict() errors clearly if missing
    p <- if (identical(epoch, current_epoch) || epoch > last_epoch) {
      stats::predict(engine_fit, new_data, type = type)
    } else {
      stats::predict(engine_fit, new_data, type = type, epoch = epoch)
    }
    p <- tibble::as_tibble(p)
    tibble::add_column(p, epochs = rep(epoch, n), .before = 1)
  })
  # regroup by row: one tibble of length(epochs) rows per observation
  stacked <- vctrs::vec_rbind(!!!preds)
  row_id <- rep(seq_len(n), times = length(epochs))
  stacked <- stacked[order(row_id, stacked$epochs), , drop = FALSE]
  row_id <- sort(row_id)
  by_row <- unname(vctrs::vec_split(stacked, row_id)$val)
  tibble::tibble(.pred = by_row)
}
