skip_if_not_installed("data.tree")

# A tree whose branch the predictors decide: level 2 is A / B by the sign of
# x1, level 3 by the sign of x2 (X / Z under A, X / Y under B: "X" is a name
# of two nodes), the leaves are the rows.
hier_data <- function(n = 600, seed = 1) {
  set.seed(seed)
  df <- data.frame(x1 = rnorm(n), x2 = rnorm(n), x3 = rnorm(n), g = factor(sample(c("u", "v"), n, TRUE)))
  l2 <- ifelse(df$x1 > 0, "A", "B")
  l3 <- ifelse(df$x2 > 0, "X", ifelse(l2 == "A", "Z", "Y"))
  df$pathString <- paste("tree", l2, l3, sprintf("r%03d", seq_len(n)), sep = "/")
  list(df = df, l2 = l2, l3 = ifelse(l3 == "X", paste0(l2, "/X"), l3))
}

hier <- local({
  d <- hier_data()
  tree <- data.tree::as.Node(d$df)
  set.seed(3)
  fit <- tabnet_fit(tree, epochs = 25, batch_size = 128, virtual_batch_size = 64, learn_rate = 0.03,
                    checkpoint_epochs = 5)
  list(d = d, tree = tree, fit = fit)
})

test_that("node_to_df() gives the attributes as predictors and the inner levels as outcomes", {
  xy <- node_to_df(hier$tree)
  expect_named(xy, c("x", "y"))
  expect_s3_class(xy$x, "tbl_df")
  expect_setequal(names(xy$x), c("x1", "x2", "x3", "g"))
  expect_named(xy$y, c("level_2", "level_3"))
  expect_true(all(vapply(xy$y, is.factor, logical(1))))
  expect_equal(levels(xy$y$level_2), c("A", "B"))
  # "X" is the name of two nodes: they are told apart by their path
  expect_setequal(levels(xy$y$level_3), c("A/X", "B/X", "Y", "Z"))
  # the rows are the leaves, in the tree's order, with their own path
  leaves <- hier$tree$leaves
  ids <- vapply(leaves, function(l) l$name, character(1))
  row <- match(ids, sprintf("r%03d", seq_len(600)))
  expect_equal(as.character(xy$y$level_2), hier$d$l2[row])
  expect_equal(as.character(xy$y$level_3), hier$d$l3[row])
  expect_equal(xy$x$x1, hier$d$df$x1[row])
  # characters become factors
  expect_s3_class(xy$x$g, "factor")
  # the leaf level is an outcome when asked for
  expect_named(node_to_df(hier$tree, drop_last_level = FALSE)$y, c("level_2", "level_3", "level_4"))
})

test_that("check_compliant_node() names reserved attribute names and shallow or uneven trees", {
  df <- hier_data(20)$df
  expect_identical(check_compliant_node(df), df)
  bad <- df
  bad$level_2 <- 1
  bad$height <- 2
  err <- expect_error(check_compliant_node(bad), class = "tabnetrs_error_input")
  expect_match(conditionMessage(err), "level_2")
  expect_match(conditionMessage(err), "height")
  # on a Node (data.tree drops its own names; level_* stay attributes)
  tree <- data.tree::as.Node(transform(df, level_3 = 1))
  err <- expect_error(tabnet_fit(tree, epochs = 1), class = "tabnetrs_error_input")
  expect_match(conditionMessage(err), "level_3")
  expect_match(conditionMessage(err), "reserved")
  # a root and leaves only: no outcome level
  flat <- data.tree::as.Node(data.frame(x = 1:4, pathString = paste("tree", letters[1:4], sep = "/")))
  err <- expect_error(node_to_df(flat), class = "tabnetrs_error_input")
  expect_match(conditionMessage(err), "at least 3")
  # leaves at different depths
  uneven <- data.tree::as.Node(data.frame(x = 1:4, pathString = c("r/a/l1", "r/a/l2", "r/b/c/l3", "r/b/c/l4")))
  err <- expect_error(tabnet_fit(uneven, epochs = 1), class = "tabnetrs_error_input")
  expect_match(conditionMessage(err), "same depth")
  expect_match(conditionMessage(err), "l1")
  expect_error(node_to_df(df), class = "tabnetrs_error_input")
  expect_error(check_compliant_node(1:3), class = "tabnetrs_error_input")
})

