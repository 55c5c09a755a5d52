# Ctrl-C inside one long prediction: the Rust pass asks R between slices of
# rows (about every 0.1 s) and returns early; predict() then raises the
# interrupt. Before, R saw the interrupt only after the whole call.

test_that("Ctrl-C stops a long prediction inside the Rust call", {
  skip_on_cran()
  skip_if_not_installed("callr")
  out <- withr::local_tempfile(fileext = ".rds")
  proc <- callr::r_bg(function(out) {
    library(tabnetrs)
    options(tabnetrs.threads = 1L)
    set.seed(1)
    small <- data.frame(a = rnorm(500), b = rnorm(500), c = rnorm(500))
    small$y <- small$a - small$b
    # a wide, deep network: predicting a million rows takes several seconds
    fit <- tabnet_fit(y ~ ., small, epochs = 1, decision_width = 32, attention_width = 32,
                      num_steps = 8, skip_importance = TRUE, checkpoint_epochs = 0)
    big <- data.frame(a = rnorm(1e6), b = rnorm(1e6), c = rnorm(1e6))
    model <- tabnetrs:::live_network(fit)
    ds <- tabnetrs:::forge_dataset(fit, big, model)
    cat("predicting\n")
    # NULL: the Rust call saw the interrupt and returned early; without the
    # polling the call runs to the end (a matrix) and R raises the interrupt after it
    res <- tryCatch(list(early = is.null(tabnetrs:::rs_predict(model, ds, 65536))),
                    interrupt = function(e) list(early = FALSE))
    saveRDS(c(res, list(done = Sys.time())), out)
  }, args = list(out = out), stdout = "|", stderr = "2>&1")
  on.exit(if (proc$is_alive()) proc$kill(), add = TRUE)
  seen <- character()
  deadline <- Sys.time() + 120
  while (!any(grepl("predicting", seen)) && proc$is_alive() && Sys.time() < deadline) {
    seen <- c(seen, proc$read_output_lines())
    Sys.sleep(0.05)
  }
  Sys.sleep(1)
  expect_true(proc$is_alive())
  sent <- Sys.time()
  proc$interrupt()
  proc$wait(60000)
  expect_equal(proc$get_exit_status(), 0)
  res <- readRDS(out)
  expect_true(res$early)
  message(sprintf("interrupt honoured after %.2f s", as.numeric(difftime(res$done, sent, units = "secs"))))
})
