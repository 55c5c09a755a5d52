#' Configuration for TabNet models
#'
#' Collects the architecture and training settings used by [tabnet_fit()] and
#' [tabnet_pretrain()]. Argument names and meanings follow the `tabnet` package,
#' so existing code (including partial matching such as `epoch = 10`) keeps
#' working. Anything passed through `...` of [tabnet_fit()] overrides the
#' corresponding value of `config`.
#'
#' Defaults differ from the `tabnet` package (and from pytorch-tabnet) in
#' three places, each measured (`bench/vignette_study.R`,
#' `bench/ablation.R`, `bench/results-vignette.md`):
#' * `batch_size = 512` (`tabnet`: `1024^2`, pytorch-tabnet: 1024) and
#'   `virtual_batch_size = 128` (`tabnet`: `256^2`): many optimizer steps per
#'   epoch, where `tabnet`'s values make one step per epoch and 1024 makes few
#'   on data of a few thousand rows (5,000 rows, 10 epochs: 50 steps at 1024,
#'   100 at 512).
#' * `mask_type = "entmax"` (both others: `"sparsemax"`). On the interpretation
#'   vignette's data (5,000 rows, 10 epochs) accuracy rises from 0.93 to 0.97
#'   (Syn2) and from 0.86 to 0.95 (Syn4) and the vignette's conclusions hold
#'   for far more seeds; on the paper's Syn4 benchmark (its settings, 1000
#'   iterations) test AUC rises from 0.735 to 0.78, above the paper's 0.776.
#'   Set `mask_type = "sparsemax"` (and `batch_size = 1024`) for the
#'   pytorch-tabnet configuration.
#'
#' Momentum uses the PyTorch convention (the paper's \eqn{m_B} is
#' `1 - momentum`).
#'
#' @param batch_size Rows per mini-batch (a whole number from 2 to
#'   `.Machine$integer.max`).
#' @param penalty Sparsity regularisation \eqn{\lambda_{sparse}} (the entropy of the masks).
#' @param clip_value If a number, the global gradient norm is clipped at it.
#' @param loss `"auto"` (cross-entropy for factor outcomes, MSE for numeric),
#'   `"mse"`, `"cross_entropy"` (also `"bce"`), or `"aum"` for one binary
#'   factor outcome: the area under min(FPR, FNR) of each batch's ROC curve
#'   (Hillman & Hocking, 2023; the tabnet package's `nn_aum_loss()`), a
#'   surrogate of the ROC curve for imbalanced classes, on the score
#'   \eqn{\log p_2 - \log p_1} (case weights count a row that many times). It
#'   ranks the rows; the probabilities it gives are not calibrated. See
#'   `vignette("imbalanced", package = "tabnetrs")`.
#' @param epochs Number of passes over the training data (a whole number from 0
#'   to `.Machine$integer.max`).
#' @param drop_last Drop a final batch smaller than `batch_size`. A final batch of
#'   one row is always dropped (batch norm cannot use it).
#' @param decision_width,attention_width Widths \eqn{N_d} and \eqn{N_a}: whole
#'   numbers from 1 to 4096. If one is `NULL` it copies the other, if both are
#'   `NULL` both are 8.
#' @param num_steps Number of decision steps (1 to 64).
#' @param feature_reusage Relaxation \eqn{\gamma} of the prior (1 = use each
#'   feature once).
#' @param mask_type `"entmax"` (entmax-1.5, the default) or `"sparsemax"`
#'   (the `tabnet` package's and pytorch-tabnet's default). The `tabnet`
#'   package's `"sparsemax15"` and `"entmax15"` are its top-k partial-sort
#'   implementations of the same two functions: they are accepted and give the
#'   exact sparsemax and entmax-1.5 masks (tabnetrs sorts each row in full,
#'   which is fast at any number of columns).
#' @param mask_topk With `"sparsemax15"` / `"entmax15"`, the `tabnet` package's
#'   initial `k` of its partial sort: a whole number >= 1, or `NULL`. The
#'   masks do not depend on it (the partial sort widens `k` until the support
#'   fits), so tabnetrs validates it and keeps it in the configuration only.
#' @param virtual_batch_size Rows per ghost batch-norm chunk (a whole number
#'   from 2 to `.Machine$integer.max`).
#' @param valid_split Share of the training rows held out to compute a
#'   validation loss each epoch.
#' @param learn_rate Initial learning rate of Adam.
#' @param optimizer `"adam"`, the only optimizer supported.
#' @param lr_scheduler `NULL`, `"step"` (multiply by `lr_decay` every `step_size`
#'   epochs), `"reduce_on_plateau"` (multiply by `lr_decay` after `step_size`
#'   epochs without improvement of the monitored loss) or `"exponential"` (the
#'   paper's schedule: multiply by `lr_decay` every `step_size` optimizer steps).
#' @param lr_decay,step_size Parameters of `lr_scheduler`.
#' @param checkpoint_epochs Keep a copy of the weights every this many epochs
#'   (for `predict(epoch = )` and `from_epoch`); `NULL` or 0 for none.
#' @param cat_emb_dim Embedding width of categorical predictors: one number, or
#'   one per categorical predictor.
#' @param num_independent,num_shared GLU layers per feature transformer that are
#'   step-specific and shared across steps (0 to 64 each, not both 0).
#' @param num_independent_decoder,num_shared_decoder The same for the
#'   pretraining decoder.
#' @param momentum Batch-norm momentum (PyTorch convention), in (0, 1].
#' @param pretraining_ratio Share of cells masked in [tabnet_pretrain()].
#' @param verbose Show a progress bar and per-epoch losses.
#' @param device `"auto"` (CUDA when libtorch has it, else CPU), `"cpu"` or
#'   `"cuda"`. The fitted model is always returned on the CPU side (as bytes).
#' @param importance_sample_size Rows used to compute the global feature
#'   importance after fitting (`NULL`: all training rows up to 100,000).
#' @param early_stopping_monitor `"auto"`, `"valid_loss"` or `"train_loss"`.
#' @param early_stopping_tolerance Minimum relative improvement that counts.
#' @param early_stopping_patience Epochs without improvement before stopping (0
#'   disables early stopping). Unlike the `tabnet` package, the best epoch's
#'   weights are restored when training stops.
#' @param num_workers Accepted for compatibility; data never goes through R
#'   workers here.
#' @param skip_importance Skip the global feature importance.
#' @param num_threads Cores to use for training (`NULL`: the `tabnetrs.threads`
#'   option, else the `TABNETRS_THREADS` environment variable, else the
#'   machine's cores, at most 8). A whole number >= 1; a larger value than the
#'   machine's cores ([parallel::detectCores()]) is capped at them, with a
#'   message (the option and the environment variable too). The thread count
#'   belongs to the session, not to the model: [predict()][predict.tabnet_fit],
#'   [tabnet_explain()] and [tabnet_importance()] use the session's setting (the
#'   option, else the environment variable, else the default), never the
#'   `num_threads` a saved model was trained with, and continuing a fit with
#'   `tabnet_model` does not reuse it either. On the CPU, training and inference run their fused kernels on
#'   this many threads while libtorch and OpenBLAS are kept on one thread each
#'   (their idle threads spin and would compete). Parallel tuning workers should
#'   use 1 thread each (e.g. `Sys.setenv(TABNETRS_THREADS = 1)` before starting
#'   them), or the cores are oversubscribed.
#' @param grouped_features Feature groups (as pytorch-tabnet 4.x's
#'   `grouped_features`): `NULL` (no groups), or a list of character vectors
#'   of predictor names (or of whole-number positions among the predictors, in
#'   the model's predictor order). The columns of a group share one attention
#'   weight: every decision step attends to the group as a whole and each of
#'   its columns receives the group's mask divided by the group's size (a
#'   factor's share is then spread over its embedding). Priors and the
#'   sparsity penalty work on groups; predictors in no group are groups of
#'   their own. Useful for correlated columns that carry one signal (the
#'   dummies or splines of one variable, repeated measures). Explanations and
#'   importances are still reported per predictor, plus per group (see
#'   [tabnet_explain()] and [tabnet_importance()]). A predictor may be in one
#'   group only; a group of one predictor is allowed. Names the list's
#'   elements to name the groups (else `"group_1"`, `"group_2"`, ...). With
#'   the parsnip model [tabnet()], give it as an engine argument:
#'   `set_engine("tabnetrs", grouped_features = list(...))`. In a row with
#'   missing values, a group's prior is the share of its present columns.
#'   The groups are part of the architecture: continuing a fit or fine-tuning
#'   a pretrained model keeps the earlier model's groups.
#' @param epsilon The small constant in the sparsity penalty's
#'   `M * log(M + epsilon)` (pytorch-tabnet's `epsilon`): 1e-15 as
#'   pytorch-tabnet and the tabnet package; the paper's TensorFlow code uses
#'   1e-5, which weakens the penalty's pull on small mask entries. A number
#'   in (0, 0.1].
#' @param init How the linear layers' weights are drawn: `"pytorch_tabnet"`
#'   (the default; pytorch-tabnet's and the tabnet package's Xavier-normal with
#'   their custom gains) or `"glorot_uniform"` (the paper's TensorFlow code,
#'   `tf.layers.dense`'s default). Both are part of the architecture:
#'   continuing a fit or fine-tuning keeps the earlier model's `epsilon` and
#'   `init`. `bench/results-ablation.md` in the source repository measures
#'   both against the paper's synthetic benchmark.
#' @param seed A whole number with absolute value at most 2^53 (larger ones
#'   cannot be told apart); `NULL` draws one from R's RNG, so `set.seed()`
#'   makes fits reproducible. What is promised: on one machine (same CPU and
#'   libraries) a seed gives bit-identical weights and predictions whatever
#'   `num_threads` is (work is split by the data's shape, never by the
#'   threads) and in every session. Across machines, results agree to float32
#'   rounding only: OpenBLAS picks its matrix kernels per CPU, and rounding
#'   differences of about 1e-7 can grow over many epochs of training.
#' @return A named list of class `tabnet_config` using the `tabnet` package's
#'   internal names (`n_d`, `n_a`, `n_steps`, `gamma`, `lambda_sparse`, ...).
#' @examples
#' str(tabnet_config(epochs = 10, decision_width = 16))
#' @export
tabnet_config <- function(batch_size = 512, penalty = 1e-3, clip_value = NULL, loss = "auto",
                          epochs = 5, drop_last = FALSE, decision_width = NULL,
                          attention_width = NULL, num_steps = 3, feature_reusage = 1.3,
                          mask_type = "entmax", mask_topk = NULL, virtual_batch_size = 128,
                          valid_split = 0, learn_rate = 2e-2, optimizer = "adam",
                          lr_scheduler = NULL, lr_decay = 0.1, step_size = 30,
                          checkpoint_epochs = 10, cat_emb_dim = 1, num_independent = 2,
                          num_shared = 2, num_independent_decoder = 1, num_shared_decoder = 1,
                          momentum = 0.02, pretraining_ratio = 0.5, verbose = FALSE,
                          device = "auto", importance_sample_size = NULL,
                          early_stopping_monitor = "auto", early_stopping_tolerance = 0,
                          early_stopping_patience = 0L, num_workers = 0L, skip_importance = FALSE,
                          num_threads = NULL, seed = NULL, grouped_features = NULL,
                          epsilon = 1e-15, init = "pytorch_tabnet") {
  # each width as the user gave it is checked before one is copied into the other
  max_width <- 4096
  if (!is.null(decision_width)) check_count(decision_width, "decision_width", min = 1, max = max_width, kind = "config")
  if (!is.null(attention_width)) check_count(attention_width, "attention_width", min = 1, max = max_width, kind = "config")
  if (is.null(decision_width) && is.null(attention_width)) decision_width <- 8
  if (is.null(attention_width)) attention_width <- decision_width
  if (is.null(decision_width)) decision_width <- attention_width
  check_count(batch_size, "batch_size", min = 2, kind = "config")
  check_count(virtual_batch_size, "virtual_batch_size", min = 2, kind = "config")
  check_count(epochs, "epochs", min = 0, kind = "config")
  check_count(num_steps, "num_steps", min = 1, max = 64, kind = "config")
  check_count(num_independent, "num_independent", min = 0, max = 64, kind = "config")
  check_count(num_shared, "num_shared", min = 0, max = 64, kind = "config")
  check_count(num_independent_decoder, "num_independent_decoder", min = 0, max = 64, kind = "config")
  check_count(num_shared_decoder, "num_shared_decoder", min = 0, max = 64, kind = "config")
  if (num_independent + num_shared == 0) {
    abort_config("{.arg num_independent} and {.arg num_shared} cannot both be 0.")
  }
  check_number(penalty, "penalty", min = 0, kind = "config")
  check_number(learn_rate, "learn_rate", min = 0, open = TRUE, kind = "config")
  check_number(feature_reusage, "feature_reusage", min = 1, kind = "config")
  check_number(momentum, "momentum", min = 0, max = 1, open = TRUE, kind = "config")
  check_number(valid_split, "valid_split", min = 0, max = 1, open_max = TRUE, kind = "config")
  check_number(pretraining_ratio, "pretraining_ratio", min = 0, max = 1, open = TRUE, open_max = TRUE,
               kind = "config")
  if (!is.null(clip_value)) check_number(clip_value, "clip_value", min = 0, open = TRUE, kind = "config")
  if (!is.numeric(cat_emb_dim) || !length(cat_emb_dim) || anyNA(cat_emb_dim) || any(!is.finite(cat_emb_dim)) ||
      any(cat_emb_dim != round(cat_emb_dim)) || any(cat_emb_dim < 1) || any(cat_emb_dim > max_width)) {
    value <- format_value(cat_emb_dim)
    abort_config("{.arg cat_emb_dim} must be one or more whole numbers between 1 and {max_width}, not {value}.")
  }
  mask_type <- match_choice(mask_type, c("sparsemax", "entmax", "sparsemax15", "entmax15"), "mask_type",
                            kind = "config")
  # the tabnet package's partial-sort variants compute the same masks
  mask_type <- switch(mask_type, sparsemax15 = "sparsemax", entmax15 = "entmax", mask_type)
  if (!is.null(mask_topk)) check_count(mask_topk, "mask_topk", min = 1, kind = "config")
  if (!identical(optimizer, "adam")) {
    value <- format_value(optimizer)
    abort_config('Currently only "adam" is supported as {.arg optimizer}, not {value}.')
  }
  loss <- match_choice(loss, c("auto", "mse", "cross_entropy", "bce", "aum"), "loss", kind = "config")
  if (!is.null(lr_scheduler)) {
    if (!is.character(lr_scheduler) || length(lr_scheduler) != 1 ||
        !lr_scheduler %in% c("step", "reduce_on_plateau", "exponential")) {
      value <- format_value(lr_scheduler)
      abort_config(c('{.arg lr_scheduler} must be NULL or one of "step", "reduce_on_plateau" or "exponential", not {value}.',
                     i = 'Currently only the "step", "reduce_on_plateau" and "exponential" schedulers are supported.'))
    }
    check_number(lr_decay, "lr_decay", min = 0, max = 1, open = TRUE, kind = "config")
    check_count(step_size, "step_size", min = 1, kind = "config")
  }
  early_stopping_monitor <- match_choice(early_stopping_monitor, c("auto", "valid_loss", "train_loss"),
                                         "early_stopping_monitor",
                                         what = N_("{.val {x}} is not a valid early-stopping metric to monitor."),
                                         kind = "config")
  if (early_stopping_monitor == "valid_loss" && valid_split == 0) {
    abort_config(c('"valid_loss" is not a valid early-stopping metric to monitor without a validation set.',
                   i = "Set {.arg valid_split} > 0."))
  }
  check_number(early_stopping_tolerance, "early_stopping_tolerance", min = 0, kind = "config")
  check_count(early_stopping_patience, "early_stopping_patience", min = 0, kind = "config")
  if (!is.null(checkpoint_epochs)) check_count(checkpoint_epochs, "checkpoint_epochs", min = 0, kind = "config")
  device <- match_choice(device, c("auto", "cpu", "cuda"), "device", kind = "config")
  if (!is.null(importance_sample_size)) {
    check_count(importance_sample_size, "importance_sample_size", min = 1, kind = "config")
  }
  check_flag(drop_last, "drop_last", kind = "config")
  check_flag(verbose, "verbose", kind = "config")
  check_flag(skip_importance, "skip_importance", kind = "config")
  if (!is.null(num_threads)) num_threads <- check_threads(num_threads, "num_threads")
  if (!is.null(seed)) check_seed(seed, kind = "config")
  grouped_features <- check_grouped_features(grouped_features)
  check_number(epsilon, "epsilon", min = 0, max = 0.1, open = TRUE, kind = "config")
  init <- match_choice(init, c("pytorch_tabnet", "glorot_uniform"), "init", kind = "config")

  resolved_monitor <- if (early_stopping_monitor == "auto") {
    if (valid_split > 0) "valid_loss" else "train_loss"
  } else {
    early_stopping_monitor
  }
  structure(list(
    batch_size = as.integer(batch_size),
    lambda_sparse = penalty,
    clip_value = clip_value,
    loss = loss,
    epochs = as.integer(epochs),
    drop_last = isTRUE(drop_last),
    n_d = as.integer(decision_width),
    n_a = as.integer(attention_width),
    n_steps = as.integer(num_steps),
    gamma = feature_reusage,
    mask_type = mask_type,
    mask_topk = mask_topk,
    virtual_batch_size = as.integer(virtual_batch_size),
    valid_split = valid_split,
    learn_rate = learn_rate,
    optimizer = optimizer,
    lr_scheduler = lr_scheduler,
    lr_decay = lr_decay,
    step_size = as.integer(step_size),
    checkpoint_epochs = if (is.null(checkpoint_epochs)) 0L else as.integer(checkpoint_epochs),
    cat_emb_dim = as.integer(cat_emb_dim),
    n_independent = as.integer(num_independent),
    n_shared = as.integer(num_shared),
    n_independent_decoder = as.integer(num_independent_decoder),
    n_shared_decoder = as.integer(num_shared_decoder),
    momentum = momentum,
    pretraining_ratio = pretraining_ratio,
    verbose = isTRUE(verbose),
    device = device,
    importance_sample_size = importance_sample_size,
    early_stopping_monitor = resolved_monitor,
    early_stopping_tolerance = early_stopping_tolerance,
    early_stopping_patience = as.integer(early_stopping_patience),
    early_stopping = early_stopping_patience > 0,
    num_workers = num_workers,
    skip_importance = isTRUE(skip_importance),
    num_threads = num_threads,
    seed = seed,
    grouped_features = grouped_features,
    epsilon = epsilon,
    init = init
  ), class = "tabnet_config",
  # the monitor as requested: "auto" must be resolved again when `...` of
  # tabnet_fit() changes `valid_split` (see config_as_args())
  requested_monitor = early_stopping_monitor)
}

