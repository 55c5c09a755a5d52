# libtorch runtime settings: threads and device.

# Threads for libtorch: config, then option `tabnetrs.threads`, then the
# environment variable TABNETRS_THREADS (inherited by parallel workers), then
# 1. Debian's libtorch runs an OpenMP pool and an OpenBLAS pool that both
# busy-wait; with TabNet's many small ops a second thread was measured 5-30x
# slower whenever the cores are shared (tuning workers, CI, other jobs), and
# at best marginally faster on an idle machine. Ask for more explicitly.
resolve_threads <- function(n = NULL) {
  if (is.null(n)) n <- getOption("tabnetrs.threads", NULL)
  if (is.null(n) && nzchar(Sys.getenv("TABNETRS_THREADS"))) n <- as.integer(Sys.getenv("TABNETRS_THREADS"))
  if (is.null(n)) n <- 1L
  as.integer(n)
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
