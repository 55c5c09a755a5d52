#' Arrow data, read record batch by record batch
#'
#' Describes Arrow data without reading it into R, for [tabnet_fit()] and
#' [tabnet_pretrain()] (formula interface), [predict()][predict.tabnet_fit], [tabnet_explain()] and
#' [tabnet_importance()]. Training reads the data once per epoch, record batch
#' by record batch, so memory holds the shuffle buffer and one record batch,
#' not the table: data larger than memory can be trained on. Prediction also
#' reads record batch by record batch (memory holds the predictions);
#' [tabnet_explain()] and [tabnet_importance()] read the data into a data
#' frame first (their results have one row per row of the data).
#'
#' @section Sources:
#' * Arrow IPC files, in the file format (`arrow::write_feather()`, polars'
#'   `write_ipc()`) or the stream format (`nanoarrow::write_nanoarrow()`), or
#'   directories of them (their files in name order; names starting with `.`
#'   or `_` are skipped). All files must have the same columns and types.
#' * A function without arguments returning a fresh Arrow C stream each time
#'   it is called: anything [nanoarrow::as_nanoarrow_array_stream()] takes, e.g.
#'   `function() arrow::as_record_batch_reader(dataset)`, a duckdb or polars
#'   result. It is called once per epoch (and for the first read, the
#'   validation rows and the importances); it must give the same rows in the
#'   same order each time.
#'
#' @section Columns:
#' Floating-point, integer and boolean columns are numeric predictors;
#' dictionary columns of strings are factors (their levels are the
#' dictionary's values). A string or dictionary outcome is a classification
#' outcome, with the levels [factor()] would give the strings (sorted in the
#' session's locale) or the dictionary's order; a numeric outcome is a
#' regression. A string predictor is an error (write it as a dictionary).
#' Nulls follow the data-frame path: a null predictor cell is missing, a null
#' outcome an error. Only the formula interface reads Arrow data, with a
#' formula naming columns (`y ~ .`, `y ~ a + b`, `y ~ . - c`), one outcome
#' and no case weights.
#'
#' @section Shuffling:
#' Each epoch reads the data's units in a random order (a unit is a record
#' batch of an IPC file-format file, a whole stream-format file, or the whole
#' C stream) and collects rows in a shuffle buffer of `shuffle_buffer` rows.
#' Whenever the buffer is full, a buffer's worth of rows (rounded down to
#' whole batches) drawn at random from it are trained on in a random batch
#' order; the rest wait for the next units. An epoch has exactly the batches
#' of the in-memory path. The draws come from the fit's seed, so a seed gives
#' the same model for any number of threads. The larger the buffer and the
#' smaller the units, the closer the order is to a full shuffle; data sorted
#' by the outcome should be written in many record batches.
#'
#' The validation rows (`valid_split`) are drawn like the in-memory path's
#' (by row number) and are held in memory, as are the rows the importances
#' are computed on (`importance_sample_size`, at most 100,000 by default).
#' [tabnet_pretrain()] estimates the variances that scale its reconstruction
#' targets on up to 1,000,000 training rows (the data-frame path uses all).
#'
#' @param source Paths of Arrow IPC files or directories, or a function
#'   returning a fresh Arrow C stream (see Sources).
#' @param shuffle_buffer Rows held in the shuffle buffer during training.
#'   Memory is about 4 bytes per row and predictor (twice that while a part is
#'   drawn from it), plus one record batch.
#' @return A `tabnet_arrow` object: the source and its schema (`$schema`,
#'   one row per column: `name`, `kind`, `arrow_type`).
#' @examples
#' \donttest{
#' if (requireNamespace("nanoarrow", quietly = TRUE)) {
#'   path <- tempfile(fileext = ".arrows")
#'   df <- data.frame(a = rnorm(500), b = rnorm(500))
#'   df$y <- ifelse(df$a + df$b > 0, "yes", "no")
#'   nanoarrow::write_nanoarrow(df, path)
#'   fit <- tabnet_fit(y ~ ., tabnet_arrow(path), epochs = 2)
#'   head(predict(fit, tabnet_arrow(path)))
#' }
#' }
#' @export
tabnet_arrow <- function(source, shuffle_buffer = 262144) {
  if (!is.numeric(shuffle_buffer) || length(shuffle_buffer) != 1L || is.na(shuffle_buffer) ||
      shuffle_buffer < 2 || shuffle_buffer != round(shuffle_buffer)) {
    abort_input("{.arg shuffle_buffer} must be a whole number of rows, at least 2.")
  }
  if (is.character(source)) {
    if (!length(source) || anyNA(source)) abort_input("{.arg source} must name Arrow IPC files or directories.")
    source <- path.expand(source)
    absent <- source[!file.exists(source)]
    if (length(absent)) {
      abort_input("{cli::qty(length(absent))}The Arrow file{?s} {.file {absent}} {?does/do} not exist.",
                  subclass = "tabnetrs_error_arrow")
    }
    data <- list(source = source, kind = "files")
  } else if (is.function(source)) {
    rlang::check_installed("nanoarrow", "to read Arrow C streams")
    data <- list(source = source, kind = "stream")
  } else {
    abort_input(c("{.arg source} must be paths of Arrow IPC files or a function returning an Arrow stream, not {.obj_type_friendly {source}}.",
                  i = "For an arrow Table, duckdb or polars result {.code x}, give {.code function() x} or a function that rebuilds it."))
  }
  # (the source is opened before the call: an R error in it stays that error)
  src <- arrow_source(data)
  schema <- arrow_call(rs_arrow_schema(src))
  data$schema <- tibble::tibble(name = schema$name, kind = schema$kind, arrow_type = schema$arrow_type)
  data$shuffle_buffer <- as.double(shuffle_buffer)
  structure(data, class = "tabnet_arrow")
}

