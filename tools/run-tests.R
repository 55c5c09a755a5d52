# Runs the testthat suite against the installed tabnetrs and prints a summary
# line "testthat: N passed, N failed, N skipped"; exits non-zero on failure.
options(tabnetrs.threads = 1L)
Sys.setenv(TZ = "UTC", NOT_CRAN = "true")  # run the slow integration tests too
library(testthat)
library(tabnetrs)
res <- testthat::test_dir("tests/testthat", package = "tabnetrs", load_package = "installed",
                          reporter = testthat::ProgressReporter$new(show_praise = FALSE),
                          stop_on_failure = FALSE)
df <- as.data.frame(res)
failed <- sum(df$failed) + sum(df$error)
cat(sprintf("\ntestthat: %d passed, %d failed, %d skipped\n", sum(df$passed), failed, sum(df$skipped)))
if (failed > 0) quit(status = 1)