# `grouped_features` as tabnet_config() stores it: NULL, or a list of
# character vectors or of integer positions. What needs the predictors (names
# that exist, positions in range, one group per predictor across names and
# positions) is checked when the groups are resolved (resolve_groups()).
check_grouped_features <- function(groups, call = rlang::caller_env()) {
  if (is.null(groups) || (is.list(groups) && !length(groups))) return(NULL)
  if (!is.list(groups) || is.data.frame(groups)) {
    value <- format_value(groups)
    abort_config(c("{.arg grouped_features} must be a list of predictor names or positions, one vector per group, not {value}.",
                   i = 'For example {.code grouped_features = list(c("x1", "x2"), c("x5", "x6", "x7"))}.'), call = call)
  }
  for (k in seq_along(groups)) {
    g <- groups[[k]]
    if (is.factor(g)) g <- as.character(g)
    if (!length(g)) abort_config("Group {k} of {.arg grouped_features} is empty: a group needs at least one predictor.", call = call)
    ok <- (is.character(g) && !anyNA(g) && all(nzchar(g))) ||
      (is.numeric(g) && all(is.finite(g)) && all(g == round(g)) && all(g >= 1) && all(g <= .Machine$integer.max))
    if (!ok) {
      value <- format_value(g)
      abort_config("Group {k} of {.arg grouped_features} must be predictor names or whole-number positions (at least 1), not {value}.", call = call)
    }
    groups[[k]] <- if (is.numeric(g)) as.integer(g) else g
  }
  groups
}

