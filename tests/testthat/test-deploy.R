# Deployment as tidymodels users do it (issue 24): butcher, pins + vetiver,
# a plumber API served on 127.0.0.1 by a background R process. Each part is
# skipped when its packages are absent.

deploy_data <- function() {
  d <- mixed_data(240)
  d[c("num1", "grp", "num2", "flag", "cls")]
}

deploy_workflow <- function(d) {
  spec <- parsnip::set_mode(
    parsnip::set_engine(tabnet(epochs = 2, batch_size = 64, virtual_batch_size = 32, checkpoint_epochs = 1),
                        "tabnetrs", seed = 21),
    "classification")
  wf <- workflows::add_model(workflows::add_formula(workflows::workflow(), cls ~ .), spec)
  generics::fit(wf, d)
}

# The tabnet_fit inside a fitted workflow.
inner_fit <- function(wf) workflows::extract_fit_engine(wf)

test_that("a workflow without the fields butcher drops predicts identically, also after saveRDS()", {
  skip_if_not_installed("workflows")
  d <- deploy_data()
  wf <- deploy_workflow(d)
  expect_gt(length(inner_fit(wf)$fit$checkpoints), 0)
  want <- predict(wf, d, type = "prob")
  # what butcher 0.4.0's axe_fitted() for tabnet fits removes: the checkpoints,
  # the stored importances and the training configuration
  axed <- wf
  axed$fit$fit$fit$fit$checkpoints <- NULL
  axed$fit$fit$fit$fit$importances <- NULL
  axed$fit$fit$fit$fit$config <- NULL
  expect_null(inner_fit(axed)$fit$config)
  expect_identical(predict(axed, d, type = "prob"), want)
  # a fresh copy rebuilds its network from the bytes (the cached one is gone)
  path <- withr::local_tempfile(fileext = ".rds")
  saveRDS(axed, path)
  expect_identical(predict(readRDS(path), d, type = "prob"), want)
  expect_identical(predict(readRDS(path), d), predict(wf, d))
  expect_output(print(inner_fit(readRDS(path))), "TabNet")
  # a pretrained network needs its masking ratio: without its configuration
  # it is a damaged object (the damaged-model error), never an internal error
  pre <- tabnet_pretrain(cls ~ ., d, epochs = 1, batch_size = 120, seed = 1)
  pre$fit$config <- NULL
  saveRDS(pre, path)
  expect_error(tabnet_explain(readRDS(path), d[1:5, ]), class = "tabnetrs_error_model")
})

test_that("butcher::butcher() dispatches on a tabnetrs workflow and keeps its predictions", {
  skip_if_not_installed("workflows")
  skip_if_not_installed("butcher", "0.4.0")
  d <- deploy_data()
  wf <- deploy_workflow(d)
  want <- predict(wf, d, type = "prob")
  small <- butcher::butcher(wf)
  expect_s3_class(small, "workflow")
  expect_identical(predict(small, d, type = "prob"), want)
  path <- withr::local_tempfile(fileext = ".rds")
  saveRDS(small, path)
  expect_identical(predict(readRDS(path), d, type = "prob"), want)
  # the parsnip fit alone, too
  pfit <- butcher::butcher(workflows::extract_fit_parsnip(wf))
  expect_identical(predict(pfit, d, type = "prob"), want)
})

# -- vetiver + plumber ------------------------------------------------------------

skip_if_no_vetiver <- function() {
  skip_on_cran()
  for (pkg in c("workflows", "vetiver", "plumber", "pins", "bundle", "callr", "httr", "httpuv")) skip_if_not_installed(pkg)
}

