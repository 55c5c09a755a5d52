# Package load hooks.

.onLoad <- function(libname, pkgname) {
  # -- Rust runtime: silent panics (they become R errors), fork safety ---------
  rs_init()

  # -- parsnip model registration ---------------------------------------------
  # Done at load time (not lazily in tabnet()) so that the model exists in
  # every process that loads tabnetrs: tune's parallel workers and fresh
  # sessions that read a saved workflow. A failure must not break the load.
  if (requireNamespace("parsnip", quietly = TRUE)) {
    tryCatch(
      register_tabnet_model(),
      error = function(e) {
        tabnetrs_warn(
          c(
            "tabnetrs could not register its parsnip model {.fn tabnet}.",
            "x" = conditionMessage(e),
            "i" = "{.fn tabnet_fit} and {.fn predict} still work; {.fn tabnet} will retry the registration."
          ),
          parent = e
        )
      }
    )
  }

  # -- S3 methods for generics of suggested packages ---------------------------
  # (vctrs::s3_register() registers them lazily, when the package loads.)
  # parsnip::multi_predict is registered through NAMESPACE (@rawNamespace:
  # roxygen2 7.2.3 writes an unparsable line for the "_tabnet_fit" class).

  # -- more registrations (lead) ------------------------------------------------
  # Add further hooks below this line (e.g. vctrs::s3_register("vip::vi_model",
  # "tabnet_fit") if not done through NAMESPACE).

  invisible()
}