#' @export
print.tabnet_arrow <- function(x, ...) {
  what <- if (x$kind == "files") paste(length(x$source), "path(s):", paste(x$source, collapse = ", ")) else
    "an Arrow C stream function"
  cat("<tabnet_arrow> ", what, "\n", nrow(x$schema), " columns: ",
      paste0(x$schema$name, " <", x$schema$arrow_type, ">", collapse = ", "), "\n", sep = "")
  invisible(x)
}

# Errors of the Arrow readers are input errors of class tabnetrs_error_arrow
# (a subclass of tabnetrs_error_input), raised from the user's call.
arrow_call <- function(expr) {
  withCallingHandlers(expr, tabnetrs_error_input = function(e) {
    if (inherits(e, "tabnetrs_error_arrow")) return()
    tabnetrs_abort(cli_escape(conditionMessage(e)), "input", subclass = "tabnetrs_error_arrow",
                   call = conditionCall(e), .translate = FALSE)
  })
}

# What the Rust readers take: the paths, or a slot holding a fresh C stream.
arrow_source <- function(data) {
  if (data$kind == "files") data$source else arrow_open_stream(data$source)
}

# Calls the stream function and moves its stream into a slot Rust reads.
arrow_open_stream <- function(fun) {
  stream <- tryCatch(nanoarrow::as_nanoarrow_array_stream(fun()), error = function(e) e)
  if (inherits(stream, "error") || !nanoarrow::nanoarrow_pointer_is_valid(stream)) {
    why <- if (inherits(stream, "error")) conditionMessage(stream) else "It returned a stream that was already read."
    abort_input(c("The function given to {.fn tabnet_arrow} did not return a fresh Arrow stream.",
                  x = "{why}",
                  i = "It is called once per epoch: it must build a new stream each time (a stream can be read only once)."),
                subclass = "tabnetrs_error_arrow")
  }
  rs_arrow_stream_take(nanoarrow::nanoarrow_pointer_addr_chr(stream))
}

# The outcome and predictors a formula names in the schema's columns
# (`y ~ .`, `y ~ a + b`, `y ~ . - c`).
arrow_formula_columns <- function(formula, schema) {
  proto <- as.data.frame(stats::setNames(rep(list(numeric()), nrow(schema)), schema$name), check.names = FALSE)
  cols <- plain_formula_columns(formula, proto)
  if (is.null(cols)) {
    abort_input(c("With {.fn tabnet_arrow} data, the formula must name one outcome column and predictor columns of the data.",
                  i = "E.g. {.code y ~ .}, {.code y ~ a + b} or {.code y ~ . - id}; transformations need a data frame or a recipe.",
                  i = "The columns are {.field {schema$name}}."))
  }
  cols
}

