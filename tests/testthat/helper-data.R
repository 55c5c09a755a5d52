# Small data sets shared by the foundation tests.

# Syn2 (`syn2_data()`) is in helper-syn.R.

mixed_data <- function(n = 600, seed = 2) {
  withr::with_seed(seed, {
    d <- data.frame(
      num1 = rnorm(n),
      grp = factor(sample(c("a", "b", "c"), n, replace = TRUE)),
      num2 = runif(n),
      flag = factor(sample(c("u", "v"), n, replace = TRUE))
    )
    d$target <- 2 * d$num1 + ifelse(d$grp == "b", 1.5, 0) - d$num2 + rnorm(n, sd = 0.1)
    d$cls <- factor(ifelse(d$target > 0.5, "high", "low"))
    d
  })
}

auc <- function(score, positive) {
  r <- rank(score)
  n1 <- sum(positive)
  n0 <- sum(!positive)
  (sum(r[positive]) - n1 * (n1 + 1) / 2) / (n1 * n0)
}
