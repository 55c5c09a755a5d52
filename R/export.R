#' Export a fitted TabNet network to TorchScript
#'
#' Writes the fitted network as a TorchScript module that PyTorch loads without
#' R or tabnetrs: `torch.jit.load()` in Python (PyTorch 1.13 or later) and,
#' in principle, `torch::jit_load()` in R torch (not tested here: R torch
#' needs its own libtorch download).
#'
#' The module's `forward(x)` takes one float32 tensor of `n` rows and one
#' column per predictor, in the order of `predictors` in the metadata (the
#' order the model was fitted with):
#' * numeric (and logical, as 0/1) predictors as their values;
#' * factors as their 1-based level codes, `as.integer(factor(x, levels =
#'   <the stored levels>))` in R (the fit's levels, which need not be those of
#'   the factor at hand);
#' * missing values as NaN.
#'
#' It returns what [predict()][predict.tabnet_fit] returns, as an `n` x outputs
#' tensor: the class probabilities (`type = "prob"`, in level order, one block
#' per outcome) or the predicted values (`type = "numeric"`, one column per
#' outcome). Batch norm uses its running statistics (evaluation), so a row's
#' result does not depend on the other rows. Missing values are treated
#' exactly as `predict()` treats them: a NaN predictor is set to 0 and removed
#' from the row's initial attention prior; a factor code outside
#' `1..<number of levels>` (0, or a level the model never saw) is missing too,
#' as an unseen level is in `predict()` (hardhat makes it NA).
#'
#' The module is traced through tabnetrs's reference layers (libtorch
#' operations only, in evaluation mode). The sparsemax / entmax supports are
#' computed with sort, cumulative sums and comparisons, so the graph holds for
#' any input, not only the rows it was traced with; `tabnet_export()` reads the
#' written file back and checks it against the model's own predictions before
#' it returns.
#'
#' @section Metadata:
#' The file carries a JSON document as the TorchScript extra file
#' `tabnetrs.json`:
#' * `format` (`"tabnetrs-torchscript"`), `format_version` (1),
#'   `tabnetrs_version`;
#' * `task`: `"classification"` or `"regression"`;
#' * `predictors`: one entry per input column, in order: `name`, `type`
#'   (`"numeric"` or `"factor"`) and, for factors, `levels`;
#' * `outcomes`: one entry per outcome: `name`, `type`, `levels` (factors),
#'   `offset` (0-based first output column) and `width`;
#' * `outputs`: the output column names as `predict()` names them for a single
#'   outcome (`.pred_<level>` or `.pred`), else `<outcome>_<level>` / the outcome;
#' * `input`: `"predictors"` (the columns of the data), or `"molded"` (the
#'   columns after the model's preprocessing, see `molded`);
#' * `missing`: `"NaN"`; `factor_codes`: how factors are coded.
#'
#' In Python:
#' ```
#' import json, torch
#' extra = {"tabnetrs.json": ""}
#' module = torch.jit.load("model.pt", _extra_files=extra)
#' meta = json.loads(extra["tabnetrs.json"])
#' prob = module(torch.tensor(x, dtype=torch.float32))
#' ```
#'
#' @section Workflows and preprocessing:
#' The module holds the network only, which reads the model's *molded*
#' predictors (what [hardhat::mold()] made of the training data). When that
#' is the data's own columns (a formula of plain column names such as
#' `y ~ .` or `y ~ a + b`, a recipe without steps, the x / y interface), the
#' input is the data's columns and `input` is `"predictors"`. Preprocessing
#' that changes columns (recipe steps, formula terms such as `log(x)` or
#' interactions) is not part of the module: `tabnet_export()` refuses such a
#' model unless `molded = TRUE`, which exports the network on the molded
#' columns (`input = "molded"`): you then apply the preprocessing yourself
#' before calling the module (e.g. [recipes::bake()] the rows and pass the
#' predictor columns in the stored order).
#'
#' @param object A [tabnet_fit()] result, a parsnip fit of [tabnet()], or a
#'   fitted workflow whose model is one. A pretrained model
#'   ([tabnet_pretrain()]) has no prediction head and cannot be exported; nor
#'   can a hierarchical model (fitted on a `data.tree` `Node`).
#' @param path File to write (conventionally `*.pt`); its directory must exist.
#'   An existing file is replaced.
#' @param molded Export a model whose preprocessing changes the predictor
#'   columns, on the molded columns (see the section above).
#' @return `path`, invisibly.
#' @examples
#' fit <- tabnet_fit(Species ~ ., iris, epochs = 1, seed = 1, num_threads = 1)
#' path <- tempfile(fileext = ".pt")
#' tabnet_export(fit, path)
#' unlink(path)
#' @export
tabnet_export <- function(object, path, molded = FALSE) {
  check_export_path(path)
  if (!is.logical(molded) || length(molded) != 1L || is.na(molded)) {
    abort_input("{.arg molded} must be {.code TRUE} or {.code FALSE}.")
  }
  target <- export_target(object)
  fit <- target$fit
  if (inherits(fit, "tabnet_pretrain")) {
    abort_input(c("A pretrained model cannot be exported: it has no prediction head.",
                  i = "Fine-tune it first with {.code tabnet_fit(..., tabnet_model = <pretrained>)}."))
  }
  if (identical(fit$fit$outcome$task, "hierarchical")) {
    abort_input("A hierarchical model (fitted on a {.cls Node}) cannot be exported.")
  }
  preprocessing <- target$preprocessing
  if (length(preprocessing) && !molded) {
    abort_input(c("The model's preprocessing changes its predictor columns and cannot be part of the exported module.",
                  x = "{preprocessing}.",
                  i = "Use {.code molded = TRUE} to export the network on the molded columns, and apply the preprocessing before calling it."))
  }
  meta <- export_metadata(fit, target$outcome_names, molded = length(preprocessing) > 0)
  model <- live_network(fit)
  # written next to `path`, then renamed: a failed export leaves no file
  tmp <- paste0(path, ".tmp-", Sys.getpid())
  on.exit(unlink(tmp), add = TRUE)
  use_threads()
  rs_model_export(model, tmp, meta)
  if (!file.rename(tmp, path)) {
    abort_input("The module cannot be written to {.file {path}}.")
  }
  invisible(path)
}

