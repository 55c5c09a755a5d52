# The main job: fit TabNet on the Syn2 data of the interpretation vignette,
# predict a holdout set and explain it.
library(tabnetrs)
# the one Syn2 generator of the repository (also used by the tests)
source(file.path("tests", "testthat", "helper-syn.R"))
train <- syn2_data(5000, seed = 2026)
test <- syn2_data(2000, seed = 2027)
set.seed(2026)
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
