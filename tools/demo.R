# The main job: fit TabNet on the Syn2 data of the interpretation vignette,
# predict a holdout set and explain it.
library(tabnetrs)
set.seed(2026)
make_syn2 <- function(n) {
  x <- as.data.frame(lapply(1:10, function(i) rnorm(n)))
  names(x) <- sprintf("V%02d", 1:10)
  x$y <- factor(ifelse(rowSums(x[, 3:6]) > 0, "yes", "no"), levels = c("yes", "no"))
  x
}
train <- make_syn2(5000)
test <- make_syn2(2000)
cat("BLAS:", sessionInfo()$BLAS, "\n")
elapsed <- system.time(fit <- tabnet_fit(y ~ ., train, epochs = 10, verbose = TRUE))[["elapsed"]]
print(fit)
cat(sprintf("fit: %.1f s\n", elapsed))
prob <- predict(fit, test, type = "prob")
r <- rank(prob$.pred_yes)
pos <- test$y == "yes"
auc <- (sum(r[pos]) - sum(pos) * (sum(pos) + 1) / 2) / (sum(pos) * sum(!pos))
acc <- mean(predict(fit, test)$.pred_class == test$y)
cat(sprintf("holdout AUC %.4f, accuracy %.4f\n", auc, acc))
cat("global importance (mask):\n")
print(fit$fit$importances[order(-fit$fit$importances$importance), ])
if (exists("tabnet_explain")) {
  ex <- tabnet_explain(fit, test[1:5, ])
  cat("aggregated masks of the first 5 holdout rows:\n")
  print(ex$M_explain)
}
