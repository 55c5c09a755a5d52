#' @export
print.tabnet_fit <- function(x, ...) {
  print_tabnet_model(x, "TabNet model")
}

#' @export
print.tabnet_pretrain <- function(x, ...) {
  print_tabnet_model(x, "Pretrained TabNet encoder")
}

print_tabnet_model <- function(x, title) {
  cfg <- x$fit$config
  layout <- x$fit$layout
  outcome <- x$fit$outcome
  epochs <- length(x$fit$metrics)
  last <- if (epochs) x$fit$metrics[[epochs]] else NULL
  cli::cli_text("{.strong {title}} ({.pkg tabnetrs}, Rust/libtorch)")
  cli::cli_bullets(c(
    "*" = if (inherits(x, "tabnet_fit")) "{outcome$task}: {.field {outcome$names}}" else NULL,
    "*" = "{length(layout$names)} predictor{?s} ({length(layout$num)} numeric, {length(layout$cat)} categorical)",
    "*" = "N_d = {cfg$n_d}, N_a = {cfg$n_a}, {cfg$n_steps} steps, gamma = {cfg$gamma}, {cfg$mask_type}; {format(x$fit$n_parameters, big.mark = ',')} parameters",
    "*" = "{epochs} epoch{?s}, batch {cfg$batch_size} / virtual batch {cfg$virtual_batch_size}, learn rate {cfg$learn_rate}",
    "*" = if (!is.null(last)) "last training loss {signif(last$train, 4)}{if (!is.null(last$valid)) paste0(', validation loss ', signif(last$valid, 4)) else ''}" else NULL,
    "*" = if (isTRUE(x$fit$stopped_early)) "stopped early; weights of epoch {x$fit$best_epoch} restored" else NULL
  ))
  invisible(x)
}