# `path` must be one file name in an existing, writable directory.
check_export_path <- function(path) {
  if (!is.character(path) || length(path) != 1L || is.na(path) || !nzchar(path)) {
    abort_input("{.arg path} must be a single file name, not {.obj_type_friendly {path}}.")
  }
  if (dir.exists(path)) {
    abort_input("{.arg path} is a directory: {.file {path}}. Give a file name.")
  }
  dir <- dirname(path)
  if (!dir.exists(dir)) {
    abort_input("The directory of {.arg path} does not exist: {.file {dir}}.")
  }
  if (file.access(dir, 2L) != 0L || (file.exists(path) && file.access(path, 2L) != 0L)) {
    abort_input("{.file {path}} is not writable.")
  }
  invisible()
}

# The tabnetrs model inside `object`, the preprocessing that the module
# cannot hold (NULL when the molded predictors are the data's columns) and the
# outcome names the user knows.
export_target <- function(object) {
  if (inherits(object, "workflow")) {
    if (!isTRUE(object$trained)) {
      abort_input("The workflow is not fitted: fit it before exporting it.")
    }
    parsnip_fit <- workflows::extract_fit_parsnip(object)
    fit <- parsnip_fit$fit
    if (!inherits(fit, c("tabnet_fit", "tabnet_pretrain"))) {
      abort_input("The workflow's model is not a tabnetrs model (engine {.val {parsnip_fit$spec$engine}}).")
    }
    mold <- workflows::extract_mold(object)
    molded_cat <- names(mold$predictors)[vapply(mold$predictors, is.factor, logical(1))]
    layout <- fit$fit$layout
    pre <- c(blueprint_preprocessing(mold$blueprint, names(mold$predictors), molded_cat),
             blueprint_preprocessing(fit$blueprint, layout$names, layout$names[layout$cat]))
    return(list(fit = fit, preprocessing = pre, outcome_names = names(mold$outcomes)))
  }
  if (inherits(object, "model_fit")) {
    if (!inherits(object$fit, c("tabnet_fit", "tabnet_pretrain"))) {
      abort_input("The parsnip model is not a tabnetrs model (engine {.val {object$spec$engine}}).")
    }
    object <- object$fit
  }
  if (!inherits(object, c("tabnet_fit", "tabnet_pretrain"))) {
    abort_input("{.arg object} must be a tabnetrs fit, a parsnip fit of {.fn tabnet} or a fitted workflow, not {.obj_type_friendly {object}}.")
  }
  layout <- object$fit$layout
  list(fit = object, preprocessing = blueprint_preprocessing(object$blueprint, layout$names, layout$names[layout$cat]),
       outcome_names = object$fit$outcome$names)
}

