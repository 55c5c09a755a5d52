# tabnet_nap(): RNA per layer, node and class against brute force from the
# latent features and the attention masks, sparsity, bad input and plots.

nap_fit <- function() {
  syn_cached("nap_fit", withr::with_seed(3, {
    tabnetrs::tabnet_fit(y ~ ., syn2_data(1500, seed = 31), epochs = 5, verbose = FALSE)
  }))
}

brute_rna <- function(act, cls, level) {
  s <- colSums(abs(as.matrix(act[cls == level, , drop = FALSE])))
  unname(s / max(s))
}

test_that("RNA is each class's summed |activation| over the layer's maximum", {
  fit <- nap_fit()
  d <- syn2_data(700, seed = 32)
  nap <- tabnet_nap(fit, d)
  expect_s3_class(nap, "tabnet_nap")
  expect_named(nap, c("layer", "node", "class", "rna"))
  expect_true(all(nap$rna >= 0 & nap$rna <= 1))
  # 3 steps x (attentive, 2 shared, 2 specific, decision) + the splitter's 4 + the sum
  expect_equal(nlevels(nap$layer), 3 * 6 + 4 + 1)
  # brute force: the decision layer from the latent features
  z <- tabnet_latent(fit, d)
  masks <- tabnet_explain(fit, d)$masks
  for (lv in c("yes", "no")) {
    got <- nap$rna[nap$layer == "decision" & nap$class == lv]
    # float32 sums over ~350 rows of O(1) values: relative error ~350 * 2^-24
    expect_equal(got, brute_rna(z, d$y, lv), tolerance = 1e-4)
    got <- nap$rna[nap$layer == "step2.attentive" & nap$class == lv]
    expect_equal(got, brute_rna(masks[[2]], d$y, lv), tolerance = 1e-4)
  }
  sp <- attr(nap, "sparsity")
  all <- sp[sp$layer == "all", ]
  expect_equal(all$sparsity[all$class == "no"], mean(nap$rna[nap$class == "no"] < 0.2))
  expect_true(all(sp$sparsity >= 0 & sp$sparsity <= 1))
})

test_that("sums over chunks equal the sums of one pass", {
  fit <- nap_fit()
  d <- syn2_data(9000, seed = 33)  # more rows than two chunks (4096)
  whole <- tabnet_nap(fit, d)
  z <- tabnet_latent(fit, d)
  expect_equal(nrow(z), 9000)
  for (lv in c("yes", "no")) {
    expect_equal(whole$rna[whole$layer == "decision" & whole$class == lv],
                 brute_rna(z, d$y, lv), tolerance = 1e-4)
  }
})

test_that("NAP needs a classification outcome in new_data", {
  fit <- nap_fit()
  d <- syn2_data(50, seed = 34)
  expect_error(tabnet_nap(fit, d[names(d) != "y"]), class = "tabnetrs_error_input")
  expect_snapshot(error = TRUE, tabnet_nap(fit, d[names(d) != "y"]))
  expect_snapshot(error = TRUE, tabnet_nap(fit, d, outcomes = "y"))
  r <- d
  r$y <- r$V01
  rfit <- withr::with_seed(1, tabnet_fit(y ~ ., r, epochs = 1, verbose = FALSE))
  expect_snapshot(error = TRUE, tabnet_nap(rfit, r))
})

test_that("autoplot() draws the NAP diagram and the |delta RNA| map", {
  nap <- tabnet_nap(nap_fit(), syn2_data(300, seed = 35))
  p <- autoplot(nap)
  expect_s3_class(p, "ggplot")
  # the background class is drawn negative
  expect_true(all(p$data$value[p$data$class == "no"] <= 0))
  expect_true(all(p$data$value[p$data$class == "yes"] >= 0))
  q <- autoplot(nap, type = "delta")
  expect_true(all(q$data$value >= 0 & q$data$value <= 1))
  expect_error(autoplot(nap, classes = c("yes", "maybe")), class = "tabnetrs_error_input")
})