# The groups of `config` as 0-based predictor indices for the core (empty
# list without groups), checked against the predictors of `layout`.
resolve_groups <- function(groups, layout, call = rlang::caller_env()) {
  if (!length(groups)) return(list())
  vars <- predictor_labels(layout$names)
  p <- length(vars)
  idx <- lapply(groups, function(g) {
    if (is.character(g)) {
      unknown <- setdiff(g, vars)
      if (length(unknown)) {
        abort_config(c("{.arg grouped_features} names {cli::qty(length(unknown))}{?a predictor/predictors} the model does not have: {.field {unknown}}.",
                       i = "The predictors are {.field {vars}}."), call = call)
      }
      match(g, vars)
    } else {
      out <- g[g > p]
      if (length(out)) {
        abort_config("{.arg grouped_features} refers to {cli::qty(length(out))}position{?s} {out}, but there {cli::qty(p)}{?is/are} {p} predictor{?s}.", call = call)
      }
      g
    }
  })
  all_idx <- unlist(idx)
  dup <- unique(all_idx[duplicated(all_idx)])
  if (length(dup)) {
    twice <- vars[dup]
    abort_config("{cli::qty(length(twice))}The predictor{?s} {.field {twice}} {?is/are} in more than one group of {.arg grouped_features} (or twice in one): a predictor may be in one group only.", call = call)
  }
  lapply(idx, function(i) as.integer(i - 1L))
}