# Checks the column kinds, reads the data once (rows, nulls, levels) and
# builds a zero-row data frame of the columns' R types, for hardhat.
arrow_prototype <- function(data, outcome, predictors, check_outcome = TRUE) {
  schema <- data$schema
  kind <- stats::setNames(schema$kind, schema$name)
  type <- stats::setNames(schema$arrow_type, schema$name)
  strings <- predictors[kind[predictors] == "string"]
  if (length(strings)) {
    abort_input(c("{cli::qty(length(strings))}Predictor{?s} {.field {strings}} {?is a string column/are string columns}.",
                  i = "Write factors as Arrow dictionaries (e.g. {.code arrow::write_feather()} keeps R factors), or leave the column out of the formula."),
                subclass = "tabnetrs_error_arrow")
  }
  bad <- predictors[kind[predictors] == "unsupported"]
  if (length(bad)) {
    abort_input("{cli::qty(length(bad))}Predictor{?s} {.field {bad}} {?has/have} an Arrow type tabnetrs cannot use ({.val {unique(type[bad])}}): use numeric, integer, boolean or dictionary columns.",
                subclass = "tabnetrs_error_arrow")
  }
  if (!kind[[outcome]] %in% c("double", "integer", "string", "dictionary")) {
    abort_input(c("The outcome column {.field {outcome}} is of Arrow type {.val {type[[outcome]]}}.",
                  i = "A classification outcome is a string or dictionary column, a regression outcome a numeric one."),
                subclass = "tabnetrs_error_arrow")
  }
  src <- arrow_source(data)
  scan <- arrow_call(rs_arrow_scan(src, c(predictors, outcome)))
  if (is.null(scan)) rlang::interrupt()
  cols <- stats::setNames(scan$columns, c(predictors, outcome))
  y <- cols[[outcome]]
  if (check_outcome && y$nulls > 0) {
    abort_input("Found missing values in the {.field {outcome}} outcome column ({y$nulls} row{?s}).")
  }
  if (check_outcome && y$infinite > 0) abort_input("The outcome {.field {outcome}} contains infinite values.")
  inf <- predictors[vapply(cols[predictors], function(c) c$infinite > 0, logical(1))]
  if (length(inf)) abort_input("{cli::qty(length(inf))}Predictor{?s} {.field {inf}} contain{?s/} infinite values.")
  proto_col <- function(c, is_outcome) {
    switch(c$kind,
      double = , integer = , boolean = if (c$kind == "boolean") logical() else numeric(),
      dictionary = factor(character(), levels = c$values),
      # as factor() orders the levels of a character vector
      string = factor(character(), levels = sort(unique(c$values))))
  }
  proto <- lapply(cols, proto_col)
  proto <- as.data.frame(proto, check.names = FALSE, stringsAsFactors = FALSE)
  names(proto) <- c(predictors, outcome)
  list(prototype = proto, n_rows = scan$n_rows, unit_rows = scan$unit_rows)
}

# The columns the Rust readers convert (tabnet_core::arrow_source::ColumnSpec).
arrow_spec <- function(layout, outcome = NULL) {
  levels <- rep(list(NULL), length(layout$names))
  levels[layout$cat] <- lapply(unname(layout$levels), function(l) I(as.character(l)))
  spec <- list(names = I(predictor_labels(layout$names)), levels = levels)
  if (!is.null(outcome)) {
    spec$outcome <- list(name = outcome$names[[1]],
                         levels = if (outcome$task == "regression") NULL else I(outcome$levels[[1]]))
  }
  as.character(jsonlite::toJSON(spec, auto_unbox = TRUE, null = "null", digits = NA))
}

