# Conditions: the one path by which every tabnetrs error reaches the user.
#
# Every error tabnetrs raises has class `tabnetrs_error` and one of four
# subclasses, so that callers can catch exactly what they mean:
#
#   tabnetrs_error_input     the data or an argument of the call is unusable
#   tabnetrs_error_config    a configuration value (tabnet_config(), options,
#                            environment variables) is out of range
#   tabnetrs_error_model     a fitted object is corrupted, modified or does not
#                            match the data (saved models are verified)
#   tabnetrs_error_internal  a defect in tabnetrs (a Rust panic or libtorch
#                            assertion): the message says so and asks for a report
#
# Errors are raised with the user's call (`tabnet_fit(y ~ ., df)`,
# `predict(fit, new)`), never with an internal function's. As in hardhat and
# rlang, `call` is threaded: every check and internal function that raises
# takes `call = caller_env()` and passes it on, so the call named is that of
# the user-facing function (an exported function or S3 method) whose frame
# reached the check; error_call() turns that frame into its call. Under
# parsnip or workflows the user wrote `fit()`, `fit_xy()` or `predict()` and
# parsnip called tabnetrs for them: that call is named, as bonsai's engines
# do. A frame of an internal function (a path not threaded yet, or an `rs_*()`
# wrapper, whose errors come from Rust) falls back to the outermost tabnetrs
# function on the stack (user_call()).
#
# Rust functions (`rs_*`) return errors as values (extendr's `result_condition`):
# the generated wrappers pass every result through `rust_result()`, which turns
# them into these conditions. A panic or an argument-conversion failure inside
# `.Call()` arrives as a plain R error and becomes a `tabnetrs_error_internal`
# whose message keeps no panic text (it is in the condition's `detail`).
#
# Translation: every message, warning and note tabnetrs raises goes through
# `tabnetrs_abort()`, `tabnetrs_warn()` or `tabnetrs_inform()`, which look each
# element of the cli message up in the "R-tabnetrs" catalogue (po/R-fr.po,
# compiled to inst/po/fr/LC_MESSAGES/R-tabnetrs.mo) *before* cli interpolates
# it: the msgid is the glue template as written in the source, placeholders and
# cli markup included. Messages must therefore be passed as literal templates
# (never assembled with paste()); `Rscript tools/update-po.R` extracts them,
# updates po/ and checks the translations. Messages of the Rust core are
# templates of the same kind (`msg!()` in src/rust/, in the same catalogue):
# `rust_result()` translates them and cli fills in their values.

error_kinds <- c("input", "config", "model", "internal")

# Raises a tabnetrs condition. `message` is a cli message (glue syntax,
# evaluated in `.envir`); `kind` one of `error_kinds`; `...` extra fields.
# `subclass`: more specific classes, placed before the kind's.
# `.translate = FALSE`: `message` is not a catalogue template (Rust text).
tabnetrs_abort <- function(message, kind = "input", ..., subclass = NULL, call = rlang::caller_env(),
                           .envir = parent.frame(), .translate = TRUE) {
  kind <- match.arg(kind, error_kinds)
  call <- error_call(call)
  if (.translate) {
    message <- tr(message)
    tr_collapse()
  }
  cli::cli_abort(message, class = c(subclass, paste0("tabnetrs_error_", kind), "tabnetrs_error"),
                 call = call, ..., .envir = .envir)
}

# A warning (class `tabnetrs_warning`), translated as tabnetrs_abort()'s.
tabnetrs_warn <- function(message, ..., class = NULL, .envir = parent.frame()) {
  tr_collapse()
  cli::cli_warn(tr(message), class = c(class, "tabnetrs_warning"), ..., .envir = .envir)
}

# A message (class `tabnetrs_message`), translated as tabnetrs_abort()'s.
tabnetrs_inform <- function(message, ..., class = NULL, .envir = parent.frame()) {
  tr_collapse()
  cli::cli_inform(tr(message), class = c(class, "tabnetrs_message"), ..., .envir = .envir)
}

