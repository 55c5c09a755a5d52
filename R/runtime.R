# libtorch runtime settings: threads and device.

# Threads: config, then option `tabnetrs.threads`, then the environment
# variable TABNETRS_THREADS (inherited by parallel workers), then the machine's
# cores (at most 8). On the CPU, training and inference run fused kernels on
# that many rayon threads while libtorch's OpenMP pool and OpenBLAS stay on one
# thread each (both busy-wait; together they made 2 threads slower than 1).
# Parallel tuning workers should still ask for 1 each.
resolve_threads <- function(n = NULL) {
  if (is.null(n)) n <- getOption("tabnetrs.threads", NULL)
  if (is.null(n) && nzchar(Sys.getenv("TABNETRS_THREADS"))) n <- as.integer(Sys.getenv("TABNETRS_THREADS"))
  if (is.null(n)) n <- default_threads()
  as.integer(n)
}

default_threads <- function() {
  cores <- suppressWarnings(parallel::detectCores())
  if (is.na(cores) || cores < 1L) 1L else min(as.integer(cores), 8L)
}

use_threads <- function(n = NULL) {
  n <- resolve_threads(n)
  if (rs_get_threads() != n) rs_set_threads(n)
  invisible(n)
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

resolve_device <- function(device) {
  if (identical(device, "auto")) {
    return(if (rs_cuda_available()) "cuda" else "cpu")
  }
  if (identical(device, "cuda") && !rs_cuda_available()) {
    cli::cli_abort(c('{.code device = "cuda"} was requested, but CUDA is not available.',
                     i = "This libtorch has no CUDA support or no GPU is visible; use {.code device = \"cpu\"} or {.code \"auto\"}."),
                   call = NULL)
  }
  device
}

new_seed <- function(seed = NULL) {
  if (!is.null(seed)) return(as.double(seed))
  as.double(sample.int(.Machine$integer.max, 1L))
}