# tabnet_fit(formula, data = tabnet_arrow(...)): hardhat molds a zero-row
# prototype of the columns (so the fit has the blueprint of a data-frame fit
# and predicts on data frames), and training reads the data epoch by epoch.
arrow_fit <- function(formula, data, tabnet_model, config, dots, from_epoch, weights, kind = "supervised") {
  if (!is.null(weights)) {
    abort_input("Case weights are not supported with {.fn tabnet_arrow} data.")
  }
  cols <- arrow_formula_columns(formula, data$schema)
  supervised <- kind == "supervised"
  scanned <- arrow_prototype(data, cols$outcome, cols$predictors, check_outcome = supervised)
  processed <- mold_formula(formula, scanned$prototype)
  config <- resolve_config(config, dots, tabnet_model, kind)
  if (inherits(tabnet_model, c("tabnet_fit", "tabnet_pretrain")) && is.list(tabnet_model$fit$layout)) {
    layout <- align_predictors(processed$predictors, tabnet_model$fit$layout)$layout
  } else {
    layout <- predictor_layout(processed$predictors)
  }
  n <- scanned$n_rows
  if (n == 0) abort_input("The training data has zero rows.")
  if (n < 2) abort_input("Training needs at least 2 rows, not {n}.")
  outcome <- if (supervised) outcome_layout(processed$outcomes) else
    list(task = "regression", names = character(), dims = 1L, levels = NULL)
  if (supervised) check_loss(config$loss, outcome$task)
  use_threads(config$num_threads)
  device <- resolve_device(config$device)
  seed <- new_seed(config$seed)
  res <- arrow_impl(data, scanned, layout, outcome, config, kind, tabnet_model, from_epoch, seed, device)
  constructor <- if (supervised) new_tabnet_fit else new_tabnet_pretrain
  result <- constructor(res$fit, res$serialized_net, processed$blueprint)
  if (!is.null(res$nonfinite)) abort_nonfinite(res$nonfinite, result)
  result
}

# tabnet_impl() for Arrow data: the same network, validation split (rows
# drawn with R's RNG, by row number), epochs and importances, from a feed.
arrow_impl <- function(data, scanned, layout, outcome, config, kind, tabnet_model, from_epoch, seed, device) {
  n <- scanned$n_rows
  start <- start_training(tabnet_model, config, layout, outcome, kind, from_epoch, seed, device)
  model <- start$model
  history <- start$history
  checkpoints <- start$checkpoints
  checkpoint_digests <- start$checkpoint_digests
  schedule <- start$schedule
  config <- start$config
  # (0-based row numbers for the feed, as doubles: n may pass 2^31)
  valid_idx <- as.numeric(valid_rows(n, config$valid_split)) - 1
  supervised <- kind == "supervised"
  spec <- arrow_spec(layout, if (supervised) outcome)
  src <- arrow_source(data)
  feed <- arrow_call(rs_arrow_feed_new(src, spec, scanned$unit_rows, valid_idx,
                                       data$shuffle_buffer))
  valid_ds <- if (length(valid_idx)) arrow_collect(model, data, spec, scanned$unit_rows, valid_idx, supervised)
  if (!supervised && is.null(tabnet_model)) {
    # the pretrainer's reconstruction targets are scaled by their variances,
    # estimated on up to 1,000,000 training rows
    rs_model_prepare(model, arrow_collect(model, data, spec, scanned$unit_rows,
                                          arrow_train_sample(n, valid_idx, 1e6), FALSE))
  }
  rs_manual_seed(seed + length(history))
  train <- structure(list(feed = feed, data = data), class = "tabnet_arrow_feed")
  run <- train_epochs(model, train, valid_ds, config, history, checkpoints, schedule,
                      checkpoint_digests, digest_of = function(w) {
                        model_digest(kind, as.character(rs_model_config(model)), w)
                      })
  importances <- NULL
  if (!config$skip_importance) {
    importances <- arrow_fit_importance(model, data, spec, scanned$unit_rows, n, valid_idx, layout, config)
  }
  fit_result(model, run, config, importances, layout, outcome, kind)
}

# Rows `rows` (sorted, 0-based) of the data as a Rust data set.
arrow_collect <- function(model, data, spec, unit_rows, rows, outcome) {
  src <- arrow_source(data)
  res <- arrow_call(rs_arrow_collect(model, src, spec, unit_rows, rows, outcome))
  if (is.null(res)) rlang::interrupt()
  res$data
}

# `size` training rows drawn as fit_importance() draws them (all when there
# are no more), as 0-based source rows, sorted.
arrow_train_sample <- function(n, valid_idx, size) {
  n_train <- n - length(valid_idx)
  t <- if (size >= n_train) seq_len(n_train) - 1 else sort(sample.int(n_train, size)) - 1
  # training row t is source row t + (validation rows before it)
  before <- valid_idx - seq_along(valid_idx) + 1
  t + findInterval(t, before)
}

