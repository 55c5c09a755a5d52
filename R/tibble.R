# A tibble of the double vectors `cols` (of equal length), named `names`:
# tibbles take columns as they are, where tibble::as_tibble(<matrix>) copies
# the matrix into columns again (a third of a 100,000-row predict()'s time in
# R, half of a 40,000 x 28 tabnet_explain()'s).
columns_tibble <- function(cols, names, nrow = if (length(cols)) length(cols[[1]]) else 0L) {
  names(cols) <- names
  tibble::new_tibble(cols, nrow = nrow)
}

# The columns of a numeric matrix as a tibble named `names`: what
# tibble::as_tibble(<matrix>, .name_repair = "minimal") and
# hardhat::spruce_prob() return (identical()).
matrix_tibble <- function(m, names = colnames(m)) {
  columns_tibble(lapply(seq_len(ncol(m)), function(j) m[, j]), names, nrow(m))
}
