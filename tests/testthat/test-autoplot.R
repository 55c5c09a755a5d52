test_that("autoplot() is available after library(tabnetrs) alone", {
  expect_true("autoplot" %in% getNamespaceExports("tabnetrs"))
  expect_identical(tabnetrs::autoplot, ggplot2::autoplot)
})

test_that("explanation heat maps build, for the aggregate and per step", {
  fit <- small_fit()
  x <- syn2_data(80, seed = 51)
  ex <- tabnet_explain(fit, x)

  p <- autoplot(ex)
  expect_s3_class(p, "ggplot")
  b <- ggplot2::ggplot_build(p)
  expect_s3_class(b$plot$layers[[1]]$geom, "GeomTile")
  expect_equal(nrow(b$data[[1]]), 80L * 10L)
  expect_equal(levels(p$data$variable), rev(sprintf("V%02d", 1:10)))
  expect_equal(sort(unique(p$data$observation)), 1:80)

  s <- autoplot(ex, type = "steps")
  bs <- ggplot2::ggplot_build(s)
  expect_equal(nrow(bs$data[[1]]), 80L * 10L * length(ex$masks))
  expect_equal(levels(s$data$step), sprintf("Step %d", seq_along(ex$masks)))
  expect_equal(length(unique(bs$layout$layout$PANEL)), length(ex$masks))
})

test_that("quantile clips the fill values", {
  fit <- small_fit()
  ex <- tabnet_explain(fit, syn2_data(100, seed = 52))
  values <- as.vector(as.matrix(ex$M_explain))
  q <- stats::quantile(values, 0.9, names = FALSE)
  p <- autoplot(ex, quantile = 0.9)
  expect_equal(max(p$data$mask_agg), q)
  expect_equal(max(autoplot(ex)$data$mask_agg), max(values))
  s <- autoplot(ex, type = "steps", quantile = 0.5)
  for (k in seq_along(ex$masks)) {
    cap <- stats::quantile(as.vector(as.matrix(ex$masks[[k]])), 0.5, names = FALSE)
    expect_lte(max(s$data$mask_agg[s$data$step == sprintf("Step %d", k)]), cap + 1e-12)
  }
  expect_error(autoplot(ex, quantile = 2), "quantile")
  expect_error(autoplot(ex, type = "bars"), "should be one of")
})

test_that("training history plots build, with checkpoints, validation and best epoch", {
  x <- syn2_data(400, seed = 53)
  fit <- withr::with_seed(14, tabnet_fit(y ~ ., x, epochs = 4, valid_split = 0.25, checkpoint_epochs = 2))
  p <- autoplot(fit)
  b <- ggplot2::ggplot_build(p)
  expect_setequal(as.character(unique(p$data$dataset)), c("train", "valid"))
  expect_equal(nrow(p$data), 8L)
  # points on the checkpointed epochs 2 and 4, for both curves
  expect_equal(sort(b$data[[2]]$x), c(2, 2, 4, 4))

  es <- withr::with_seed(15, tabnet_fit(y ~ ., x, epochs = 30, valid_split = 0.25,
                                        early_stopping_patience = 2, early_stopping_tolerance = 1e-6,
                                        learn_rate = 0.2))
  pe <- autoplot(es)
  be <- ggplot2::ggplot_build(pe)
  vline <- Filter(function(l) inherits(l$geom, "GeomVline"), pe$layers)
  expect_length(vline, 1L)
  expect_false(is.na(es$fit$best_epoch))
  expect_equal(vline[[1]]$data$best, es$fit$best_epoch)

  pre <- withr::with_seed(16, tabnet_pretrain(x[, 1:10], epochs = 2))
  pp <- autoplot(pre)
  expect_s3_class(pp, "ggplot")
  expect_silent(ggplot2::ggplot_build(pp))
})

test_that("a history plot without checkpoints or best epoch has no unused manual scale and prints silently", {
  x <- syn2_data(200, seed = 53)
  fit <- withr::with_seed(14, tabnet_fit(y ~ ., x, epochs = 2, checkpoint_epochs = 10, skip_importance = TRUE))
  p <- autoplot(fit)
  expect_false(any(vapply(p$layers, function(l) inherits(l$geom, c("GeomPoint", "GeomVline")), logical(1))))
  # ggplot2 >= 3.5 warns when printing a manual scale that matches no data
  expect_null(p$scales$get_scales("shape"))
  expect_null(p$scales$get_scales("linetype"))
  withr::local_pdf(NULL)
  expect_no_warning(print(p))
  # with checkpoints (and only then) the shape scale is there
  cp <- withr::with_seed(14, tabnet_fit(y ~ ., x, epochs = 2, checkpoint_epochs = 1, skip_importance = TRUE))
  pc <- autoplot(cp)
  expect_false(is.null(pc$scales$get_scales("shape")))
  expect_no_warning(print(pc))
})

test_that("importance plots build, with error bars for permutations", {
  fit <- small_fit()
  x <- syn2_data(200, seed = 54)
  p <- autoplot(tabnet_importance(fit))
  b <- ggplot2::ggplot_build(p)
  expect_equal(nrow(b$data[[1]]), 10L)
  perm <- tabnet_importance(fit, x, method = "permutation", n_repeats = 3, seed = 1)
  pp <- autoplot(perm)
  bp <- ggplot2::ggplot_build(pp)
  expect_s3_class(pp$layers[[2]]$geom, "GeomErrorbar")
  expect_equal(levels(pp$data$Variable)[10], perm$Variable[1])
  expect_equal(nrow(autoplot(perm, top = 3)$data), 3L)
  for (m in c("occlusion", "mad")) {
    expect_silent(ggplot2::ggplot_build(autoplot(tabnet_importance(fit, x, method = m))))
  }
})

test_that("knit_print() renders Markdown", {
  skip_if_not_installed("knitr")
  fit <- small_fit()
  x <- syn2_data(50, seed = 55)
  out <- knitr::knit_print(tabnet_explain(fit, x))
  expect_s3_class(out, "knit_asis")
  expect_match(out, "TabNet explanation")
  expect_match(out, "|Variable", fixed = TRUE)
  out <- knitr::knit_print(tabnet_importance(fit))
  expect_match(out, "|Variable |", fixed = TRUE)
  out <- knitr::knit_print(fit)
  expect_match(out, "^\\*\\*TabNet model")
})

test_that("the tabnet-report R Markdown template drafts and knits", {
  skip_if_not_installed("rmarkdown")
  skip_if_not(rmarkdown::pandoc_available(), "pandoc is not available")
  dir <- withr::local_tempdir()
  rmd <- file.path(dir, "report.Rmd")
  rmarkdown::draft(rmd, template = "tabnet-report", package = "tabnetrs", edit = FALSE)
  expect_true(file.exists(rmd))
  html <- withr::with_seed(1, rmarkdown::render(
    rmd, params = list(n_rows = 600, epochs = 2, explain_rows = 100),
    output_dir = dir, quiet = TRUE, envir = new.env(parent = globalenv())
  ))
  expect_true(file.exists(html))
  page <- paste(readLines(html, warn = FALSE), collapse = "\n")
  # (expect_match() is very slow on a page with embedded images)
  for (text in c("Holdout performance", "accuracy", "ROC AUC", "Feature importance", "Attention masks", "<img")) {
    expect_true(grepl(text, page, fixed = TRUE), label = text)
  }
})