# Each element of `x` (a message template) in the user's language, names (cli
# bullet types) kept; text without a translation comes back unchanged.
tr <- function(x) {
  if (!is.character(x) || !length(x)) return(x)
  out <- gettext(x, domain = "R-tabnetrs", trim = FALSE)
  names(out) <- names(x)
  out
}

# cli joins vectors with English words ("a, b, and c", `{.or}`: "a, b, or c"):
# in a translated session, the caller's messages use the catalogue's words
# (a cli_div() closed when the caller returns). In English nothing changes.
tr_collapse <- function(.envir = parent.frame()) {
  words <- c(tr(" and "), tr(", and "), tr(" or "), tr(", or "))
  if (identical(words, c(" and ", ", and ", " or ", ", or "))) return(invisible())
  and <- list("vec-sep2" = words[[1L]], "vec-last" = words[[2L]])
  or <- list("vec-sep2" = words[[3L]], "vec-last" = words[[4L]])
  # (`span.or span`: the inner span of `{.or {.val {x}}}` does the joining)
  cli::cli_div(theme = list(span = and, span.or = or, "span.or span" = or), .envir = .envir)
  invisible()
}

# Marks a template that is translated later, where it is used as a message
# (tools/update-po.R extracts the literal given to N_()).
N_ <- function(x) x

abort_input <- function(message, ..., call = rlang::caller_env(), .envir = parent.frame()) {
  tabnetrs_abort(message, "input", ..., call = call, .envir = .envir)
}

abort_config <- function(message, ..., call = rlang::caller_env(), .envir = parent.frame()) {
  tabnetrs_abort(message, "config", ..., call = call, .envir = .envir)
}

abort_model <- function(message, ..., call = rlang::caller_env(), .envir = parent.frame()) {
  tabnetrs_abort(message, "model", ..., call = call, .envir = .envir)
}

# `detail` (the raw Rust or libtorch text) is kept in the condition, not shown.
abort_internal <- function(detail = NULL, call = rlang::caller_env()) {
  tabnetrs_abort(c("Internal error in tabnetrs.",
                   i = "This is a bug; please report it with the code that produced it."),
                 "internal", detail = detail, call = call)
}

# The call an error names, from `call`: a call (or NULL) as it is; a frame
# (an environment, see the top of this file) of a user-facing function gives
# that function's call -- or, when it was called by another user-facing
# tabnetrs function (tabnet_fit.matrix() calls tabnet_fit.data.frame(), a
# workflow's method calls the fit's), the outermost of those callers' -- and
# under parsnip/workflows the user's fit()/fit_xy()/predict() that reached
# it. A frame of another package's or the user's function gives its call. A
# frame of an internal function (a path not threaded) falls back to
# user_call().
error_call <- function(call) {
  if (!is.environment(call)) return(call)
  i <- Position(function(f) identical(f, call), sys.frames(), right = TRUE)
  if (is.na(i)) return(NULL)
  f <- sys.function(i)
  # a function of another package or of the user's (as rlang does): its call
  if (!identical(topenv(environment(f)), topenv(environment(error_call)))) return(sys.call(i))
  if (!is_entry_point(f)) return(user_call())
  while ((p <- sys.parents()[[i]]) > 0L && p < i && is_entry_point(sys.function(p))) i <- p
  for (j in seq_len(i - 1L)) {
    if (is_user_generic(sys.function(j))) return(sys.call(j))
  }
  out <- sys.call(i)
  # an S3 method of another package's generic (predict.tabnet_fit from
  # stats::predict): the user wrote the generic's call
  if (i > 1L && is_dispatch(sys.call(i - 1L), out)) out <- sys.call(i - 1L)
  out
}

# TRUE for a user-facing function of tabnetrs: an export or a registered S3
# method.
is_entry_point <- function(f) {
  ns <- topenv(environment(is_entry_point))
  if (!identical(topenv(environment(f)), ns)) return(FALSE)
  entries <- runtime_state$entry_points
  if (is.null(entries)) {
    exports <- mget(getNamespaceExports(ns), envir = ns, inherits = FALSE, ifnotfound = list(NULL))
    methods <- as.list(ns[[".__S3MethodsTable__."]])
    entries <- Filter(is.function, c(exports, methods))
    runtime_state$entry_points <- entries
  }
  any(vapply(entries, identical, logical(1), f))
}

