# The settings of tabnet_config(): one row each.
#
#   name     the argument of tabnet_config() (and of tabnet_fit()'s `...`)
#   stored   its name in the list tabnet_config() returns (the tabnet
#            package's internal names: `n_d`, `lambda_sparse`, ...)
#   arch     TRUE when it shapes the network: a continued fit or a fine-tune
#            keeps the parent's value (resume_from()), and net_config() must
#            pass it to the Rust core (tests/testthat/test-settings.R checks
#            that changing it changes the network's configuration)
#   parsnip  the main argument of the parsnip model tabnet() and of
#            update.tabnet() (NA: not a parsnip argument)
#   tune     how dials makes a parameter of it when it is marked tune():
#            list(pkg, fun, ...) (see parsnip::set_model_arg()); "own" means
#            tabnetrs's dials function of the parsnip name, "untunable" a
#            parameter that refuses to be tuned
#
# Adding a setting: one row here, its default and check in tabnet_config(),
# and its use (net_config() for an architecture setting). The parsnip
# registration, tabnet()'s and update.tabnet()'s arguments, and resume_from()
# are derived from this table, and test-settings.R checks the rest against it.
tabnet_settings <- function() {
  rows <- list(
    setting("batch_size", parsnip = "batch_size",
            # paper: B in 256..32768 (log2 scale, like dials::batch_size())
            tune = list(pkg = "dials", fun = "batch_size", range = c(8L, 15L))),
    setting("penalty", "lambda_sparse", parsnip = "penalty",
            # paper: lambda_sparse in {0, 1e-6, ..., 0.1}
            tune = list(pkg = "dials", fun = "penalty", range = c(-6, -1))),
    setting("clip_value", parsnip = "clip_value", tune = "untunable"),
    setting("loss", parsnip = "loss", tune = "untunable"),
    setting("epochs", parsnip = "epochs",
            # dials' default (10..1000) makes grids far too slow for a neural network
            tune = list(pkg = "dials", fun = "epochs", range = c(10L, 100L))),
    setting("drop_last", parsnip = "drop_last", tune = "own"),
    setting("decision_width", "n_d", arch = TRUE, parsnip = "decision_width", tune = "own"),
    setting("attention_width", "n_a", arch = TRUE, parsnip = "attention_width", tune = "own"),
    setting("num_steps", "n_steps", arch = TRUE, parsnip = "num_steps", tune = "own"),
    setting("feature_reusage", "gamma", arch = TRUE, parsnip = "feature_reusage", tune = "own"),
    setting("mask_type", arch = TRUE, parsnip = "mask_type", tune = "own"),
    setting("mask_topk", parsnip = "mask_topk", tune = "untunable"),
    setting("virtual_batch_size", arch = TRUE, parsnip = "virtual_batch_size", tune = "own"),
    setting("valid_split"),
    setting("learn_rate", parsnip = "learn_rate",
            # paper: 0.005..0.025; a slightly wider log10 range
            tune = list(pkg = "dials", fun = "learn_rate", range = c(-3, -1))),
    setting("optimizer", parsnip = "optimizer", tune = "own"),
    setting("lr_scheduler", parsnip = "lr_scheduler", tune = "own"),
    # multiplicative decay factor of the step / plateau scheduler (paper: 0.4..0.95)
    setting("lr_decay", parsnip = "rate_decay",
            tune = list(pkg = "dials", fun = "rate_decay", range = c(0.4, 0.95))),
    setting("step_size", parsnip = "rate_step_size", tune = list(pkg = "dials", fun = "rate_step_size")),
    setting("checkpoint_epochs", parsnip = "checkpoint_epochs", tune = "own"),
    setting("cat_emb_dim", arch = TRUE, parsnip = "cat_emb_dim", tune = "own"),
    setting("num_independent", "n_independent", arch = TRUE, parsnip = "num_independent", tune = "own"),
    setting("num_shared", "n_shared", arch = TRUE, parsnip = "num_shared", tune = "own"),
    setting("num_independent_decoder", "n_independent_decoder", arch = TRUE,
            parsnip = "num_independent_decoder", tune = "own"),
    setting("num_shared_decoder", "n_shared_decoder", arch = TRUE, parsnip = "num_shared_decoder",
            tune = "own"),
    setting("momentum", arch = TRUE, parsnip = "momentum", tune = "own"),
    setting("pretraining_ratio"),
    setting("verbose", parsnip = "verbose", tune = "own"),
    setting("device"),
    setting("importance_sample_size", parsnip = "importance_sample_size", tune = "untunable"),
    setting("early_stopping_monitor", parsnip = "early_stopping_monitor", tune = "untunable"),
    setting("early_stopping_tolerance", parsnip = "early_stopping_tolerance", tune = "untunable"),
    setting("early_stopping_patience", parsnip = "early_stopping_patience",
            tune = list(pkg = "dials", fun = "stop_iter")),
    setting("num_workers"),
    setting("skip_importance", parsnip = "skip_importance", tune = "untunable"),
    setting("num_threads"),
    setting("seed"),
    setting("grouped_features", arch = TRUE),
    setting("epsilon", arch = TRUE),
    setting("init", arch = TRUE)
  )
  names(rows) <- vapply(rows, `[[`, "", "name")
  rows
}

setting <- function(name, stored = name, arch = FALSE, parsnip = NA_character_, tune = NULL) {
  list(name = name, stored = stored, arch = arch, parsnip = parsnip, tune = tune)
}

# The stored names of the architecture settings (kept from the parent model
# by a continued fit or a fine-tune).
arch_settings <- function() {
  s <- Filter(function(x) x$arch, tabnet_settings())
  vapply(s, `[[`, "", "stored", USE.NAMES = FALSE)
}
