# The epoch loop, driven from R so that progress output and interrupts stay
# in R; every batch runs in Rust (`rs_trainer_run()` processes a chunk of
# batches per call and never syncs with the host per batch).

# Batches per call into Rust: small enough for a responsive progress bar and
# Ctrl-C, large enough that the call overhead is nil.
batches_per_call <- 8L

is_knitting <- function() isTRUE(getOption("knitr.in.progress"))

# Trains `model` (a live pointer) for config$epochs epochs.
# `history` holds earlier epochs (resuming); returns list(metrics, checkpoints,
# best_epoch, stopped_early, interrupted).
train_epochs <- function(model, train_ds, valid_ds, config, history = list(), checkpoints = list()) {
  decay_every <- if (identical(config$lr_scheduler, "exponential")) config$step_size else -1
  trainer <- rs_trainer_new(model, config$batch_size, config$drop_last, config$lambda_sparse,
                            config$clip_value %||% -1, config$learn_rate,
                            config$lr_decay, decay_every)
  first <- length(history) + 1L
  last <- length(history) + config$epochs
  metrics <- history
  monitor <- config$early_stopping_monitor
  best <- list(loss = Inf, epoch = NA_integer_, weights = NULL, wait = 0L)
  plateau <- list(best = Inf, wait = 0L)
  stopped_early <- FALSE
  interrupted <- FALSE
  show_bar <- config$verbose && !is_knitting() && interactive()
  if (show_bar) {
    cli::cli_progress_bar("Training", total = config$epochs,
                          format = "{cli::pb_bar} {cli::pb_current}/{cli::pb_total} epochs | {status} | ETA {cli::pb_eta}",
                          .envir = environment())
  }
  status <- ""
  epoch <- first - 1L
  tryCatch({
    for (epoch in seq.int(first, length.out = config$epochs)) {
      remaining <- rs_trainer_begin(trainer, train_ds)
      while (remaining > 0) {
        remaining <- rs_trainer_run(trainer, model, train_ds, batches_per_call)
      }
      train_loss <- rs_trainer_end(trainer)
      valid_loss <- if (is.null(valid_ds)) NULL else rs_eval_loss(model, valid_ds, 65536)
      entry <- list(train = train_loss, valid = valid_loss, checkpoint = FALSE,
                    learn_rate = rs_trainer_lr(trainer))
      if (config$checkpoint_epochs > 0 && epoch %% config$checkpoint_epochs == 0) {
        checkpoints[[paste0("epoch_", epoch)]] <- rs_model_weights(model)
        entry$checkpoint <- TRUE
      }
      metrics[[epoch]] <- entry
      status <- sprintf("loss %.4f%s", train_loss,
                        if (is.null(valid_loss)) "" else sprintf(", valid %.4f", valid_loss))
      if (config$verbose) {
        line <- sprintf("[Epoch %03d] Loss: %.6f%s", epoch, train_loss,
                        if (is.null(valid_loss)) "" else sprintf(" Valid loss: %.6f", valid_loss))
        if (show_bar) cli::cli_progress_update(.envir = environment()) else message(line)
      }
      current <- if (monitor == "valid_loss") valid_loss else train_loss
      # learning-rate schedules stepped per epoch
      if (identical(config$lr_scheduler, "step") && epoch %% config$step_size == 0) {
        rs_trainer_set_lr(trainer, rs_trainer_lr(trainer) * config$lr_decay)
      } else if (identical(config$lr_scheduler, "reduce_on_plateau")) {
        if (current < plateau$best) {
          plateau <- list(best = current, wait = 0L)
        } else {
          plateau$wait <- plateau$wait + 1L
          if (plateau$wait >= config$step_size) {
            rs_trainer_set_lr(trainer, rs_trainer_lr(trainer) * config$lr_decay)
            plateau$wait <- 0L
          }
        }
      }
      if (config$early_stopping) {
        improved <- is.infinite(best$loss) ||
          (best$loss - current) / abs(best$loss) > config$early_stopping_tolerance
        if (improved) {
          best <- list(loss = current, epoch = epoch, weights = rs_model_weights(model), wait = 0L)
        } else {
          best$wait <- best$wait + 1L
          if (best$wait >= config$early_stopping_patience) {
            stopped_early <- TRUE
            if (config$verbose) {
              message(sprintf("Early stopping at epoch %03d; restoring the weights of epoch %03d (%s %.6f).",
                              epoch, best$epoch, monitor, best$loss))
            }
            break
          }
        }
      }
    }
  }, interrupt = function(e) {
    interrupted <<- TRUE
    cli::cli_warn("Training was interrupted during epoch {epoch}; the model keeps the weights trained so far.")
  })
  if (show_bar) cli::cli_progress_done(.envir = environment())
  if (config$early_stopping && !is.null(best$weights) && !identical(best$epoch, length(metrics))) {
    rs_model_set_weights(model, best$weights)
  }
  list(metrics = metrics, checkpoints = checkpoints, best_epoch = best$epoch,
       stopped_early = stopped_early, interrupted = interrupted)
}

`%||%` <- function(x, y) if (is.null(x)) y else x
