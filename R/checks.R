# Argument checks with messages that name the argument and the bad value.
# `kind` is the condition kind (see R/errors.R): "config" for tabnet_config()
# values, "input" for arguments of the user's call.

# A value as it appears in messages: `format()` of a short vector, its type
# and length otherwise.
format_value <- function(x) {
  if (is.null(x)) return("NULL")
  if (is.atomic(x) && length(x) == 1) {
    if (is.character(x)) return(encodeString(x, quote = "\""))
    # whole numbers in full (3000000000, not 3e+09) up to 2^63 or so
    if (is.numeric(x) && is.finite(x)) return(format(x, digits = 15, scientific = abs(x) >= 1e20))
    return(format(x))
  }
  if (is.atomic(x) && length(x) > 1 && length(x) <= 5) {
    return(paste0("c(", paste(vapply(x, format_value, character(1)), collapse = ", "), ")"))
  }
  if (is.atomic(x)) return(sprintf(tr("a %s vector of length %d"), typeof(x), length(x)))
  sprintf(tr("an object of class <%s>"), class(x)[[1]])
}

# A whole number in [min, max] (max: the largest R integer by default, since
# the value is passed on as an integer).
check_count <- function(x, arg, min = 0, max = .Machine$integer.max, kind = "input", call = rlang::caller_env()) {
  ok <- is.numeric(x) && length(x) == 1 && !is.na(x) && is.finite(x) && x == round(x)
  if (!ok) {
    value <- format_value(x)
    tabnetrs_abort("{.arg {arg}} must be a single whole number, not {value}.", kind, call = call)
  }
  if (x < min) {
    value <- format_value(x)
    tabnetrs_abort("{.arg {arg}} must be a whole number >= {min}, not {value}.", kind, call = call)
  }
  if (x > max) {
    value <- format_value(x)
    tabnetrs_abort(c("{.arg {arg}} must be at most {format(max, scientific = FALSE)}, not {value}.",
                     i = if (max == .Machine$integer.max) "This is the largest integer R can hold."), kind, call = call)
  }
  invisible(x)
}

# A finite number in [min, max]; `open` excludes `min`, `open_max` excludes
# `max`.
check_number <- function(x, arg, min = -Inf, max = Inf, open = FALSE, open_max = FALSE,
                         kind = "input", call = rlang::caller_env()) {
  ok <- is.numeric(x) && length(x) == 1 && !is.na(x) && is.finite(x) &&
    (if (open) x > min else x >= min) && (if (open_max) x < max else x <= max)
  if (!ok) {
    value <- format_value(x)
    range <- number_range(min, max, open, open_max)
    if (is.finite(min) && is.finite(max)) {
      tabnetrs_abort("{.arg {arg}} must be a finite number in {range}, not {value}.", kind, call = call)
    }
    tabnetrs_abort("{.arg {arg}} must be a finite number {range}, not {value}.", kind, call = call)
  }
  invisible(x)
}

number_range <- function(min, max, open = FALSE, open_max = FALSE) {
  if (is.finite(min) && is.finite(max)) {
    return(paste0(if (open) "(" else "[", min, ", ", max, if (open_max) ")" else "]"))
  }
  if (is.finite(min)) return(paste0(if (open) "> " else ">= ", min))
  if (is.finite(max)) return(paste0(if (open_max) "< " else "<= ", max))
  ""
}

# TRUE or FALSE.
check_flag <- function(x, arg, kind = "input", call = rlang::caller_env()) {
  if (!is.logical(x) || length(x) != 1 || is.na(x)) {
    value <- format_value(x)
    tabnetrs_abort("{.arg {arg}} must be {.code TRUE} or {.code FALSE}, not {value}.", kind, call = call)
  }
  invisible(x)
}

match_choice <- function(x, choices, arg, what = NULL, kind = "input", call = rlang::caller_env()) {
  if (!is.character(x) || length(x) != 1 || is.na(x) || !x %in% choices) {
    value <- format_value(x)
    msg <- "{.arg {arg}} must be one of {.or {.val {choices}}}, not {value}."
    # `what`: a template about {x}, marked with N_() by the caller
    if (!is.null(what) && is.character(x) && length(x) == 1) msg <- c(what, x = msg)
    tabnetrs_abort(msg, kind, call = call)
  }
  x
}

# A seed: a single whole number that a double holds exactly (|seed| <= 2^53),
# so that different seeds stay different down to the Rust core.
check_seed <- function(seed, arg = "seed", kind = "input", call = rlang::caller_env()) {
  ok <- is.numeric(seed) && length(seed) == 1 && !is.na(seed) && is.finite(seed) &&
    seed == round(seed) && abs(seed) <= 2^53
  if (!ok) {
    value <- format_value(seed)
    tabnetrs_abort(c("{.arg {arg}} must be a single whole number between -2^53 and 2^53, or {.code NULL}, not {value}.",
                     i = "Larger seeds cannot be told apart."), kind, call = call)
  }
  invisible(seed)
}

# The `...` of a user-facing method that uses none (S3 generics such as
# predict() and autoplot() must have it): anything there is a mistake, most
# often a misspelt argument that would otherwise be ignored silently. The
# error (class `tabnetrs_error_unused_argument`, field `args`) names each one
# and suggests the method's argument closest to a misspelt name (`fn_args`;
# by default the calling function's arguments). `.call`: the frame whose call
# the error names (a dot, so that a user's `call = ` stays in `...`).
check_dots_unused <- function(..., fn_args = NULL, .call = rlang::caller_env()) {
  n <- ...length()
  if (n == 0L) return(invisible())
  if (is.null(fn_args)) fn_args <- setdiff(names(formals(sys.function(sys.parent()))), c("...", "object"))
  nms <- ...names() %||% rep("", n)
  nms[is.na(nms)] <- ""
  bad <- ifelse(nzchar(nms), nms, paste0("..", seq_len(n)))
  close <- character()
  if (length(fn_args) && any(nzchar(nms))) {
    d <- utils::adist(nms[nzchar(nms)], fn_args, ignore.case = TRUE)
    close <- unique(fn_args[apply(d, 1L, function(r) if (min(r) <= 2) which.min(r) else NA)])
    close <- close[!is.na(close)]
  }
  abort_input(c("{cli::qty(length(bad))}Unused argument{?s} {.arg {bad}}: {?it is/they are} not {?an argument/arguments} of this function.",
                i = if (length(close)) "Did you mean {.or {.arg {close}}}?"),
              subclass = "tabnetrs_error_unused_argument", args = bad, call = .call)
}
