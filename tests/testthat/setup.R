# libtorch may use at most 2 threads in checks.
options(tabnetrs.threads = 2L)
Sys.setenv(TZ = "UTC")
