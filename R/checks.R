# Argument checks with messages that name the argument.

check_count <- function(x, arg, min = 0) {
  if (!is.numeric(x) || length(x) != 1 || is.na(x) || x != round(x) || x < min) {
    cli::cli_abort("{.arg {arg}} must be a whole number >= {min}, not {.val {format(x)}}.", call = NULL)
  }
  invisible(x)
}

check_number <- function(x, arg, min = -Inf, max = Inf, open = FALSE) {
  ok <- is.numeric(x) && length(x) == 1 && !is.na(x) && is.finite(x) && x >= min && x <= max
  if (ok && open) ok <- x > min
  if (!ok) {
    range <- if (open) paste0("> ", min) else paste0("in [", min, ", ", max, "]")
    cli::cli_abort("{.arg {arg}} must be a finite number {range}, not {.val {format(x)}}.", call = NULL)
  }
  invisible(x)
}

match_choice <- function(x, choices, arg, what = "must be one of") {
  if (!is.character(x) || length(x) != 1 || !x %in% choices) {
    cli::cli_abort("{.val {format(x)}} {what}: {.arg {arg}} must be one of {.or {.val {choices}}}.", call = NULL)
  }
  x
}