# The names of the groups of `config`: the list's names, else "group_<k>".
group_names <- function(groups) {
  nm <- names(groups) %||% rep("", length(groups))
  nm[is.na(nm) | !nzchar(nm)] <- paste0("group_", seq_along(groups))[is.na(nm) | !nzchar(nm)]
  nm
}

# Every attention group of a model with `grouped_features`, as a named list of
# predictor names: the user's groups (0-based `idx`, named after `spec`), then
# each predictor in no group alone, named after it (the core's order).
attention_groups <- function(idx, layout, spec) {
  vars <- predictor_labels(layout$names)
  idx <- lapply(idx, function(g) as.integer(unlist(g)) + 1L)
  out <- lapply(idx, function(i) vars[i])
  nm <- if (length(spec) == length(idx)) group_names(spec) else paste0("group_", seq_along(idx))
  rest <- setdiff(seq_along(vars), unlist(idx))
  out <- c(out, as.list(vars[rest]))
  names(out) <- c(nm, vars[rest])
  out
}

# The attention groups of a fitted object (NULL without groups), from the
# network configuration saved (and checksummed) with its weights.
model_groups <- function(object) {
  net <- tryCatch(jsonlite::fromJSON(object$fit$net_config, simplifyVector = FALSE), error = function(e) NULL)
  idx <- net$grouped_features
  if (!length(idx)) return(NULL)
  attention_groups(idx, object$fit$layout, object$fit$config$grouped_features)
}

