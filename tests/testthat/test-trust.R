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

test_that("the predictor and outcome layout is covered by the checksum saved with the model", {
  d <- mixed_data(200)
  fit <- withr::with_seed(1, tabnet_fit(cls ~ num1 + grp + num2 + flag, d, epochs = 1, skip_importance = TRUE))
  ok <- predict(fit, d, type = "prob") # (fills the network cache the copies below share)
  expect_identical(fit$fit$layout$names, c("num1", "num2", "grp", "flag"))
  # two numeric predictors swapped: used to move every prediction silently
  swap <- fit
  swap$fit$layout$names[1:2] <- swap$fit$layout$names[2:1]
  err <- expect_error(predict(swap, d), class = "tabnetrs_error_model")
  expect_match(conditionMessage(err), "damaged")
  expect_error(tabnet_explain(swap, d), class = "tabnetrs_error_model")
  expect_error(tabnet_fit(cls ~ num1 + grp + num2 + flag, d, tabnet_model = swap, epochs = 1),
               class = "tabnetrs_error_model")
  # a numeric and a factor swapped: the model is blamed, not `new_data`
  types <- fit
  types$fit$layout$names[c(1, 3)] <- types$fit$layout$names[c(3, 1)]
  expect_error(predict(types, d), "damaged", class = "tabnetrs_error_model")
  # factor levels, outcome levels (the labels of the predictions)
  lv <- fit
  lv$fit$layout$levels$grp <- rev(lv$fit$layout$levels$grp)
  expect_error(predict(lv, d), class = "tabnetrs_error_model")
  out <- fit
  out$fit$outcome$levels[[1]] <- rev(out$fit$outcome$levels[[1]])
  expect_error(predict(out, d), class = "tabnetrs_error_model")
  # also when the edit keeps the checksum of an older version's model (no
  # layout checksum): the types edit is still the model's fault
  old <- types
  old$fit$layout_digest <- NULL
  expect_error(predict(old, d), "damaged", class = "tabnetrs_error_model")
  # a model saved before the layout checksum existed still predicts
  unedited <- fit
  unedited$fit$layout_digest <- NULL
  expect_identical(predict(unedited, d, type = "prob"), ok)
  expect_identical(predict(fit, d, type = "prob"), ok)
  # a pretraining is covered too
  pre <- withr::with_seed(1, tabnet_pretrain(d[c("num1", "num2", "grp")], epochs = 1, skip_importance = TRUE))
  pre$fit$layout$names[1:2] <- pre$fit$layout$names[2:1]
  expect_error(tabnet_explain(pre, d), class = "tabnetrs_error_model")
})

test_that("every removed or mistyped part of a saved model gives the damaged-model error", {
  d <- mixed_data(200)
  fit <- withr::with_seed(1, tabnet_fit(cls ~ num1 + grp + num2 + flag, d, epochs = 1, skip_importance = TRUE))
  invisible(predict(fit, d))
  damaged <- list(
    list("serialized_net", NULL), list("serialized_net", "abc"), list("serialized_net", 1:3),
    list(c("fit", "net_config"), NULL), list(c("fit", "net_config"), 3),
    # (a NULL `config` is butcher's: test-deploy.R)
    list(c("fit", "config"), "a"),
    list(c("fit", "layout"), NULL), list(c("fit", "outcome"), NULL), list("blueprint", NULL),
    list(c("fit", "layout", "names"), NULL)
  )
  for (dmg in damaged) {
    bad <- fit
    bad[[dmg[[1]]]] <- dmg[[2]]
    label <- paste(paste(dmg[[1]], collapse = "$"), "<-", deparse(dmg[[2]]))
    err <- tryCatch(predict(bad, d), error = identity)
    expect_true(inherits(err, "tabnetrs_error_model"), label = label)
    expect_false(inherits(err, "tabnetrs_error_internal"), label = label)
    expect_match(conditionMessage(err), "damaged", label = label)
  }
  # a pretraining needs its masking ratio
  pre <- withr::with_seed(1, tabnet_pretrain(d[c("num1", "num2", "grp")], epochs = 1, skip_importance = TRUE))
  for (ratio in list(NULL, "a")) {
    bad <- pre
    bad$fit$config$pretraining_ratio <- ratio
    expect_error(tabnet_explain(bad, d), "damaged", class = "tabnetrs_error_model")
  }
})
