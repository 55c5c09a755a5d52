# libtorch uses one thread in tests (at most 2 allowed in checks).
options(tabnetrs.threads = 1L)
Sys.setenv(TZ = "UTC")
