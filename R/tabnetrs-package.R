#' tabnetrs: fast TabNet for R on libtorch, with a Rust core
#'
#' Fit, explain and tune TabNet models; a drop-in replacement for the `tabnet`
#' package's API. See [tabnet_fit()], [tabnet_pretrain()], [tabnet()] and
#' `vignette("interpretation", package = "tabnetrs")`.
#'
#' @keywords internal
#' @importFrom magrittr %>%
#' @importFrom rlang %||%
#' @importFrom stats predict update
#' @importFrom scales transform_log2
"_PACKAGE"

#' @export
magrittr::`%>%`
