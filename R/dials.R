# dials tuning parameters for the parsnip `tabnet()` model.
#
# Names follow the mlverse {tabnet} package so that tidymodels scripts run
# unchanged. Default ranges follow the search space of the TabNet paper
# (Arik & Pfister, appendix): N_d, N_a in 8..64, N_steps 3..10,
# gamma 1..2, virtual batch size 256..4096. `momentum` uses torch semantics
# (running = (1 - m) * running + m * batch), so the paper's m_B = 0.6..0.98
# (TensorFlow semantics) becomes 0.02..0.4.
#
# Arguments that map onto parameters dials already has (penalty, epochs,
# batch_size, learn_rate, rate_decay, rate_step_size, early stopping patience)
# are registered against dials' own functions in `register_tabnet_model()`;
# they are deliberately not redefined here, so attaching tabnetrs never masks
# them.

#' Parameters for the `tabnet()` model
#'
#' @description
#' [dials](https://dials.tidymodels.org) parameter objects for tuning a
#' [tabnet()] model specification. They are used by
#' `hardhat::extract_parameter_set_dials()` when an argument of `tabnet()` is
#' marked with `tune()`, and can be used directly to set a custom range:
#' `update(params, decision_width = decision_width(range = c(20, 40)))`.
#'
#' * `decision_width()`, `attention_width()`: width of the decision (N_d) and
#'   attention (N_a) layers.
#' * `num_steps()`: number of decision steps.
#' * `feature_reusage()`: relaxation factor gamma for reusing a feature in
#'   later steps.
#' * `momentum()`: momentum of the (ghost) batch normalisation, with torch
#'   semantics. It has the same id as `dials::momentum()` but a TabNet range.
#' * `mask_type()`: the attention normaliser, `"sparsemax"` or `"entmax"`.
#' * `num_independent()`, `num_shared()`: number of step-specific and shared
#'   GLU layers in each feature transformer; `num_independent_decoder()`,
#'   `num_shared_decoder()` the same for the pretraining decoder.
#' * `virtual_batch_size()`: size of the ghost batches (log2 scale by default:
#'   256 to 4096).
#' * `cat_emb_dim()`: embedding size of the categorical predictors.
#' * `drop_last()`: whether to drop the last incomplete batch.
#' * `lr_scheduler()`: the learning-rate scheduler.
#'
#' The remaining functions (`checkpoint_epochs()`, `optimizer()`, `verbose()`,
#' `encoder_activation()`, `mlp_activation()`, `mlp_hidden_multiplier()`) exist
#' for compatibility with the mlverse package: these settings are not tunable
#' and the functions signal an error.
#'
#' `penalty`, `epochs`, `batch_size`, `learn_rate`, `rate_decay` and
#' `rate_step_size` use the dials functions of the same name (with TabNet
#' ranges), and `early_stopping_patience` uses [dials::stop_iter()].
#'
#' @param range A two-element vector with the lower and upper bounds, in the
#'   transformed scale if `trans` is given.
#' @param trans A `trans` object from the scales package, such as
#'   `scales::transform_log10()`, or `NULL`.
#' @param values A vector of possible values.
#'
#' @return A `param` object (class `quant_param` or `qual_param`).
#' @examples
#' decision_width()
#' num_steps(range = c(4L, 6L))
#' mask_type()
#' virtual_batch_size()
#' @name tabnet_params
NULL

#' @rdname tabnet_params
#' @export
decision_width <- function(range = c(8L, 64L), trans = NULL) {
  dials::new_quant_param(
    type = "integer",
    range = range,
    inclusive = c(TRUE, TRUE),
    trans = trans,
    label = c(decision_width = "Width of the decision prediction layer"),
    finalize = NULL
  )
}

#' @rdname tabnet_params
#' @export
attention_width <- function(range = c(8L, 64L), trans = NULL) {
  dials::new_quant_param(
    type = "integer",
    range = range,
    inclusive = c(TRUE, TRUE),
    trans = trans,
    label = c(attention_width = "Width of the attention embedding"),
    finalize = NULL
  )
}

#' @rdname tabnet_params
#' @export
num_steps <- function(range = c(3L, 10L), trans = NULL) {
  dials::new_quant_param(
    type = "integer",
    range = range,
    inclusive = c(TRUE, TRUE),
    trans = trans,
    label = c(num_steps = "Number of decision steps"),
    finalize = NULL
  )
}

#' @rdname tabnet_params
#' @export
feature_reusage <- function(range = c(1, 2), trans = NULL) {
  dials::new_quant_param(
    type = "double",
    range = range,
    inclusive = c(TRUE, TRUE),
    trans = trans,
    label = c(feature_reusage = "Coefficient for feature reusage in the masks"),
    finalize = NULL
  )
}

#' @rdname tabnet_params
#' @export
momentum <- function(range = c(0.01, 0.4), trans = NULL) {
  dials::new_quant_param(
    type = "double",
    range = range,
    inclusive = c(TRUE, TRUE),
    trans = trans,
    label = c(momentum = "Momentum for batch normalization"),
    finalize = NULL
  )
}