# Per-group table of per-predictor importances (`importance` named by
# `variables`): each group's importance is the sum of its members'.
group_importance <- function(variables, importance, groups) {
  imp <- vapply(groups, function(g) sum(importance[match(g, variables)]), numeric(1))
  out <- tibble::tibble(Group = names(groups), Importance = unname(imp), Variables = unname(groups))
  out[order(-out$Importance), , drop = FALSE]
}

# Map from tabnet_config() argument names to the stored names.
config_arg_names <- c(
  penalty = "lambda_sparse", decision_width = "n_d", attention_width = "n_a",
  num_steps = "n_steps", feature_reusage = "gamma", num_independent = "n_independent",
  num_shared = "n_shared", num_independent_decoder = "n_independent_decoder",
  num_shared_decoder = "n_shared_decoder"
)

# Turns a stored config back into tabnet_config() arguments.
config_as_args <- function(config) {
  args <- unclass(config)
  args$early_stopping <- NULL
  if (!is.null(attr(config, "requested_monitor"))) {
    args$early_stopping_monitor <- attr(config, "requested_monitor")
  }
  nm <- names(args)
  inv <- stats::setNames(names(config_arg_names), config_arg_names)
  names(args) <- ifelse(nm %in% names(inv), inv[nm], nm)
  args
}

