# Tuning across processes on mirai daemons that dial in over TCP (issue 27):
# the path `launch_remote()` takes with `ssh_config()` / `cluster_config()`,
# here with `launch_local()` on 127.0.0.1. tune >= 2.0 sends its resamples to
# mirai daemons when they are set.

skip_if_no_mirai_tune <- function() {
  skip_on_cran()
  skip_if_not_installed("mirai", "2.0.0")
  skip_if_not_installed("tune", "2.0.0")
  skip_if_not_installed("rsample")
  skip_if_not_installed("workflows")
  skip_if_not_installed("yardstick")
}

# Two daemons on 127.0.0.1 over TCP, torn down when `env` ends. They inherit
# this process's library paths (to find tabnetrs) and `threads` as
# TABNETRS_THREADS.
local_tcp_daemons <- function(n = 2L, threads = "1", env = parent.frame()) {
  withr::local_envvar(R_LIBS = paste(.libPaths(), collapse = .Platform$path.sep),
                      TABNETRS_THREADS = threads)
  url <- mirai::local_url(tcp = TRUE)
  mirai::daemons(url = url)
  withr::defer(mirai::daemons(0), envir = env)
  mirai::launch_local(n)
  # wait (up to 60 s) until both have dialled in
  for (i in seq_len(120)) {
    if (mirai::status()$connections >= n) break
    Sys.sleep(0.5)
  }
  expect_gte(mirai::status()$connections, n)
  expect_match(mirai::status()$daemons, "^tcp://127\\.0\\.0\\.1:[0-9]+$")
  invisible()
}

tuning_setup <- function() {
  d <- mixed_data(240)
  spec <- parsnip::set_mode(
    parsnip::set_engine(tabnet(epochs = 2, batch_size = 64, virtual_batch_size = 32, decision_width = tune::tune()),
                        "tabnetrs", seed = 11),
    "classification")
  wf <- workflows::add_model(workflows::add_formula(workflows::workflow(), cls ~ num1 + grp + num2 + flag), spec)
  folds <- withr::with_seed(3, rsample::vfold_cv(d, v = 2))
  list(wf = wf, folds = folds, grid = data.frame(decision_width = c(4L, 8L)))
}

# (tune draws one RNG stream per resample from the session's seed)
run_grid <- function(s) {
  withr::local_seed(7)
  res <- tune::tune_grid(s$wf, resamples = s$folds, grid = s$grid,
                         metrics = yardstick::metric_set(yardstick::roc_auc, yardstick::accuracy),
                         control = tune::control_grid(save_pred = FALSE))
  m <- tune::collect_metrics(res, summarize = FALSE)
  m[order(m$decision_width, m$id, m$.metric), c("decision_width", "id", ".metric", ".estimate")]
}

test_that("tune_grid() on two TCP daemons gives the sequential metrics", {
  skip_if_no_mirai_tune()
  s <- tuning_setup()
  # sequential, in this process (one thread, see setup.R)
  sequential <- run_grid(s)
  expect_equal(nrow(sequential), 2 * 2 * 2)

  local_tcp_daemons(2L, threads = "1")
  before <- mirai::status()$mirai[["completed"]]
  parallel <- run_grid(s)
  # tune sent its work (at least one task per resample) to the daemons
  expect_gte(mirai::status()$mirai[["completed"]] - before, nrow(s$folds))
  pids <- unlist(mirai::collect_mirai(mirai::mirai_map(1:4, function(i) Sys.getpid())))
  expect_false(Sys.getpid() %in% pids)
  # Every fit has its seed (engine argument `seed = 11`) and its data (the
  # folds are made here): training is deterministic for any thread count and
  # process (the fused kernels split work by the data's shape, never by the
  # threads), so the metrics are equal bit for bit, not only to float32
  # rounding.
  expect_identical(parallel, sequential)
})

test_that("worker threads are set per daemon: TABNETRS_THREADS and num_threads are honoured there", {
  skip_if_no_mirai_tune()
  skip_if(tabnetrs:::machine_cores() < 2L, "one core: every thread count is 1")
  local_tcp_daemons(2L, threads = "1")
  d <- mixed_data(120)
  fit_and_count <- function(d, num_threads) {
    library(tabnetrs)
    fit <- tabnet_fit(cls ~ num1 + grp, d, epochs = 1, batch_size = 60, seed = 1, num_threads = num_threads)
    stopifnot(inherits(fit, "tabnet_fit"))
    list(env = Sys.getenv("TABNETRS_THREADS"), threads = tabnetrs:::rs_get_threads(),
         default = tabnetrs:::default_threads())
  }
  # the environment variable given to the daemons at launch
  got <- mirai::collect_mirai(mirai::mirai(fit_and_count(d, NULL), fit_and_count = fit_and_count, d = d))
  expect_identical(got$env, "1")
  expect_identical(got$threads, 1L)
  expect_gt(got$default, 1L) # without the variable it would have been more
  # the engine argument / tabnet_fit(num_threads =) wins over it
  got <- mirai::collect_mirai(mirai::mirai(fit_and_count(d, 2L), fit_and_count = fit_and_count, d = d))
  expect_identical(got$threads, 2L)
  # and per daemon: everywhere() sets the option on each one
  mirai::everywhere(options(tabnetrs.threads = 2L))
  got <- mirai::collect_mirai(mirai::mirai_map(1:2, function(i) {
    library(tabnetrs)
    invisible(predict(tabnet_fit(cls ~ num1, d, epochs = 1, batch_size = 60, seed = 1), d[1:5, ]))
    tabnetrs:::rs_get_threads()
  }, d = d))
  expect_identical(unlist(got), c(2L, 2L))
})