# The call of the outermost tabnetrs function on the stack (error_call()'s
# fallback for frames of internal functions): the one the user wrote (an S3 method's frame carries its generic's call, e.g. `predict(fit, d)`).
# Under parsnip or workflows the user wrote `fit()`, `fit_xy()` or `predict()`
# and parsnip called tabnetrs for them: the outermost such call is named, as
# bonsai's engines are (not parsnip's internal `tabnetrs::tabnet_fit(...)`).
user_call <- function() {
  ns <- topenv(environment(user_call))
  n <- sys.nframe() - 1L
  for (i in seq_len(max(n, 0L))) {
    if (identical(topenv(environment(sys.function(i))), ns)) {
      for (j in seq_len(i - 1L)) {
        if (is_user_generic(sys.function(j))) return(sys.call(j))
      }
      call <- sys.call(i)
      # an S3 method of another package's generic (predict.tabnet_fit from
      # stats::predict): the user wrote the generic's call
      if (i > 1L && is_dispatch(sys.call(i - 1L), call)) call <- sys.call(i - 1L)
      return(call)
    }
  }
  NULL
}

# The tidymodels generics a user calls on a parsnip specification, a parsnip
# fit or a workflow (parsnip re-exports generics' `fit()`).
is_user_generic <- function(f) {
  identical(f, parsnip::fit) || identical(f, parsnip::fit_xy) || identical(f, stats::predict)
}

is_dispatch <- function(generic_call, method_call) {
  g <- generic_call[[1L]]
  m <- method_call[[1L]]
  if (is.call(g) && identical(g[[1L]], quote(`::`))) g <- g[[3L]]
  is.name(g) && is.name(m) && startsWith(as.character(m), paste0(as.character(g), "."))
}

# Every `rs_*()` wrapper passes its `.Call()` through here (see
# src/rust/document.rs). `x` is evaluated inside, so an R error raised by the
# call itself (a panic caught by extendr, an argument that could not be
# converted) is caught too.
rust_result <- function(x) {
  fn <- format(sys.call(-1L)[[1L]])
  x <- tryCatch(x, error = function(e) abort_internal(paste0(fn, ": ", conditionMessage(e))))
  if (inherits(x, "extendr_error")) {
    err <- x$value
    kind <- if (is.list(err) && isTRUE(err$kind %in% error_kinds)) err$kind else "internal"
    msg <- if (is.list(err)) err$message else as.character(err)
    if (kind == "internal") abort_internal(paste0(fn, ": ", msg))
    template <- if (is.list(err) && is.character(err$template)) err$template else cli_escape(msg)
    args <- if (is.list(err) && is.list(err$args)) err$args else list()
    rust_abort(template, kind, args)
  }
  x
}

# Raises an error of the Rust core: `template` is the core's cli template
# (its `msg!()`, extracted into the catalogue by tools/update-po.R; plain
# text comes escaped), translated here and filled in by cli from `args`
# (the placeholders' values), so it reads like the R layer's errors, in the
# user's language.
rust_abort <- function(template, kind, args, call = user_call()) {
  msg <- tr(template)
  # in the R layer's style: a sentence (capitalised, with its full stop)
  msg <- paste0(toupper(substr(msg, 1L, 1L)), substring(msg, 2L))
  if (!grepl("[.!?]$", msg)) msg <- paste0(msg, ".")
  if (kind == "model") {
    msg <- c(msg, i = tr("The object was damaged or edited; refit the model or read it again from its file."))
  }
  env <- list2env(args, parent = baseenv())
  tr_collapse()
  tabnetrs_abort(msg, kind, call = call, .envir = env, .translate = FALSE)
}

cli_escape <- function(x) {
  gsub("}", "}}", gsub("{", "{{", x, fixed = TRUE), fixed = TRUE)
}
