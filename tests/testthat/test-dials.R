skip_if_not_installed("dials")

expect_int_param <- function(p, id, lo, hi) {
  expect_s3_class(p, "quant_param")
  expect_equal(p$type, "integer")
  expect_equal(names(p$label), id)
  expect_equal(unname(unlist(p$range)), c(lo, hi))
  expect_true(all(p$inclusive))
}

test_that("integer TabNet parameters follow the paper's search space", {
  expect_int_param(decision_width(), "decision_width", 8L, 64L)
  expect_int_param(attention_width(), "attention_width", 8L, 64L)
  expect_int_param(num_steps(), "num_steps", 3L, 10L)
  expect_int_param(num_independent(), "num_independent", 1L, 5L)
  expect_int_param(num_shared(), "num_shared", 1L, 5L)
  expect_int_param(num_independent_decoder(), "num_independent_decoder", 1L, 5L)
  expect_int_param(num_shared_decoder(), "num_shared_decoder", 1L, 5L)
  expect_int_param(cat_emb_dim(), "cat_emb_dim", 1L, 10L)
})

test_that("double parameters have the TabNet ranges", {
  fr <- feature_reusage()
  expect_s3_class(fr, "quant_param")
  expect_equal(fr$type, "double")
  expect_equal(unname(unlist(fr$range)), c(1, 2))
  expect_equal(names(fr$label), "feature_reusage")

  mo <- momentum()
  expect_s3_class(mo, "quant_param")
  expect_equal(unname(unlist(mo$range)), c(0.01, 0.4))
  expect_equal(names(mo$label), "momentum")
})

test_that("virtual_batch_size spans 256 to 4096 on a log2 scale", {
  vbs <- virtual_batch_size()
  expect_s3_class(vbs, "quant_param")
  expect_equal(names(vbs$label), "virtual_batch_size")
  expect_equal(unname(unlist(dials::range_get(vbs, original = TRUE))), c(256, 4096))
  vals <- dials::value_seq(vbs, 5)
  expect_true(all(vals >= 256 & vals <= 4096))
  expect_true(all(vals == round(vals)))
})

test_that("qualitative parameters list their values", {
  mt <- mask_type()
  expect_s3_class(mt, "qual_param")
  expect_equal(mt$values, c("sparsemax", "entmax"))
  expect_equal(names(mt$label), "mask_type")
  expect_equal(mask_type(values = "entmax")$values, "entmax")

  dl <- drop_last()
  expect_s3_class(dl, "qual_param")
  expect_equal(dl$type, "logical")
  expect_setequal(dl$values, c(TRUE, FALSE))

  ls <- lr_scheduler()
  expect_s3_class(ls, "qual_param")
  expect_setequal(ls$values, c("step", "reduce_on_plateau"))
})

test_that("custom ranges work, as in the blog post", {
  dw <- decision_width(range = c(20, 40))
  expect_equal(unname(unlist(dw$range)), c(20, 40))
  ns <- num_steps(range = c(4, 6))
  vals <- dials::value_seq(ns, 3)
  expect_equal(vals, 4:6)
})

test_that("parameters build grids with dials' grid functions", {
  params <- dials::parameters(list(
    decision_width(), attention_width(), num_steps(), feature_reusage(),
    momentum(), mask_type(), virtual_batch_size()
  ))
  g <- dials::grid_space_filling(params, size = 10)
  expect_equal(nrow(g), 10)
  expect_true(all(g$decision_width >= 8 & g$decision_width <= 64))
  expect_true(all(g$num_steps >= 3 & g$num_steps <= 10))
  expect_true(all(g$feature_reusage >= 1 & g$feature_reusage <= 2))
  expect_true(all(g$momentum >= 0.01 & g$momentum <= 0.4))
  expect_true(all(g$mask_type %in% c("sparsemax", "entmax")))
  expect_true(all(g$virtual_batch_size >= 256 & g$virtual_batch_size <= 4096))

  r <- dials::grid_regular(decision_width(), num_steps(), levels = 3)
  expect_equal(nrow(r), 9)
  expect_equal(sort(unique(r$num_steps)), c(3L, 6L, 10L))

  set.seed(1)
  rnd <- dials::grid_random(num_independent(), num_shared(), size = 20)
  expect_true(all(rnd$num_independent %in% 1:5))
  expect_true(all(rnd$num_shared %in% 1:5))
})

test_that("non-tunable settings signal the mlverse error", {
  for (f in list(checkpoint_epochs, optimizer, verbose, encoder_activation,
                 mlp_activation, mlp_hidden_multiplier)) {
    expect_error(f(), "cannot be used as a .* parameter yet")
  }
  expect_error(tabnet_untunable(values = "loss"), "`loss` cannot be used as a .* parameter yet")
})

test_that("tabnetrs does not redefine dials' penalty(), learn_rate(), epochs()", {
  ns <- getNamespaceExports("tabnetrs")
  expect_false(any(c("penalty", "learn_rate", "epochs", "batch_size",
                     "rate_decay", "rate_step_size") %in% ns))
})
