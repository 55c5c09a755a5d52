# The settings table (R/settings.R) is the one home of each tabnet_config()
# setting: these tests fail when a setting is added to one place and not to
# the others.

test_that("tabnet_config()'s arguments and stored names are the table's", {
  s <- tabnetrs:::tabnet_settings()
  expect_identical(names(formals(tabnet_config)), names(s))
  stored <- vapply(s, `[[`, "", "stored", USE.NAMES = FALSE)
  cfg <- tabnet_config()
  expect_true(all(stored %in% names(cfg)))
  # `early_stopping` is derived from `early_stopping_patience`
  expect_identical(setdiff(names(cfg), stored), "early_stopping")
})

test_that("the parsnip model's arguments are the table's parsnip names", {
  s <- tabnetrs:::tabnet_settings()
  main <- c(Filter(Negate(is.na), vapply(s, `[[`, "", "parsnip", USE.NAMES = FALSE)),
            "tabnet_model", "from_epoch")
  expect_setequal(setdiff(names(formals(tabnet)), c("mode", "engine")), main)
  expect_setequal(setdiff(names(formals(tabnetrs:::update.tabnet)), c("object", "parameters", "fresh", "...")),
                  main)
  expect_identical(tabnetrs:::tabnet_main_args(), setdiff(names(formals(tabnet)), c("mode", "engine")))
  # a setting without its own dials range has a tabnetrs dials function
  for (x in Filter(function(x) identical(x$tune, "own"), s)) {
    f <- get0(x$parsnip, envir = asNamespace("tabnetrs"), mode = "function")
    expect_true(is.function(f), label = x$parsnip)
    # a dials parameter, or (optimizer: one choice so far) a classed refusal
    res <- tryCatch(f(), tabnetrs_error_config = function(e) "refused")
    expect_true(inherits(res, "param") || identical(res, "refused"), label = x$parsnip)
  }
})

test_that("every architecture setting reaches the network, and only those are kept on continuing", {
  d <- data.frame(a = rnorm(64), b = rnorm(64), f = factor(sample(letters[1:3], 64, TRUE)))
  d$y <- factor(d$a > 0)
  net <- function(...) tabnet_fit(y ~ ., d, epochs = 0, ...)$fit$net_config
  base <- net()
  changed <- list(decision_width = 4, attention_width = 4, num_steps = 2, feature_reusage = 1.5,
                  mask_type = "sparsemax", virtual_batch_size = 32, cat_emb_dim = 2, num_independent = 1,
                  num_shared = 1, num_independent_decoder = 2, num_shared_decoder = 2, momentum = 0.1,
                  grouped_features = list(c("a", "b")), epsilon = 1e-5, init = "glorot_uniform")
  s <- tabnetrs:::tabnet_settings()
  arch <- names(Filter(function(x) x$arch, s))
  expect_setequal(names(changed), arch)
  expect_identical(tabnetrs:::arch_settings(), vapply(s[arch], `[[`, "", "stored", USE.NAMES = FALSE))
  for (k in arch) {
    expect_false(identical(do.call(net, changed[k]), base), label = k)
  }
  # a training setting does not change the network
  expect_identical(net(learn_rate = 0.1, batch_size = 32, penalty = 0), base)
})
