library(testthat)
library(tabnetrs)

test_check("tabnetrs")
