# The live Rust network behind a fitted object, rebuilt from its bytes when
# needed (after saveRDS()/readRDS() the external pointer is NULL), and verified
# every time it is rebuilt or reused.
#
# A fit keeps `fit$digest`, the checksum of (kind, `fit$net_config`,
# `serialized_net`), and `fit$checkpoint_digests`, one per checkpoint. Loading
# checks the checksum, then every tensor's name and shape against the
# configuration (Rust side), and the configuration against the R-side layout
# (`check_layout()`): a damaged or edited object is an error, never garbage.
# `fit$layout_digest` covers the predictor and outcome names and levels
# (layout_digest()). Models saved before checksums existed (no `fit$digest`,
# no `fit$layout_digest`) load without those checks.

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

# The checksum of what a fit records about its predictors and outcomes
# (`fit$layout`, `fit$outcome`): which column is which, factor levels, outcome
# names and levels. The network configuration only holds their counts and
# positions, so swapping two numeric names or two outcome levels would move
# predictions silently. Saved as `fit$layout_digest`; a model saved before it
# existed (no such field) loads as before, its layout checked against its
# network configuration only.
layout_digest <- function(layout, outcome) {
  text <- config_json(list(
    names = as.character(layout$names), num = as.integer(layout$num), cat = as.integer(layout$cat),
    levels = lapply(unname(layout$levels), as.character),
    outcome = list(task = outcome$task, names = as.character(outcome$names), dims = as.integer(outcome$dims),
                   levels = lapply(unname(outcome$levels), as.character),
                   parent = as.integer(outcome$parent))
  ))
  rs_model_digest("layout", as.character(text), raw(0))
}

# Every part of a fitted object that loading and prediction read must be
# there, of the right type, and its layout must match its checksum: else the
# damaged-model error (class `tabnetrs_error_model`), never an internal error
# or a complaint about `new_data`.
check_model_object <- function(object) {
  fit <- object$fit
  part <- if (!is.list(fit)) {
    "fit"
  } else if (!is.raw(object$serialized_net)) {
    "serialized_net"
  } else if (!is.character(fit$net_config) || length(fit$net_config) != 1L || is.na(fit$net_config)) {
    "net_config"
  } else if (!is.null(fit$config) && !is.list(fit$config) ||
             # a supervised fit predicts without its training configuration
             # (butcher's axe_fitted() drops it); a pretraining needs its ratio
             inherits(object, "tabnet_pretrain") &&
             !(is.numeric(fit$config$pretraining_ratio) && length(fit$config$pretraining_ratio) == 1L)) {
    "config"
  } else if (!is.list(fit$layout) || !is.character(fit$layout$names) || !is.numeric(fit$layout$num) ||
             !is.numeric(fit$layout$cat) || !is.list(fit$layout$levels)) {
    "layout"
  } else if (inherits(object, "tabnet_fit") &&
             (!is.list(fit$outcome) || !is.character(fit$outcome$task) || !is.numeric(fit$outcome$dims))) {
    "outcome"
  } else if (!inherits(object$blueprint, "hardhat_blueprint")) {
    "blueprint"
  }
  if (!is.null(part)) {
    abort_model(c("This model is damaged or was edited: its {.field {part}} is missing or unreadable.",
                  i = "Refit the model, or read it again from the file it was saved to."))
  }
  saved <- fit$layout_digest
  if (!is.null(saved)) {
    outcome <- if (inherits(object, "tabnet_fit")) fit$outcome else pretrain_outcome()
    if (!identical(saved, layout_digest(fit$layout, outcome))) {
      abort_model(c("This model is damaged or was edited: its predictors or outcomes do not match the checksum saved with it.",
                    i = "Refit the model, or read it again from the file it was saved to."))
    }
  }
  invisible()
}

# The outcome description of a pretraining (no outcome).
pretrain_outcome <- function() {
  list(task = "regression", names = character(), dims = 1L, levels = NULL)
}

# Loads `weights` for `object`'s network after checking them against `digest`.
load_network <- function(object, weights, digest, device = "cpu") {
  fit <- object$fit
  check_model_object(object)
  if (!is.raw(weights)) {
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
  check_model_object(object)
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