# `config` updated with the tabnet_config() arguments in `dots` (partial
# matching of names works as in a direct call). Values in `dots` always win.
merge_config <- function(config, dots, call = rlang::caller_env()) {
  if (is.null(config)) config <- tabnet_config()
  if (!inherits(config, "tabnet_config")) {
    value <- format_value(config)
    abort_config("{.arg config} must be created by {.fn tabnet_config}, not {value}.", call = call)
  }
  args <- config_as_args(config)
  if (length(dots)) {
    full <- names(formals(tabnet_config))
    nm <- names(dots)
    if (is.null(nm) || any(!nzchar(nm))) abort_input("All arguments in {.arg ...} must be named.", call = call)
    matched <- vapply(nm, function(n) {
      if (n %in% full) return(n)
      candidates <- full[startsWith(full, n)]
      if (length(candidates) > 1L) {
        abort_input(c("Argument {.arg {n}} is ambiguous: it is the start of several {.fn tabnet_config} arguments.",
                      i = "Did you mean {.or {.arg {candidates}}}?"), call = call)
      }
      if (!length(candidates)) abort_input("unused argument {.arg {n}}: it is not a {.fn tabnet_config} argument.", call = call)
      candidates
    }, character(1))
    # a width given alone must be copied into the other one, as in tabnet_config()
    if ("decision_width" %in% matched && !"attention_width" %in% matched &&
        identical(args$n_a, args$n_d)) args$attention_width <- NULL
    if ("attention_width" %in% matched && !"decision_width" %in% matched &&
        identical(args$n_a, args$n_d)) args$decision_width <- NULL
    args[matched] <- dots
  }
  if (is.null(args$decision_width) && is.null(args$attention_width)) args$decision_width <- 8
  # tabnet_config() checks the values; its errors name the call threaded here
  # (tabnet_fit(...)), not the do.call() of tabnet_config()
  withCallingHandlers(
    do.call(tabnet_config, args[intersect(names(args), names(formals(tabnet_config)))]),
    tabnetrs_error = function(e) {
      e$call <- error_call(call)
      stop(e)
    }
  )
}

#' @export
print.tabnet_config <- function(x, ...) {
  cat("<tabnet_config>\n")
  utils::str(unclass(x), give.attr = FALSE, no.list = TRUE)
  invisible(x)
}
