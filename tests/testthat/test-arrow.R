# tabnet_arrow(): training, prediction and errors on small Arrow files and
# C streams the tests write (nanoarrow writes the IPC stream format and no
# dictionaries; factors reach the C-stream path as dictionaries).
skip_if_not_installed("nanoarrow")
withr::local_options(tabnetrs.threads = 1L)

arrow_df <- function(n = 600, seed = 1) {
  withr::local_seed(seed)
  df <- data.frame(a = rnorm(n), b = rnorm(n), k = sample(1:3, n, TRUE), ok = runif(n) > 0.5)
  df$b[c(3, 40)] <- NA
  # levels as factor() orders them: not the order they first appear in
  df$y <- ifelse(df$a + ifelse(is.na(df$b), 0, df$b) > 0, "yes", "No")
  df
}

write_ipc <- function(df, path = withr::local_tempfile(fileext = ".arrows", .local_envir = parent.frame())) {
  nanoarrow::write_nanoarrow(df, path)
  path
}

fit_arrow <- function(data, ...) {
  tabnet_fit(y ~ ., data, epochs = 2, batch_size = 128, virtual_batch_size = 64, seed = 1, ...)
}

test_that("a fit from an IPC file is a normal fit that predicts the file as the data frame", {
  df <- arrow_df()
  path <- write_ipc(df)
  src <- tabnet_arrow(path)
  expect_s3_class(src, "tabnet_arrow")
  expect_equal(src$schema$name, names(df))
  expect_equal(src$schema$kind, c("double", "double", "integer", "boolean", "string"))
  fit <- fit_arrow(src, valid_split = 0.25)
  expect_s3_class(fit, "tabnet_fit")
  expect_equal(fit$fit$outcome$levels[[1]], levels(factor(df$y)))
  expect_length(fit$fit$metrics, 2)
  expect_true(all(vapply(fit$fit$metrics, function(m) is.finite(m$train) && is.finite(m$valid), logical(1))))
  expect_equal(nrow(fit$fit$importances), 4)
  df$y <- factor(df$y)
  from_file <- predict(fit, src, type = "prob")
  from_df <- predict(fit, df, type = "prob")
  # the same rows through the same network (float32 values from the same doubles)
  expect_equal(as.matrix(from_file), as.matrix(from_df), tolerance = 0)
  expect_equal(nrow(from_file), nrow(df))
  again <- unserialize(serialize(fit, NULL))
  expect_equal(predict(again, df), predict(fit, src))
})

test_that("a seed gives the same model from a file or a C stream of it, at 1 or 2 threads", {
  df <- arrow_df(900)
  path <- write_ipc(df)
  run <- function(src, threads) {
    withr::local_options(tabnetrs.threads = threads)
    withr::local_seed(3)
    fit_arrow(src, valid_split = 0.2)
  }
  a <- run(tabnet_arrow(path, shuffle_buffer = 300), 1L)
  b <- run(tabnet_arrow(function() nanoarrow::read_nanoarrow(path), shuffle_buffer = 300), 2L)
  expect_identical(a$serialized_net, b$serialized_net)
  # another seed gives another shuffle
  c <- tabnet_fit(y ~ ., tabnet_arrow(path, shuffle_buffer = 300), epochs = 2, batch_size = 128,
                  virtual_batch_size = 64, seed = 2, valid_split = 0.2)
  expect_false(identical(a$serialized_net, c$serialized_net))
})

test_that("the shuffle buffer mixes record batches of a sorted file", {
  # rows sorted by class, in record batches of 100 rows each: unit order and
  # buffer draws must mix classes in every training batch, or batch norm and
  # the optimiser see one class at a time and the fit fails
  n <- 2000
  withr::local_seed(7)
  x <- rnorm(n)
  df <- data.frame(x = x, z = rnorm(n), y = ifelse(x > 0, "pos", "neg"))
  df <- df[order(df$y), ]
  dir <- withr::local_tempdir()
  for (i in seq_len(n / 100)) {
    nanoarrow::write_nanoarrow(df[(i - 1) * 100 + 1:100, ], file.path(dir, sprintf("part-%02d.arrows", i)))
  }
  fit <- tabnet_fit(y ~ ., tabnet_arrow(dir, shuffle_buffer = 512), epochs = 8, batch_size = 256,
                    virtual_batch_size = 128, seed = 1, learn_rate = 0.05)
  acc <- mean(predict(fit, df)$.pred_class == df$y)
  expect_gt(acc, 0.85)
  # the directory predicts in file order, like the data frame
  expect_equal(predict(fit, tabnet_arrow(dir), type = "prob"), predict(fit, df, type = "prob"))
})

