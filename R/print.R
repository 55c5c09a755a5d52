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
  lines <- c(
    if (inherits(x, "tabnet_fit")) sprintf("%s: %s", outcome$task, paste(outcome$names, collapse = ", ")),
    sprintf("%d predictors (%d numeric, %d categorical)", length(layout$names), length(layout$num), length(layout$cat)),
    sprintf("N_d = %d, N_a = %d, %d steps, gamma = %s, %s masks; %s parameters",
            cfg$n_d, cfg$n_a, cfg$n_steps, format(cfg$gamma), cfg$mask_type,
            format(x$fit$n_parameters, big.mark = ",")),
    sprintf("%d epoch%s, batch %d / virtual batch %d, learn rate %s", epochs, if (epochs == 1) "" else "s",
            cfg$batch_size, cfg$virtual_batch_size, format(cfg$learn_rate)),
    if (!is.null(last)) sprintf("last training loss %s%s", format(signif(last$train, 4)),
                                if (is.null(last$valid)) "" else sprintf(", validation loss %s", format(signif(last$valid, 4)))),
    if (isTRUE(x$fit$stopped_early)) sprintf("stopped early; weights of epoch %d restored", x$fit$best_epoch)
  )
  cat(title, " (tabnetrs, Rust/libtorch)\n", sep = "")
  cat(paste0("* ", lines, "\n"), sep = "")
  invisible(x)
}
