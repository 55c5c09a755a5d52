# The live Rust network behind a fitted object, rebuilt from its bytes when
# needed (after saveRDS()/readRDS() the external pointer is NULL).

network_cache <- function(ptr = NULL) {
  env <- new.env(parent = emptyenv())
  env$ptr <- ptr
  env
}

is_live_pointer <- function(ptr) {
  inherits(ptr, "externalptr") && !identical(ptr, methods::new("externalptr"))
}

# The live model of a tabnet_fit / tabnet_pretrain, loading it on first use.
# `epoch` selects a checkpoint instead of the final weights.
live_network <- function(object, epoch = NULL) {
  kind <- if (inherits(object, "tabnet_pretrain")) "pretrain" else "supervised"
  ratio <- object$fit$config$pretraining_ratio
  if (!is.null(epoch)) {
    weights <- checkpoint_weights(object, epoch)
    return(rs_model_load(object$fit$net_config, kind, ratio, weights, "cpu"))
  }
  cache <- object$fit$network
  if (is.environment(cache) && is_live_pointer(cache$ptr)) return(cache$ptr)
  ptr <- rs_model_load(object$fit$net_config, kind, ratio, object$serialized_net, "cpu")
  if (is.environment(cache)) cache$ptr <- ptr
  ptr
}

checkpoint_weights <- function(object, epoch) {
  check_count(epoch, "epoch", min = 1)
  key <- paste0("epoch_", epoch)
  cp <- object$fit$checkpoints
  if (!key %in% names(cp)) {
    have <- sub("epoch_", "", names(cp))
    cli::cli_abort(c("There is no checkpoint for epoch {epoch}.",
                     i = if (length(have)) "Checkpoints exist for epoch{?s} {have}." else "This model has no checkpoints.",
                     i = "Set {.arg checkpoint_epochs} when fitting to keep more."), call = NULL)
  }
  cp[[key]]
}