test_that("a Node fit predicts one class per level, on consistent paths, well above chance", {
  fit <- hier$fit
  expect_identical(fit$fit$outcome$task, "hierarchical")
  expect_identical(fit$fit$outcome$names, c("level_2", "level_3"))
  pred <- predict(fit, hier$tree)
  expect_named(pred, c(".pred_class_level_2", ".pred_class_level_3"))
  y <- node_to_df(hier$tree)$y
  expect_identical(levels(pred$.pred_class_level_3), levels(y$level_3))
  # every predicted path is a path of the tree
  parent_of <- c("A/X" = "A", Z = "A", "B/X" = "B", Y = "B")
  expect_equal(unname(parent_of[as.character(pred$.pred_class_level_3)]),
               as.character(pred$.pred_class_level_2))
  # chance is 1/2 and 1/4
  expect_gt(mean(pred$.pred_class_level_2 == y$level_2), 0.85)
  expect_gt(mean(pred$.pred_class_level_3 == y$level_3), 0.7)
  # the same from the data frame of predictors
  expect_identical(predict(fit, node_to_df(hier$tree)$x), pred)
  # new rows
  new <- hier_data(200, seed = 9)
  pred_new <- predict(fit, new$df)
  expect_gt(mean(as.character(pred_new$.pred_class_level_3) == new$l3), 0.65)
})

# MCM probabilities by level, as one matrix with parent indices
node_probs <- function(fit, new_data) {
  prob <- predict(fit, new_data, type = "prob")
  expect_named(prob, c(".pred_level_2", ".pred_level_3"))
  expect_true(all(vapply(prob, tibble::is_tibble, logical(1))))
  do.call(cbind, lapply(prob, as.matrix))
}

test_that("probabilities respect the hierarchy: a node is never below its child", {
  fit <- hier$fit
  p <- node_probs(fit, hier$tree)
  outcome <- fit$fit$outcome
  expect_equal(colnames(p), paste0(".pred_", unlist(outcome$levels, use.names = FALSE)))
  child <- which(!is.na(outcome$parent))
  for (c in child) expect_true(all(p[, outcome$parent[[c]] + 1L] >= p[, c]))
})

test_that("the max constraint is applied in prediction: parents tie with a dominating child", {
  # an (almost) untrained network: raw sigmoid outputs are about random, so
  # a child's often exceeds its parent's; the constraint makes the parent
  # equal to its most probable descendant, which plain sigmoids never do
  tree <- data.tree::as.Node(hier_data(200, seed = 2)$df)
  set.seed(5)
  fit <- tabnet_fit(tree, epochs = 1, learn_rate = 1e-6, batch_size = 64, virtual_batch_size = 32)
  p <- node_probs(fit, tree)
  parent <- fit$fit$outcome$parent
  tie_share <- vapply(0:1, function(a) {
    kids <- which(parent == a)
    mean(p[, a + 1L] == do.call(pmax, as.data.frame(p[, kids, drop = FALSE])))
  }, numeric(1))
  expect_true(all(tie_share > 0.05), info = paste(tie_share, collapse = ", "))
  for (c in which(!is.na(parent))) expect_true(all(p[, parent[[c]] + 1L] >= p[, c]))
})

test_that("explanations, importances and plots work for a Node fit", {
  fit <- hier$fit
  ex <- tabnet_explain(fit, hier$tree)
  expect_s3_class(ex, "tabnet_explain")
  expect_equal(dim(ex$M_explain), c(600L, 4L))
  imp <- tabnet_importance(fit)
  expect_setequal(imp$Variable, c("x1", "x2", "x3", "g"))
  # x1 and x2 decide the branch
  perm <- tabnet_importance(fit, hier$tree, method = "permutation", n_repeats = 2, seed = 1)
  expect_identical(attr(perm, "metric"), "accuracy")
  top <- perm$Variable[order(-perm$Importance)][1:2]
  expect_setequal(top, c("x1", "x2"))
  expect_s3_class(autoplot(fit), "ggplot")
  expect_s3_class(autoplot(ex), "ggplot")
})

test_that("a Node fit survives saveRDS() / readRDS(), and its hierarchy is checked", {
  fit <- hier$fit
  path <- withr::local_tempfile(fileext = ".rds")
  saveRDS(fit, path)
  back <- readRDS(path)
  expect_identical(predict(back, hier$tree, type = "prob"), predict(fit, hier$tree, type = "prob"))
  # the hierarchy is part of the checksummed configuration
  edited <- back
  edited$fit$net_config <- sub('"parent":[null,null,0', '"parent":[null,null,1', edited$fit$net_config, fixed = TRUE)
  expect_false(identical(edited$fit$net_config, back$fit$net_config))
  expect_error(predict(edited, hier$tree), class = "tabnetrs_error_model")
  # checkpoints
  expect_named(predict(fit, hier$tree, epoch = 10), c(".pred_class_level_2", ".pred_class_level_3"))
})

