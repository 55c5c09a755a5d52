# libtorch runtime settings: threads and device.

# The package's session state, one environment (process state of the Rust
# core lives in its `runtime` module). Fields, each set on first use:
#   cores  the machine's cores (machine_cores(): parallel::detectCores() starts
#          a shell on Linux, and every predict() asks)
#   capped the last thread count capped from an option or environment
#          variable, as "source n cores" (check_threads() says it once)
#   told   TRUE once blas_advice() has looked at the BLAS (said once a session)
#   entry_points  the package's exports and S3 methods (is_entry_point())
# A forked worker inherits it: the cores are the machine's, the notes were said.
runtime_state <- new.env(parent = emptyenv())

# Threads. Training uses `num_threads` of the call or config when given;
# otherwise, and always for prediction, explanations and importances, the
# session's setting: option `tabnetrs.threads`, then the environment variable
# TABNETRS_THREADS (inherited by parallel workers), then the machine's cores
# (at most 8). A saved model's `num_threads` is never used: the thread count
# belongs to the session that runs the model. Every value is capped at the
# machine's cores. On the CPU, training and inference run fused kernels on
# that many rayon threads while libtorch's OpenMP pool and OpenBLAS stay on one
# thread each (both busy-wait; together they made 2 threads slower than 1).
# Parallel tuning workers should still ask for 1 each.
resolve_threads <- function(n = NULL, call = rlang::caller_env()) {
  if (!is.null(n)) return(check_threads(n, "num_threads", call = call))
  opt <- getOption("tabnetrs.threads", NULL)
  if (!is.null(opt)) return(check_threads(opt, "tabnetrs.threads", source = "option", call = call))
  env <- Sys.getenv("TABNETRS_THREADS")
  if (nzchar(env)) return(check_threads(env, "TABNETRS_THREADS", source = "env", call = call))
  default_threads()
}

# The machine's cores, counted once per process: parallel::detectCores()
# starts a shell on Linux, and every predict() asks (a fork keeps the count,
# which is still the machine's).
machine_cores <- function() {
  if (is.null(runtime_state$cores)) {
    cores <- suppressWarnings(parallel::detectCores())
    runtime_state$cores <- if (length(cores) != 1 || is.na(cores) || cores < 1L) 1L else as.integer(cores)
  }
  runtime_state$cores
}

default_threads <- function() {
  min(machine_cores(), 8L)
}

# A thread count (whole number >= 1) from the argument `num_threads`, the
# option `tabnetrs.threads` or the environment variable TABNETRS_THREADS,
# capped at the machine's cores with a message (for the option and the
# variable once per session and value: every predict() reads them). Returns an
# integer.
check_threads <- function(n, name, source = c("arg", "option", "env"), call = rlang::caller_env()) {
  source <- match.arg(source)
  value <- if (source == "env") n else format_value(n)
  if (source == "env") {
    n <- suppressWarnings(as.numeric(n))
    value <- encodeString(value, quote = "\"")
  }
  ok <- is.numeric(n) && length(n) == 1 && !is.na(n) && is.finite(n) && n == round(n) && n >= 1
  if (!ok) {
    msg <- switch(source,
      arg = "{.arg {name}} must be a whole number of threads >= 1, not {value}.",
      option = "The option {.code {name}} must be a whole number of threads >= 1, not {value}.",
      env = "The environment variable {.envvar {name}} must be a whole number of threads >= 1, not {value}."
    )
    fix <- switch(source,
      arg = NULL,
      option = "Set it with e.g. {.code options({name} = 2)}, or to {.code NULL} for the default.",
      env = "Set it with e.g. {.code Sys.setenv({name} = 2)}, or unset it for the default."
    )
    abort_config(c(msg, i = fix), call = call)
  }
  cores <- machine_cores()
  if (n > cores) {
    key <- paste(source, n, cores)
    if (source == "arg" || !identical(runtime_state$capped, key)) {
      msg <- switch(source,
        arg = "{.arg {name}} = {format(n, scientific = FALSE)} is capped at the machine's {cores} core{?s}.",
        option = "Option {.code {name}} = {format(n, scientific = FALSE)} is capped at the machine's {cores} core{?s}.",
        env = "{.envvar {name}} = {format(n, scientific = FALSE)} is capped at the machine's {cores} core{?s}."
      )
      tabnetrs_inform(msg)
      if (source != "arg") runtime_state$capped <- key
    }
    n <- cores
  }
  as.integer(n)
}

use_threads <- function(n = NULL, call = rlang::caller_env()) {
  n <- resolve_threads(n, call = call)
  if (rs_get_threads() != n) rs_set_threads(n)
  blas_advice()
  invisible(n)
}

# OpenBLAS picks its kernels per CPU, and falls back to generic ones (Prescott,
# SSE3) on CPUs it does not know, such as recent Xeons with OpenBLAS 0.3.21:
# every product then runs 3-6x slower than the CPU allows. Said once per
# session, in interactive sessions (option `tabnetrs.blas_advice`), when the
# user has not chosen a kernel set with OPENBLAS_CORETYPE.
blas_advice <- function(info = NULL) {
  if (isTRUE(runtime_state$told) || !isTRUE(getOption("tabnetrs.blas_advice", interactive()))) return(invisible())
  if (nzchar(Sys.getenv("OPENBLAS_CORETYPE"))) return(invisible())
  info <- info %||% rs_blas_info()
  runtime_state$told <- TRUE
  if (!isTRUE(info$fallback)) return(invisible())
  core <- info$core
  best <- info$best
  tabnetrs_inform(c(
    "OpenBLAS runs its generic {.val {core}} kernels on this CPU, which can run its {.val {best}} kernels.",
    i = "Training and prediction can be several times faster: set {.envvar OPENBLAS_CORETYPE={best}} before R starts (e.g. in {.file ~/.Renviron}).",
    i = "Shown once per session; {.code options(tabnetrs.blas_advice = FALSE)} turns it off."
  ))
  invisible()
}

#' Is CUDA available to tabnetrs?
#'
#' @return `TRUE` when the linked libtorch was built with CUDA and sees a GPU.
#' @examples
#' tabnet_cuda_is_available()
#' @export
tabnet_cuda_is_available <- function() {
  rs_cuda_available()
}

resolve_device <- function(device, call = rlang::caller_env()) {
  if (identical(device, "auto")) {
    return(if (rs_cuda_available()) "cuda" else "cpu")
  }
  if (identical(device, "cuda") && !rs_cuda_available()) {
    abort_config(c('{.code device = "cuda"} was requested, but CUDA is not available.',
                   i = "This libtorch has no CUDA support or no GPU is visible; use {.code device = \"cpu\"} or {.code \"auto\"}."),
                 call = call)
  }
  device
}

# A seed for the Rust core: `seed` checked (a `kind` error if unusable), or
# one drawn from R's RNG, so set.seed() makes the result reproducible.
new_seed <- function(seed = NULL, kind = "config", call = rlang::caller_env()) {
  if (!is.null(seed)) return(as.double(check_seed(seed, kind = kind, call = call)))
  as.double(sample.int(.Machine$integer.max, 1L))
}
