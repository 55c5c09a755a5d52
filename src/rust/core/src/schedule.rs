//! Learning-rate schedules: every scheduler in one type, stepped by the
//! trainer after each optimizer step ([`Schedule::after_step`]) and after each
//! epoch ([`Schedule::after_epoch`]). The schedule's state after an epoch
//! ([`ScheduleState`]) is stored with the fit (one per epoch), so that a
//! resumed fit, also from a checkpoint, continues where the schedule was.
//!
//! * `Constant`: the rate never changes;
//! * `Step` (torch's `StepLR`): rate × `decay` every `every_epochs` epochs;
//! * `ReduceOnPlateau`: rate × `decay` when the monitored loss has not improved
//!   (strictly) for `patience` epochs in a row; the wait then restarts;
//! * `Exponential` (the paper's): rate × `decay` every `every_steps` optimizer
//!   steps.
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Schedule {
    Constant,
    Step { decay: f64, every_epochs: i64 },
    ReduceOnPlateau { decay: f64, patience: i64 },
    Exponential { decay: f64, every_steps: i64 },
}

/// Where a schedule stands after an epoch. `best` is the lowest monitored
/// loss so far (`None` before the first, or when none was finite-comparable).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScheduleState {
    /// the rate the next optimizer step uses
    pub lr: f64,
    /// optimizer steps taken
    pub steps: i64,
    /// epochs completed under this schedule
    pub epochs: i64,
    pub best: Option<f64>,
    /// epochs without improvement (reduce-on-plateau)
    pub wait: i64,
}

impl ScheduleState {
    /// A schedule's start at `learn_rate`.
    pub fn start(learn_rate: f64) -> ScheduleState {
        ScheduleState {
            lr: learn_rate,
            steps: 0,
            epochs: 0,
            best: None,
            wait: 0,
        }
    }
}

impl Schedule {
    /// After one optimizer step: counts it, and decays the rate when the
    /// exponential schedule says so. Returns whether the rate changed.
    pub(crate) fn after_step(&self, state: &mut ScheduleState) -> bool {
        state.steps += 1;
        match *self {
            Schedule::Exponential { decay, every_steps }
                if every_steps > 0 && state.steps % every_steps == 0 =>
            {
                state.lr *= decay;
                true
            }
            _ => false,
        }
    }

    /// After one epoch whose monitored loss is `monitored` (NaN never counts
    /// as an improvement). Returns whether the rate changed.
    pub(crate) fn after_epoch(&self, state: &mut ScheduleState, monitored: f64) -> bool {
        state.epochs += 1;
        match *self {
            Schedule::Step {
                decay,
                every_epochs,
            } if every_epochs > 0 && state.epochs % every_epochs == 0 => {
                state.lr *= decay;
                true
            }
            Schedule::ReduceOnPlateau { decay, patience } => {
                if monitored < state.best.unwrap_or(f64::INFINITY) {
                    state.best = Some(monitored);
                    state.wait = 0;
                    false
                } else {
                    state.wait += 1;
                    if state.wait >= patience {
                        state.lr *= decay;
                        state.wait = 0;
                        true
                    } else {
                        false
                    }
                }
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rates a schedule gives over `epochs` epochs of `steps` optimizer
    /// steps each, with the monitored losses `losses`.
    fn rates(s: Schedule, epochs: usize, steps: usize, losses: &[f64]) -> Vec<f64> {
        let mut st = ScheduleState::start(1.0);
        let mut out = vec![];
        for &loss in &losses[..epochs] {
            for _ in 0..steps {
                out.push(st.lr);
                s.after_step(&mut st);
            }
            s.after_epoch(&mut st, loss);
        }
        out.push(st.lr);
        out
    }

    #[test]
    fn each_schedule_decays_when_its_definition_says() {
        let flat = [1.0; 6];
        assert_eq!(rates(Schedule::Constant, 3, 1, &flat), vec![1.0; 4]);
        let step = Schedule::Step {
            decay: 0.5,
            every_epochs: 2,
        };
        assert_eq!(
            rates(step, 5, 1, &flat),
            vec![1.0, 1.0, 0.5, 0.5, 0.25, 0.25]
        );
        let exp = Schedule::Exponential {
            decay: 0.5,
            every_steps: 3,
        };
        // steps 1..6 of two 3-step epochs: decays after steps 3 and 6
        assert_eq!(
            rates(exp, 2, 3, &flat),
            vec![1.0, 1.0, 1.0, 0.5, 0.5, 0.5, 0.25]
        );
        let plateau = Schedule::ReduceOnPlateau {
            decay: 0.1,
            patience: 2,
        };
        // improves, improves, flat, flat (decay), NaN, worse (decay)
        let losses = [3.0, 2.0, 2.0, 2.5, f64::NAN, 9.0];
        let r = rates(plateau, 6, 1, &losses);
        let want = [1.0, 1.0, 1.0, 1.0, 0.1, 0.1, 0.1 * 0.1];
        for (a, b) in r.iter().zip(want) {
            // the same multiplications in the same order: exact
            assert_eq!(*a, b);
        }
    }

    #[test]
    fn a_state_resumes_exactly() {
        let s = Schedule::ReduceOnPlateau {
            decay: 0.5,
            patience: 1,
        };
        let losses = [1.0, 2.0, 0.5, 0.7];
        let mut whole = ScheduleState::start(0.02);
        for l in losses {
            s.after_epoch(&mut whole, l);
        }
        let mut first = ScheduleState::start(0.02);
        for l in &losses[..2] {
            s.after_epoch(&mut first, *l);
        }
        // through JSON, as the fit stores it
        let mut resumed: ScheduleState =
            serde_json::from_str(&serde_json::to_string(&first).unwrap()).unwrap();
        for l in &losses[2..] {
            s.after_epoch(&mut resumed, *l);
        }
        assert_eq!(resumed, whole);
    }

    #[test]
    fn schedules_read_from_json() {
        let s: Schedule =
            serde_json::from_str(r#"{"kind":"exponential","decay":0.9,"every_steps":10}"#).unwrap();
        assert_eq!(
            s,
            Schedule::Exponential {
                decay: 0.9,
                every_steps: 10
            }
        );
        let c: Schedule = serde_json::from_str(r#"{"kind":"constant"}"#).unwrap();
        assert_eq!(c, Schedule::Constant);
    }
}