# What a blueprint does to the predictor columns beyond selecting them, as a
# sentence (NULL when the molded columns `molded_names`, of which `molded_cat`
# are factors, are the data's own columns with their own types).
blueprint_preprocessing <- function(blueprint, molded_names, molded_cat) {
  if (inherits(blueprint, "recipe_blueprint")) {
    steps <- length(blueprint$recipe$steps)
    if (steps > 0L) return(cli::format_inline(tr("Its recipe has {steps} step{?s}")))
    return(NULL)
  }
  ptype <- blueprint$ptypes$predictors
  if (is.null(ptype)) return(NULL)
  made <- setdiff(molded_names, names(ptype))
  if (length(made)) {
    return(cli::format_inline(tr("Its formula makes the column{?s} {.field {made}}")))
  }
  was_cat <- names(ptype)[vapply(ptype, is.factor, logical(1))]
  changed <- molded_names[(molded_names %in% was_cat) != (molded_names %in% molded_cat)]
  if (length(changed)) {
    return(cli::format_inline(tr("Its formula changes the type of {.field {changed}}")))
  }
  NULL
}

# The JSON document stored with the module (see ?tabnet_export).
export_metadata <- function(fit, outcome_names, molded) {
  layout <- fit$fit$layout
  outcome <- fit$fit$outcome
  is_cat <- seq_along(layout$names) %in% layout$cat
  cat_levels <- stats::setNames(layout$levels, layout$names[layout$cat])
  predictors <- lapply(seq_along(layout$names), function(j) {
    nm <- layout$names[[j]]
    if (is_cat[[j]]) list(name = nm, type = "factor", levels = I(cat_levels[[nm]]))
    else list(name = nm, type = "numeric")
  })
  if (length(outcome_names) != length(outcome$names)) outcome_names <- outcome$names
  offsets <- c(0L, cumsum(outcome$dims))
  classification <- identical(outcome$task, "classification")
  outcomes <- lapply(seq_along(outcome$names), function(k) {
    out <- list(name = outcome_names[[k]], type = if (classification) "factor" else "numeric")
    if (classification) out$levels <- I(outcome$levels[[k]])
    c(out, list(offset = offsets[[k]], width = outcome$dims[[k]]))
  })
  outputs <- if (length(outcome$names) == 1L) {
    if (classification) paste0(".pred_", outcome$levels[[1]]) else ".pred"
  } else if (classification) {
    unlist(Map(function(nm, lv) paste0(nm, "_", lv), outcome_names, outcome$levels), use.names = FALSE)
  } else {
    outcome_names
  }
  meta <- list(
    format = "tabnetrs-torchscript",
    format_version = 1L,
    tabnetrs_version = as.character(utils::packageVersion("tabnetrs")),
    task = outcome$task,
    predictors = predictors,
    outcomes = outcomes,
    outputs = I(outputs),
    input = if (molded) "molded" else "predictors",
    missing = "NaN",
    factor_codes = "1-based position in `levels`; NaN or any other value (a level unseen at fit time) is missing"
  )
  as.character(jsonlite::toJSON(meta, auto_unbox = TRUE, digits = NA, null = "null"))
}