test_that("a Node fit continues, and refuses another hierarchy", {
  fit <- hier$fit
  more <- tabnet_fit(hier$tree, tabnet_model = fit, epochs = 2)
  expect_length(more$fit$metrics, 27L)
  expect_identical(more$fit$outcome, fit$fit$outcome)
  other <- hier_data(100, seed = 4)$df
  other$pathString <- sub("^tree/B/Y", "tree/B/W", other$pathString)
  err <- expect_error(tabnet_fit(data.tree::as.Node(other), tabnet_model = fit, epochs = 1),
                      class = "tabnetrs_error_model")
  expect_match(conditionMessage(err), "dimensions")
  expect_error(tabnet_fit(hier$tree, epochs = 1, loss = "mse"), class = "tabnetrs_error_config")
  expect_error(predict(fit, hier$tree, type = "numeric"), class = "tabnetrs_error_input")
})

test_that("tabnet_pretrain() takes a Node, and fine-tuning from it fits the hierarchy", {
  set.seed(2)
  pre <- tabnet_pretrain(hier$tree, epochs = 2, batch_size = 128, virtual_batch_size = 64)
  expect_s3_class(pre, "tabnet_pretrain")
  expect_setequal(pre$fit$layout$names, c("x1", "x2", "x3", "g"))
  tuned <- tabnet_fit(hier$tree, tabnet_model = pre, epochs = 2, batch_size = 128, virtual_batch_size = 64)
  expect_identical(tuned$fit$outcome$task, "hierarchical")
  expect_named(predict(tuned, hier$tree), c(".pred_class_level_2", ".pred_class_level_3"))
})

test_that("multi-outcome classification of the same data stays plain classification", {
  xy <- node_to_df(hier$tree)
  set.seed(1)
  fit <- tabnet_fit(xy$x, xy$y, epochs = 1, batch_size = 128, virtual_batch_size = 64)
  expect_identical(fit$fit$outcome$task, "classification")
  expect_null(fit$fit$outcome$parent)
  expect_false(grepl("parent", fit$fit$net_config))
  p <- predict(fit, xy$x, type = "prob")
  expect_equal(unname(rowSums(as.matrix(p$.pred_level_2))), rep(1, 600), tolerance = 1e-5)
})

test_that("only level_1 ... level_<depth> clash: a level_<N> deeper than the tree is a predictor", {
  df <- hier_data(40)$df # depth 4: tree / level 2 / level 3 / leaves
  deep <- transform(df, level_5 = x1)
  expect_identical(check_compliant_node(deep), deep)
  tree <- data.tree::as.Node(deep)
  expect_silent(check_compliant_node(tree))
  expect_true("level_5" %in% names(node_to_df(tree)$x))
  err <- expect_error(check_compliant_node(transform(df, level_4 = x1)), class = "tabnetrs_error_input")
  expect_match(conditionMessage(err), "level_4")
  expect_error(check_compliant_node(data.tree::as.Node(transform(df, level_1 = x1))),
               class = "tabnetrs_error_input")
})

test_that("an attribute holding several values becomes one string, as ToDataFrameTypeCol() gives it", {
  skip_if_not_installed("dplyr")
  sw <- dplyr::starwars[!is.na(dplyr::starwars$species) & !is.na(dplyr::starwars$homeworld) &
                          !is.na(dplyr::starwars$mass), ]
  sw$pathString <- paste("sw", sw$species, sw$homeworld, sw$name, sep = "/")
  tree <- data.tree::as.Node(sw[c("mass", "films", "starships", "pathString")])
  xy <- node_to_df(tree)
  expect_s3_class(xy$x$films, "factor")
  ref <- data.tree::ToDataFrameTypeCol(tree, "films", "starships")
  expect_identical(as.character(xy$x$films), ref$films)
  # an empty value (no starship) is missing
  none <- lengths(lapply(tree$leaves, function(l) unlist(l$starships))) == 0
  expect_true(any(none))
  expect_true(all(is.na(xy$x$starships[none])))
  expect_match(as.character(xy$x$films[[1]]), ", ", fixed = TRUE)
  set.seed(1)
  fit <- tabnet_fit(tree, epochs = 1, batch_size = 32, virtual_batch_size = 16, skip_importance = TRUE)
  expect_named(predict(fit, tree), c(".pred_class_level_2", ".pred_class_level_3"))
})

test_that("a hierarchy with a single outcome level predicts as a single-outcome classifier", {
  e <- new.env()
  data("acme", package = "data.tree", envir = e)
  acme <- e$acme
  set.seed(1)
  fit <- tabnet_fit(acme, epochs = 1, batch_size = 16, virtual_batch_size = 4, skip_importance = TRUE)
  lv <- fit$fit$outcome$levels[[1]]
  cls <- predict(fit, acme)
  expect_named(cls, ".pred_class")
  expect_s3_class(cls$.pred_class, "factor")
  expect_identical(levels(cls$.pred_class), lv)
  prob <- predict(fit, acme, type = "prob")
  expect_named(prob, paste0(".pred_", lv))
  expect_true(all(vapply(prob, is.numeric, logical(1))))
  # the class is the most probable node
  expect_identical(as.character(cls$.pred_class), lv[max.col(as.matrix(prob), ties.method = "first")])
})
