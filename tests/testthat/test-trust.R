# Bad input that used to pass silently or get the wrong blame (issue #24,
# "Trust"): misspelt arguments, ambiguous abbreviations, factor levels unseen
# at fit time, edited or damaged saved models.

test_that("a misspelt argument in `...` is an error naming it, not ignored", {
  fit <- small_fit()
  d <- syn2_data(50, seed = 7)
  err <- expect_error(predict(fit, d, tpye = "prob"), class = "tabnetrs_error_unused_argument")
  expect_s3_class(err, "tabnetrs_error_input")
  expect_match(conditionMessage(err), "tpye")
  expect_match(conditionMessage(err), "Did you mean `type`", fixed = TRUE)
  expect_identical(err$args, "tpye")
  expect_identical(conditionCall(err)[[1]], quote(predict))
  expect_error(predict(fit, d, "prob", 3), "\\.\\.1", class = "tabnetrs_error_unused_argument")
  expect_error(predict(fit, d, epochs = 5), "epoch", class = "tabnetrs_error_unused_argument")
  # the legitimate calls still work (parsnip's is predict(object$fit, new_data, type = ))
  expect_named(predict(fit, d, type = "prob"), c(".pred_yes", ".pred_no"))
  expect_error(autoplot(fit, title = "x"), "title", class = "tabnetrs_error_unused_argument")
  ex <- tabnet_explain(fit, d)
  expect_error(autoplot(ex, tpye = "steps"), "tpye", class = "tabnetrs_error_unused_argument")
  expect_s3_class(autoplot(ex, type = "steps"), "ggplot")
  imp <- tabnet_importance(fit)
  expect_error(autoplot(imp, tops = 3), "tops", class = "tabnetrs_error_unused_argument")
  # tabnet_fit() / tabnet_pretrain(): `...` are tabnet_config() arguments
  expect_error(tabnet_fit(y ~ ., d, epochz = 1), "epochz", class = "tabnetrs_error_input")
  expect_error(tabnet_pretrain(d[1:5], epochz = 1), "epochz", class = "tabnetrs_error_input")
})

test_that("an abbreviation of several tabnet_config() arguments is ambiguous, with the candidates", {
  d <- syn2_data(50, seed = 7)
  err <- expect_error(tabnet_fit(y ~ ., d, num = 5), class = "tabnetrs_error_input")
  expect_match(conditionMessage(err), "ambiguous")
  for (a in c("num_steps", "num_independent", "num_shared", "num_threads")) {
    expect_match(conditionMessage(err), a, fixed = TRUE)
  }
  expect_no_match(conditionMessage(err), "not a")
  # a unique abbreviation still works, an unknown name is still unknown
  fit <- tabnet_fit(y ~ ., d, epoch = 1, num_st = 2, skip_importance = TRUE)
  expect_equal(fit$fit$config$n_steps, 2)
  expect_length(fit$fit$metrics, 1L)
  expect_error(tabnet_fit(y ~ ., d, zzz = 1), "not a", class = "tabnetrs_error_input")
})

test_that("a factor level unseen at fit time is a missing value through tabnet_fit() and a workflow alike", {
  skip_if_not_installed("parsnip")
  skip_if_not_installed("workflows")
  d <- mixed_data(300)
  wf <- workflows::workflow(cls ~ num1 + grp + num2 + flag,
                            parsnip::set_engine(tabnet(epochs = 2, mode = "classification"), "tabnetrs"))
  wf <- withr::with_seed(1, parsnip::fit(wf, d))
  engine <- workflows::extract_fit_engine(wf)
  new <- d[1:6, ]
  new$grp <- factor(c("a", "zzz", "zzz", "c", NA, "b"))
  missing <- new
  missing$grp[2:3] <- NA
  expect_warning(direct <- predict(engine, new, type = "prob"), "not seen at fit time", class = "tabnetrs_warning")
  through_wf <- suppressWarnings(predict(wf, new, type = "prob"))
  expect_equal(as.data.frame(direct), as.data.frame(through_wf))
  # the unseen level is handled exactly as a missing value
  expect_equal(direct, predict(engine, missing, type = "prob"))
})
