#' Self-supervised pretraining of a TabNet encoder
#'
#' Masks a random share (`pretraining_ratio`) of the predictor cells of each
#' row and trains the encoder and a decoder to reconstruct them (Arik & Pfister,
#' 2021, section "Self-supervised learning"). The loss is the squared
#' reconstruction error of the hidden cells in units of each feature's
#' training-set variance (the decoder predicts standardised values), averaged
#' over hidden cells: it is never negative, does not depend on the scale of the
#' predictors, and is about 1 for a model that predicts each feature's mean.
#' No outcome is needed. Fine-tune with
#' `tabnet_fit(..., tabnet_model = <pretrained>)`.
#'
#' @inheritParams tabnet_fit
#' @param tabnet_model A previous `tabnet_pretrain` to continue pretraining
#'   (epochs, metrics, checkpoints and the learning-rate schedule continue;
#'   without `config`, its training settings are reused and `...` overrides
#'   them).
#' @param y Ignored (pretraining uses no outcome); may be missing.
#' @return A `tabnet_pretrain` object. Like a `tabnet_fit`, it stores the mask
#'   importance of its (training) rows in `fit$importances` unless
#'   `skip_importance = TRUE`: [tabnet_importance()] and `vip::vi()` show it.
#' @examples
#' \donttest{
#' df <- data.frame(a = rnorm(400), b = rnorm(400), c = rnorm(400))
#' pre <- tabnet_pretrain(df, epochs = 2)
#' }
#' @export
tabnet_pretrain <- function(x, ...) {
  UseMethod("tabnet_pretrain")
}

#' @export
#' @rdname tabnet_pretrain
tabnet_pretrain.default <- function(x, ...) {
  abort_input(c("{.fn tabnet_pretrain} is not defined for {.obj_type_friendly {x}}.",
                i = "Give a data frame or matrix of predictors, a formula with {.arg data}, or a recipe with {.arg data}."))
}

#' @export
#' @rdname tabnet_pretrain
tabnet_pretrain.data.frame <- function(x, y = NULL, tabnet_model = NULL, config = tabnet_config(), ...,
                                       from_epoch = NULL) {
  check_predictor_names(names(x), "x")
  processed <- hardhat::mold(
    ~ ., x,
    blueprint = tabnet_formula_blueprint()
  )
  tabnet_bridge(processed, config, list(...), tabnet_model, from_epoch, NULL, "pretrain")
}

#' @export
#' @rdname tabnet_pretrain
tabnet_pretrain.matrix <- function(x, y = NULL, tabnet_model = NULL, config = tabnet_config(), ...,
                                   from_epoch = NULL) {
  if (is.null(colnames(x))) colnames(x) <- sprintf("V%d", seq_len(ncol(x)))
  check_predictor_names(colnames(x), "x")
  tabnet_pretrain.data.frame(as.data.frame(x), tabnet_model = tabnet_model, config = config, ...,
                             from_epoch = from_epoch)
}

#' @export
#' @rdname tabnet_pretrain
tabnet_pretrain.formula <- function(formula, data, tabnet_model = NULL, config = tabnet_config(), ...,
                                    from_epoch = NULL) {
  if (inherits(data, "tabnet_arrow")) {
    return(arrow_fit(formula, data, tabnet_model, config, list(...), from_epoch, NULL, "pretrain"))
  }
  processed <- hardhat::mold(
    formula, data,
    blueprint = tabnet_formula_blueprint()
  )
  tabnet_bridge(processed, config, list(...), tabnet_model, from_epoch, NULL, "pretrain")
}

#' @export
#' @rdname tabnet_pretrain
tabnet_pretrain.recipe <- function(x, data, tabnet_model = NULL, config = tabnet_config(), ...,
                                   from_epoch = NULL) {
  processed <- hardhat::mold(x, data)
  tabnet_bridge(processed, config, list(...), tabnet_model, from_epoch, NULL, "pretrain")
}

#' @export
#' @rdname tabnet_pretrain
tabnet_pretrain.Node <- function(x, tabnet_model = NULL, config = tabnet_config(), ..., from_epoch = NULL) {
  xy <- node_to_df(x)
  tabnet_pretrain.data.frame(xy$x, tabnet_model = tabnet_model, config = config, ..., from_epoch = from_epoch)
}

#' @export
predict.tabnet_pretrain <- function(object, new_data, ...) {
  abort_model(c("A {.cls tabnet_pretrain} model has no prediction head.",
                i = "Fine-tune it first with {.code tabnet_fit(..., tabnet_model = <pretrained>)}."))
}