# fit_importance() on Arrow data: the same sample of training rows (drawn
# by training-row number), read from the data.
arrow_fit_importance <- function(model, data, spec, unit_rows, n, valid_idx, layout, config) {
  size <- config$importance_sample_size %||% min(n - length(valid_idx), 1e5)
  ds <- arrow_collect(model, data, spec, unit_rows, arrow_train_sample(n, valid_idx, size), FALSE)
  mask_importance_of(model, ds, layout, config)
}

# train_epochs()'s epoch start and batch runs, for an in-memory data set or
# an Arrow feed (which reads a fresh C stream each epoch).
epoch_begin <- function(trainer, data) {
  if (!inherits(data, "tabnet_arrow_feed")) return(rs_trainer_begin(trainer, data))
  if (data$data$kind == "stream") {
    slot <- arrow_open_stream(data$data$source)
    arrow_call(rs_arrow_feed_set_stream(data$feed, slot))
  }
  arrow_call(rs_arrow_trainer_begin(trainer, data$feed))
}

epoch_run <- function(trainer, model, data, max_batches) {
  if (!inherits(data, "tabnet_arrow_feed")) return(rs_trainer_run(trainer, model, data, max_batches))
  arrow_call(rs_arrow_trainer_run(trainer, model, data$feed, max_batches))
}

# The predictors of a fit must be columns of `data` of the same kind.
arrow_check_predictors <- function(object, data) {
  layout <- object$fit$layout
  labels <- predictor_labels(layout$names)
  kind <- stats::setNames(data$schema$kind, data$schema$name)
  missing_cols <- setdiff(labels, names(kind))
  if (length(missing_cols)) {
    abort_input("{cli::qty(length(missing_cols))}The predictor column{?s} {.field {missing_cols}} {?is/are} missing from the Arrow data.",
                subclass = "tabnetrs_error_arrow")
  }
  is_cat <- seq_along(labels) %in% layout$cat
  now_cat <- kind[labels] %in% c("dictionary", "string")
  now_num <- kind[labels] %in% c("double", "integer", "boolean")
  bad <- labels[(is_cat & !kind[labels] %in% "dictionary") | (!is_cat & !now_num)]
  if (length(bad)) {
    abort_input(c("The predictors of the Arrow data do not have the types seen at fit time.",
                  x = "{cli::qty(length(bad))}Column{?s} {.field {bad}} {?is/are} {.val {unname(kind[bad])}} in the data but {?was/were} {ifelse(is_cat[match(bad, labels)], 'a factor', 'numeric')} at fit time.",
                  i = if (any(now_cat & !is_cat)) "Factors are Arrow dictionaries; string predictors are not read."),
                subclass = "tabnetrs_error_arrow")
  }
  invisible()
}

# predict(<tabnet_fit>, tabnet_arrow(...)): record batch by record batch.
arrow_predict <- function(object, new_data, type, epoch) {
  outcome <- object$fit$outcome
  type <- check_pred_type(type, outcome$task)
  arrow_check_predictors(object, new_data)
  model <- live_network(object, epoch)
  use_threads()
  src <- arrow_source(new_data)
  res <- arrow_call(rs_arrow_predict(model, src, arrow_spec(object$fit$layout), inference_batch_size))
  if (is.null(res)) rlang::interrupt()
  if (res$unseen > 0) {
    tabnetrs_warn(c("Factor levels not seen at fit time ({res$unseen} cell{?s}).",
                    i = "They are handled as missing values (as in a data frame)."))
  }
  spruce_predictions(res$pred, type, outcome)
}

# Arrow data read into a data frame, for tabnet_explain() and
# tabnet_importance() (whose results have a row per row of the data, so the
# rows are held anyway): numbers as doubles, booleans as logicals,
# dictionaries as factors (their values as levels), strings as characters.
arrow_as_data_frame <- function(data) {
  keep <- data$schema$kind != "unsupported"
  nms <- data$schema$name[keep]
  kinds <- data$schema$kind[keep]
  src <- arrow_source(data)
  res <- arrow_call(rs_arrow_read(src, nms))
  if (is.null(res)) rlang::interrupt()
  cols <- Map(function(v, lv, kind) if (kind == "dictionary") factor(v, levels = lv) else v,
              res$values, res$levels, kinds)
  names(cols) <- nms
  tibble::as_tibble(cols, .name_repair = "minimal")
}