test_that("dictionary predictors from a C stream are factors, and unseen levels warn", {
  df <- arrow_df(600)
  df$f <- factor(sample(c("u", "v", "w"), nrow(df), TRUE), levels = c("w", "u", "v"))
  df$f[5] <- NA
  fit <- fit_arrow(tabnet_arrow(function() nanoarrow::as_nanoarrow_array_stream(df)))
  expect_equal(fit$fit$layout$levels$f, c("w", "u", "v"))
  new <- df
  new$f <- factor(as.character(new$f), levels = c("w", "u", "v", "z"))
  new$f[1:3] <- "z"
  # an unseen level is a missing value in both (the probabilities agree,
  # not only the classes: the same row gets the same prediction)
  expect_warning(p_stream <- predict(fit, tabnet_arrow(function() nanoarrow::as_nanoarrow_array_stream(new)), type = "prob"),
                 "missing values", class = "tabnetrs_warning")
  expect_warning(p_df <- predict(fit, new, type = "prob"), class = "tabnetrs_warning")
  expect_equal(p_stream, p_df, tolerance = 1e-6)
  na <- new
  na$f[1:3] <- NA
  expect_equal(predict(fit, na, type = "prob"), p_df, tolerance = 1e-6)
})

test_that("bad Arrow input is a classed error naming the file or column", {
  df <- arrow_df()
  missing_path <- file.path(tempdir(), "no-such-file.arrows")
  expect_error(tabnet_arrow(missing_path), class = "tabnetrs_error_arrow", regexp = "no-such-file")

  not_arrow <- withr::local_tempfile(fileext = ".arrows")
  writeLines("not arrow", not_arrow)
  expect_error(tabnet_arrow(not_arrow), class = "tabnetrs_error_arrow", regexp = basename(not_arrow), fixed = TRUE)

  # a string predictor
  df$s <- sample(letters, nrow(df), TRUE)
  src <- tabnet_arrow(write_ipc(df))
  expect_error(fit_arrow(src), class = "tabnetrs_error_arrow", regexp = "`s`|s is a string|Predictor s")
  expect_error(fit_arrow(src), regexp = "string column")

  # missing outcome values
  bad_y <- arrow_df()
  bad_y$y[7] <- NA
  expect_error(fit_arrow(tabnet_arrow(write_ipc(bad_y))), class = "tabnetrs_error_input", regexp = "missing values")

  # predicting data whose schema does not match the fit
  fit <- fit_arrow(tabnet_arrow(write_ipc(arrow_df())))
  no_b <- arrow_df()
  no_b$b <- NULL
  expect_error(predict(fit, tabnet_arrow(write_ipc(no_b))), class = "tabnetrs_error_arrow", regexp = "b")
  str_a <- arrow_df()
  str_a$a <- as.character(str_a$a)
  expect_error(predict(fit, tabnet_arrow(write_ipc(str_a))), class = "tabnetrs_error_arrow", regexp = "Column a|a.*string")

  # a directory whose files differ in their columns
  dir <- withr::local_tempdir()
  nanoarrow::write_nanoarrow(arrow_df(), file.path(dir, "a.arrows"))
  nanoarrow::write_nanoarrow(no_b, file.path(dir, "b.arrows"))
  expect_error(tabnet_arrow(dir), class = "tabnetrs_error_arrow", regexp = "b.arrows", fixed = TRUE)
})

test_that("a stream that cannot be read again stops training with an error, not a half-trained fit", {
  df <- arrow_df()
  stream <- nanoarrow::as_nanoarrow_array_stream(df)
  once <- function() stream
  # the first read (the schema) consumes the stream
  expect_error(tabnet_fit(y ~ ., tabnet_arrow(once), epochs = 2), class = "tabnetrs_error_arrow",
               regexp = "fresh Arrow stream")
  # a function that fails on its second epoch
  calls <- 0
  flaky <- function() {
    calls <<- calls + 1
    if (calls > 4) stop("the database went away")
    nanoarrow::as_nanoarrow_array_stream(df)
  }
  res <- NULL
  expect_error(res <- tabnet_fit(y ~ ., tabnet_arrow(flaky), epochs = 3, batch_size = 128),
               class = "tabnetrs_error_arrow", regexp = "database went away")
  expect_null(res)
})

test_that("tabnet_explain() and tabnet_importance() read Arrow data like the data frame", {
  df <- arrow_df(400)
  path <- write_ipc(df)
  fit <- fit_arrow(tabnet_arrow(path))
  df$y <- factor(df$y)
  ex_file <- tabnet_explain(fit, tabnet_arrow(path))
  ex_df <- tabnet_explain(fit, df)
  expect_equal(ex_file$M_explain, ex_df$M_explain)
  expect_equal(tabnet_importance(fit, tabnet_arrow(path)), tabnet_importance(fit, df))
  imp_file <- tabnet_importance(fit, tabnet_arrow(path), method = "permutation", n_repeats = 2, seed = 1)
  imp_df <- tabnet_importance(fit, df, method = "permutation", n_repeats = 2, seed = 1)
  expect_equal(imp_file, imp_df)
})

test_that("tabnet_pretrain() reads Arrow data, and a fit continues from it", {
  df <- arrow_df(500)
  path <- write_ipc(df)
  pre <- tabnet_pretrain(y ~ ., tabnet_arrow(path), epochs = 2, batch_size = 128, virtual_batch_size = 64,
                         seed = 1, valid_split = 0.2)
  expect_s3_class(pre, "tabnet_pretrain")
  expect_true(all(vapply(pre$fit$metrics, function(m) is.finite(m$train) && is.finite(m$valid), logical(1))))
  fit <- fit_arrow(tabnet_arrow(path), tabnet_model = pre)
  expect_s3_class(fit, "tabnet_fit")
  expect_equal(nrow(predict(fit, tabnet_arrow(path))), nrow(df))
})
