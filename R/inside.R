# Shared machinery of the passes that look inside the network (tabnet_lrp(),
# tabnet_nap(), tabnet_latent()): fixed-size chunks of rows with a cli
# progress bar (Ctrl-C is honoured between chunks, each well under a second),
# the outcome columns of `new_data`, and the dispatch to the engine fit.

# Rows per call into the core: a chunk of LRP on a TabNet-S-like network
# (n_d = 24, n_a = 26, 5 steps) costs about 0.2 s of CPU (measured: 8,192
# rows in 0.35 s on this machine), so an interrupt is seen within a second.
inside_chunk_size <- 4096L

# Calls `f(start, len)` (0-based start) over consecutive chunks of `n` rows;
# returns the list of results. The bar shows after cli's usual delay.
run_chunks <- function(n, label, f, chunk = inside_chunk_size) {
  starts <- seq(0, n - 1, by = chunk)
  out <- vector("list", length(starts))
  cli::cli_progress_bar(label, total = n, clear = TRUE, .envir = environment())
  for (i in seq_along(starts)) {
    len <- min(chunk, n - starts[[i]])
    out[[i]] <- f(starts[[i]], len)
    cli::cli_progress_update(inc = len, .envir = environment())
  }
  cli::cli_progress_done(.envir = environment())
  out
}

# A supervised tabnet_fit (NAP, LRP and latent features need the head).
check_supervised <- function(object, what) {
  if (inherits(object, "tabnet_pretrain")) {
    abort_input(c("{.fn {what}} needs a supervised model; this one is pretrained only.",
                  i = "Fine-tune it with {.code tabnet_fit(..., tabnet_model = <pretrained>)} first."))
  }
}

# The outcome columns of `new_data` when all of them are there, else NULL.
outcome_columns <- function(object, new_data) {
  nms <- names(object$blueprint$ptypes$outcomes)
  if (!length(nms) || !all(nms %in% names(new_data))) return(NULL)
  tibble::as_tibble(as.data.frame(new_data)[nms])
}

# Which outcome (a name of `outcome$names`, or the first) as an index.
pick_outcome <- function(outcome, which) {
  if (is.null(which)) return(1L)
  if (!is.character(which) || length(which) != 1 || !which %in% outcome$names) {
    value <- format_value(which)
    choices <- outcome$names
    abort_input("{.arg outcome} must be one of {.or {.val {choices}}}, not {value}.")
  }
  match(which, outcome$names)
}

# 0-based class codes of `y` (a factor or character column) among `levels`;
# a value that is not a level is an error naming it.
class_codes <- function(y, levels, arg) {
  y <- as.character(y)
  if (anyNA(y)) {
    abort_input("The outcome {.field {arg}} of {.arg new_data} has {sum(is.na(y))} missing value{?s}.")
  }
  code <- match(y, levels)
  if (anyNA(code)) {
    bad <- unique(y[is.na(code)])
    abort_input(c("The outcome {.field {arg}} of {.arg new_data} holds {cli::qty(length(bad))}{?a value/values} that {?is not a level/are not levels} of the model: {.val {bad}}.",
                  i = "The levels are {.val {levels}}."))
  }
  code - 1L
}

# For a workflow: its preprocessing applied to `new_data`, outcomes kept when
# they are present (the engine fit then sees what it was trained on).
workflow_data <- function(object, new_data) {
  check_new_data(new_data)
  rlang::check_installed("workflows")
  mold <- workflows::extract_mold(object)
  has_outcome <- all(names(mold$blueprint$ptypes$outcomes) %in% names(new_data))
  forged <- forge_workflow(object, new_data, outcomes = has_outcome)
  if (!has_outcome) return(forged$predictors)
  # the engine fit may name the outcome differently (parsnip's xy interface)
  outcomes <- forged$outcomes
  engine_names <- names(engine_fit(object)$blueprint$ptypes$outcomes)
  if (length(engine_names) == ncol(outcomes)) names(outcomes) <- engine_names
  dplyr_free_cbind(forged$predictors, outcomes)
}

dplyr_free_cbind <- function(a, b) {
  out <- as.data.frame(a)
  for (nm in names(b)) out[[nm]] <- b[[nm]]
  tibble::as_tibble(out)
}
