#' Latent features of a TabNet
#'
#' The encoder's aggregated decision output \eqn{\sum_i \mathrm{ReLU}(d_i)}
#' (Arik & Pfister 2021, eq. for \eqn{d_{out}}): the \eqn{N_d} values per row
#' that the (linear, bias-free) head turns into the outputs. Studying which of
#' them matter and how they correlate with physical observables is how Khot,
#' Neubauer & Roy (2023) read a network's latent space. Computed in the Rust
#' core in eval mode, in chunks of rows with a progress bar.
#'
#' Works for supervised fits (`tabnet_fit`, or a parsnip `model_fit` /
#' fitted `workflow` holding one); a pretrained-only model is an error.
#'
#' @param object A `tabnet_fit`, or a parsnip `model_fit` / fitted
#'   `workflow` holding one.
#' @param new_data A data frame with the predictors used at fit time.
#' @param ... Not used; a misspelt argument is an error.
#' @return A tibble with one row per row of `new_data` and columns
#'   `latent_1`, ..., `latent_<N_d>` (all \eqn{\ge 0}).
#' @seealso [tabnet_nap()], [tabnet_lrp()].
#' @examples
#' \donttest{
#' set.seed(1)
#' x <- data.frame(a = rnorm(400), b = rnorm(400), c = rnorm(400))
#' x$y <- factor(ifelse(x$a - x$b > 0, "yes", "no"))
#' fit <- tabnet_fit(y ~ ., x, epochs = 5)
#' z <- tabnet_latent(fit, x)
#' round(cor(z, x[c("a", "b", "c")]), 2)
#' }
#' @export
tabnet_latent <- function(object, new_data, ...) {
  UseMethod("tabnet_latent")
}

#' @export
#' @rdname tabnet_latent
tabnet_latent.default <- function(object, new_data, ...) {
  abort_input(c(
    "{.fn tabnet_latent} is not defined for a {.cls {class(object)[1]}}.",
    i = "Use a model from {.fn tabnet_fit}, or a parsnip/workflow fit of {.fn tabnet}."
  ))
}

#' @export
#' @rdname tabnet_latent
tabnet_latent.tabnet_fit <- function(object, new_data, ...) {
  check_dots_unused(...)
  new_data <- node_new_data(new_data)
  check_new_data(new_data, object = object)
  model <- live_network(object)
  ds <- forge_dataset(object, new_data, model)
  parts <- run_chunks(nrow(new_data), "Latent features", function(start, len) {
    rs_latent(model, ds, start, len)
  })
  z <- do.call(rbind, parts)
  colnames(z) <- paste0("latent_", seq_len(ncol(z)))
  tibble::as_tibble(z)
}

#' @export
#' @rdname tabnet_latent
tabnet_latent.tabnet_pretrain <- function(object, new_data, ...) {
  check_supervised(object, "tabnet_latent")
}

#' @export
#' @rdname tabnet_latent
tabnet_latent.model_fit <- function(object, new_data, ...) {
  tabnet_latent(engine_fit(object), new_data, ...)
}

#' @export
#' @rdname tabnet_latent
tabnet_latent.workflow <- function(object, new_data, ...) {
  forged <- forge_workflow(object, new_data, outcomes = FALSE)
  tabnet_latent(engine_fit(object), forged$predictors, ...)
}