# Serves the pinned model `name` of the folder board `board_path` with
# vetiver_api() (predict type `type`) on 127.0.0.1:`port` in a background R
# process, stopped when `env` ends. Returns the base URL once /ping answers.
local_vetiver_server <- function(board_path, name, port, type, env = parent.frame()) {
  bg <- callr::r_bg(function(board_path, name, port, type) {
    options(tabnetrs.threads = 1L)
    board <- pins::board_folder(board_path)
    v <- vetiver::vetiver_pin_read(board, name)
    pr <- vetiver::vetiver_api(plumber::pr(), v, type = type)
    plumber::pr_run(pr, host = "127.0.0.1", port = port, docs = FALSE, quiet = TRUE)
  }, args = list(board_path = board_path, name = name, port = port, type = type),
  libpath = .libPaths(), supervise = TRUE)
  withr::defer(bg$kill(), envir = env)
  url <- sprintf("http://127.0.0.1:%d", port)
  for (i in seq_len(240)) {
    ok <- tryCatch(httr::status_code(httr::GET(paste0(url, "/ping"), httr::timeout(2))) == 200,
                   error = function(e) FALSE)
    if (ok) return(url)
    if (!bg$is_alive()) break
    Sys.sleep(0.5)
  }
  fail(paste0("the vetiver API did not start:\n", paste(bg$read_all_error_lines(), collapse = "\n")))
}

post_json <- function(url, body) {
  httr::POST(paste0(url, "/predict"), body = body, httr::content_type_json(), httr::timeout(30))
}

test_that("a butchered, pinned workflow served by vetiver answers /predict with predict()'s probabilities", {
  skip_if_no_vetiver()
  d <- deploy_data()
  wf <- deploy_workflow(d)
  v <- vetiver::vetiver_model(wf, "tabnetrs-cls")
  # vetiver butchers the workflow itself (vetiver_prepare_model())
  expect_true("tabnetrs" %in% v$metadata$required_pkgs)
  board_path <- withr::local_tempdir()
  board <- pins::board_folder(board_path)
  suppressMessages(vetiver::vetiver_pin_write(board, v))
  # what the server will run: the pinned (butchered, bundled) workflow
  pinned <- bundle::unbundle(vetiver::vetiver_pin_read(board, "tabnetrs-cls")$model)
  expect_identical(predict(pinned, d, type = "prob"), predict(wf, d, type = "prob"))

  port <- httpuv::randomPort(host = "127.0.0.1")
  url <- local_vetiver_server(board_path, "tabnetrs-cls", port, type = "prob")
  ping <- httr::GET(paste0(url, "/ping"))
  expect_identical(httr::status_code(ping), 200L)
  expect_match(httr::content(ping, as = "text", encoding = "UTF-8"), "online")

  nd <- d[1:25, c("num1", "grp", "num2", "flag")]
  good <- as.character(jsonlite::toJSON(nd, digits = NA))
  res <- post_json(url, good)
  expect_identical(httr::status_code(res), 200L)
  got <- jsonlite::fromJSON(httr::content(res, as = "text", encoding = "UTF-8"))
  want <- predict(wf, nd, type = "prob")
  expect_setequal(names(got), names(want))
  # plumber writes numbers with jsonlite's default 4 decimal digits: a
  # rounding error of at most 5e-5 per probability
  for (nm in names(want)) expect_lt(max(abs(got[[nm]] - want[[nm]])), 5e-5 + 1e-12)

  # bad bodies: an error status with a message, and the server keeps serving
  bad <- list(
    not_json = "this is not json",
    missing_column = as.character(jsonlite::toJSON(nd[c("num1", "grp")])),
    wrong_type = as.character(jsonlite::toJSON(transform(nd, num1 = "high")))
  )
  for (what in names(bad)) {
    r <- post_json(url, bad[[what]])
    expect_gte(httr::status_code(r), 400L)
    expect_lt(httr::status_code(r), 600L)
    expect_true(nzchar(httr::content(r, as = "text", encoding = "UTF-8")), label = what)
  }
  expect_identical(httr::status_code(httr::GET(paste0(url, "/ping"))), 200L)
  again <- jsonlite::fromJSON(httr::content(post_json(url, good), as = "text", encoding = "UTF-8"))
  expect_identical(again, got)
})