#' @rdname tabnet_params
#' @export
mask_type <- function(values = c("sparsemax", "entmax")) {
  dials::new_qual_param(
    type = "character",
    values = values,
    label = c(mask_type = "Final layer of feature selector"),
    finalize = NULL
  )
}

#' @rdname tabnet_params
#' @export
num_independent <- function(range = c(1L, 5L), trans = NULL) {
  dials::new_quant_param(
    type = "integer",
    range = range,
    inclusive = c(TRUE, TRUE),
    trans = trans,
    label = c(num_independent = "Number of independent GLU layers"),
    finalize = NULL
  )
}

#' @rdname tabnet_params
#' @export
num_shared <- function(range = c(1L, 5L), trans = NULL) {
  dials::new_quant_param(
    type = "integer",
    range = range,
    inclusive = c(TRUE, TRUE),
    trans = trans,
    label = c(num_shared = "Number of shared GLU layers"),
    finalize = NULL
  )
}

#' @rdname tabnet_params
#' @export
num_independent_decoder <- function(range = c(1L, 5L), trans = NULL) {
  dials::new_quant_param(
    type = "integer",
    range = range,
    inclusive = c(TRUE, TRUE),
    trans = trans,
    label = c(num_independent_decoder = "Number of independent GLU layers in the decoder"),
    finalize = NULL
  )
}

#' @rdname tabnet_params
#' @export
num_shared_decoder <- function(range = c(1L, 5L), trans = NULL) {
  dials::new_quant_param(
    type = "integer",
    range = range,
    inclusive = c(TRUE, TRUE),
    trans = trans,
    label = c(num_shared_decoder = "Number of shared GLU layers in the decoder"),
    finalize = NULL
  )
}

#' @rdname tabnet_params
#' @export
virtual_batch_size <- function(range = c(8L, 12L), trans = scales::transform_log2()) {
  dials::new_quant_param(
    type = "integer",
    range = range,
    inclusive = c(TRUE, TRUE),
    trans = trans,
    label = c(virtual_batch_size = "Virtual (ghost) batch size"),
    finalize = NULL
  )
}

#' @rdname tabnet_params
#' @export
cat_emb_dim <- function(range = c(1L, 10L), trans = NULL) {
  dials::new_quant_param(
    type = "integer",
    range = range,
    inclusive = c(TRUE, TRUE),
    trans = trans,
    label = c(cat_emb_dim = "Embedding size of categorical predictors"),
    finalize = NULL
  )
}

#' @rdname tabnet_params
#' @export
drop_last <- function(values = c(TRUE, FALSE)) {
  dials::new_qual_param(
    type = "logical",
    values = values,
    label = c(drop_last = "Drop the last incomplete batch"),
    finalize = NULL
  )
}

#' @rdname tabnet_params
#' @export
lr_scheduler <- function(values = c("step", "reduce_on_plateau")) {
  dials::new_qual_param(
    type = "character",
    values = values,
    label = c(lr_scheduler = "Learning rate scheduler"),
    finalize = NULL
  )
}

# Non-tunable settings ------------------------------------------------------

not_tunable_param <- function(name, call = rlang::caller_env()) {
  abort_config(
    c(
      "{.arg {name}} cannot be used as a {.fn tune} parameter yet.",
      "i" = "Set a fixed value in {.fn tabnet} or {.fn set_engine} instead."
    ),
    call = call
  )
}

#' @rdname tabnet_params
#' @export
checkpoint_epochs <- function(range = NULL, trans = NULL) {
  not_tunable_param("checkpoint_epochs")
}

#' @rdname tabnet_params
#' @export
optimizer <- function(range = NULL, trans = NULL) {
  not_tunable_param("optimizer")
}

#' @rdname tabnet_params
#' @export
verbose <- function(range = NULL, trans = NULL) {
  not_tunable_param("verbose")
}

#' @rdname tabnet_params
#' @export
encoder_activation <- function(range = NULL, trans = NULL) {
  not_tunable_param("encoder_activation")
}

#' @rdname tabnet_params
#' @export
mlp_activation <- function(range = NULL, trans = NULL) {
  not_tunable_param("mlp_activation")
}

#' @rdname tabnet_params
#' @export
mlp_hidden_multiplier <- function(range = NULL, trans = NULL) {
  not_tunable_param("mlp_hidden_multiplier")
}

#' Parameter stub for non-tunable `tabnet()` arguments
#'
#' Used as the `call_info` of the `tabnet()` arguments that cannot be tuned
#' (such as `loss`, `clip_value` or `tabnet_model`), so that marking one of
#' them with `tune()` gives a clear error rather than a missing function.
#'
#' @param values The name of the argument.
#' @param range,trans Ignored.
#' @return Never returns: always signals an error.
#' @keywords internal
#' @export
tabnet_untunable <- function(values = NULL, range = NULL, trans = NULL) {
  not_tunable_param(if (is.null(values)) "This argument" else values[[1]])
}
