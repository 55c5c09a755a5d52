//! Weight initialisation of dreamquark's pytorch-tabnet (spec §1.9): Xavier-normal
//! with custom gains, written as the resulting standard deviations.
use tch::nn::Init;

/// FC inside a GLU layer (fan_out = 2·out): std = sqrt(2)·fan_in^(-1/4).
pub fn glu_fc(fan_in: i64) -> Init {
    Init::Randn {
        mean: 0.0,
        stdev: (2.0f64).sqrt() * (fan_in as f64).powf(-0.25),
    }
}

/// Any other FC (attention, heads, reconstruction): std = fan_in^(-1/4).
pub fn non_glu_fc(fan_in: i64) -> Init {
    Init::Randn {
        mean: 0.0,
        stdev: (fan_in as f64).powf(-0.25),
    }
}
