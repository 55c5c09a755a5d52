# The live Rust network behind a fitted object, rebuilt from its bytes when
# needed (after saveRDS()/readRDS() the external pointer is NULL), and verified
# every time it is rebuilt or reused.
#
# A fit keeps `fit$digest`, the checksum of (kind, `fit$net_config`,
# `serialized_net`), and `fit$checkpoint_digests`, one per checkpoint. Loading
# checks the checksum, then every tensor's name and shape against the
# configuration (Rust side), and the configuration against the R-side layout
# (`check_layout()`): a damaged or edited object is an error, never garbage.
# Models saved before checksums existed (no `fit$digest`) load unverified.

network_cache <- function(ptr = NULL, digest = NULL) {
  env <- new.env(parent = emptyenv())
  env$ptr <- ptr
  env$digest <- digest
  env
}

is_live_pointer <- function(ptr) {
  inherits(ptr, "externalptr") && !identical(ptr, methods::new("externalptr"))
}

# The network kind of a fitted object, and the class of a kind's objects.
model_kind <- function(object) {
  if (inherits(object, "tabnet_pretrain")) "pretrain" else "supervised"
}

model_class <- function(kind) {
  if (identical(kind, "pretrain")) "tabnet_pretrain" else "tabnet_fit"
}

model_digest <- function(kind, net_config, weights) {
  rs_model_digest(kind, net_config, weights)
}

# Loads `weights` for `object`'s network after checking them against `digest`.
load_network <- function(object, weights, digest, device = "cpu") {
  fit <- object$fit
  if (!is.character(fit$net_config) || length(fit$net_config) != 1L || !is.raw(weights)) {
    abort_model(c("This object's network is missing or unreadable.",
                  i = "It was damaged or edited; refit the model or read it again from its file."))
  }
  check_layout(object)
  kind <- model_kind(object)
  # a supervised network needs nothing from `fit$config`, which butcher's
  # axe_fitted() for tabnet fits may drop (as it drops the checkpoints and
  # importances): prediction must not depend on it
  ratio <- if (kind == "pretrain") fit$config$pretraining_ratio else 0
  if (!is.numeric(ratio) || length(ratio) != 1L) {
    abort_model(c("This object's network is missing or unreadable.",
                  i = "It was damaged or edited; refit the model or read it again from its file."))
  }
  rs_model_load(fit$net_config, kind, ratio, weights, device, digest %||% "")
}

# The network configuration must describe the predictors and outcomes the R
# object records (column order, levels, outputs).
check_layout <- function(object) {
  fit <- object$fit
  net <- tryCatch(jsonlite::fromJSON(fit$net_config, simplifyVector = TRUE), error = function(e) NULL)
  layout <- fit$layout
  same <- function(a, b) identical(as.integer(unlist(a)), as.integer(unlist(b)))
  ok <- is.list(net) && is.list(layout) &&
    same(net$num_cols, layout$num - 1L) && same(net$cat_cols, layout$cat - 1L) &&
    same(net$cat_levels, lengths(layout$levels, use.names = FALSE))
  if (ok && inherits(object, "tabnet_fit")) {
    ok <- same(net$output_dims, fit$outcome$dims) && same(net$parent, fit$outcome$parent)
  }
  if (!ok) {
    abort_model(c("This object's network configuration does not match its predictors or outcomes.",
                  i = "It was damaged or edited; refit the model or read it again from its file."))
  }
  invisible()
}

# The live model of a tabnet_fit / tabnet_pretrain, loading it on first use.
# `epoch` selects a checkpoint instead of the final weights. The cache is
# reused only for the exact weights it was built from (a copy of a fit whose
# `serialized_net` was replaced shares the cache environment).
live_network <- function(object, epoch = NULL) {
  if (!is.null(epoch)) {
    weights <- checkpoint_weights(object, epoch)
    return(load_network(object, weights, object$fit$checkpoint_digests[[paste0("epoch_", epoch)]]))
  }
  expected <- object$fit$digest
  if (!is.null(expected)) {
    current <- model_digest(model_kind(object), object$fit$net_config, object$serialized_net)
    if (!identical(current, expected)) {
      abort_model(c("This model is damaged or was edited: its weights or network configuration do not match the checksum saved with it.",
                    i = "Refit the model, or read it again from the file it was saved to."))
    }
  }
  cache <- object$fit$network
  if (is.environment(cache) && is_live_pointer(cache$ptr) && identical(cache$digest, expected) &&
      !is.null(expected)) {
    return(cache$ptr)
  }
  ptr <- load_network(object, object$serialized_net, expected)
  if (is.environment(cache)) {
    cache$ptr <- ptr
    cache$digest <- expected
  }
  ptr
}

checkpoint_weights <- function(object, epoch) {
  check_count(epoch, "epoch", min = 1)
  key <- paste0("epoch_", epoch)
  cp <- object$fit$checkpoints
  if (!key %in% names(cp)) {
    have <- sub("epoch_", "", names(cp))
    abort_input(c("There is no checkpoint for epoch {epoch}.",
                  i = if (length(have)) "Checkpoints exist for epoch{?s} {have}." else "This model has no checkpoints.",
                  i = "Set {.arg checkpoint_epochs} when fitting to keep more."))
  }
  cp[[key]]
}
