//! Neural activation patterns (Khot, Neubauer & Roy 2023, "A detailed study of
//! interpretability of deep neural network based top taggers", Mach. Learn.:
//! Sci. Technol. 4 035003, section on NAP diagrams): the activity of every
//! node of every layer summed over the rows of each class. The R layer
//! normalises each layer by its maximum (relative neural activity, RNA).
//!
//! The study's nodes are ReLUs; TabNet's GLU outputs are signed, so a node's
//! activity is the absolute value of its output. The layers, in the order the
//! network runs them (steps numbered from 1; the splitter is step 0):
//! every GLU layer of the shared and the step-specific block of each feature
//! transformer (`step<i>.shared<l>`, `step<i>.specific<l>`; output after its
//! residual sum), each attentive transformer's mask over the attention groups
//! (`step<i>.attentive`), each step's ReLU decision output (`step<i>.decision`)
//! and their sum (`decision`, the latent features).
use crate::data::Dataset;
use crate::error::{invalid, Result};
use crate::model::Model;
use crate::msg;
use crate::trace::{trace, TransformerTrace};
use tch::{Device, Kind, Tensor};

/// One layer's activity summed per class.
pub struct LayerActivity {
    pub name: String,
    /// (classes, nodes) Σ over the class's rows of |activation|, float64 CPU
    pub sums: Tensor,
}

fn transformer_layers(prefix: &str, t: &TransformerTrace, out: &mut Vec<(String, Tensor)>) {
    for (l, g) in t.shared.iter().enumerate() {
        out.push((
            format!("{prefix}.shared{}", l + 1),
            g.output.shallow_clone(),
        ));
    }
    for (l, g) in t.specific.iter().enumerate() {
        out.push((
            format!("{prefix}.specific{}", l + 1),
            g.output.shallow_clone(),
        ));
    }
}

/// Activity of rows `start .. start + classes.len()` of `data` summed per
/// class: `classes[i]` in `0..n_classes` is row i's class.
pub fn activity(
    model: &Model,
    data: &Dataset,
    start: i64,
    classes: &[i64],
    n_classes: i64,
) -> Result<Vec<LayerActivity>> {
    let net = model.supervised()?;
    let len = classes.len() as i64;
    data.check_rows(start, len)?;
    if let Some(c) = classes.iter().find(|&&c| c < 0 || c >= n_classes) {
        return invalid(msg!(
            "Class {class} is not one of the {n} classes.",
            class = *c,
            n = n_classes
        ));
    }
    Ok(crate::runtime::on_pool(|| {
        let tr = trace(net, &data.slice(start, len));
        let dev = tr.output.device();
        let kind = tr.output.kind();
        let mut layers = Vec::new();
        transformer_layers("step0", &tr.splitter, &mut layers);
        for (i, s) in tr.steps.iter().enumerate() {
            let p = format!("step{}", i + 1);
            layers.push((format!("{p}.attentive"), s.mask.shallow_clone()));
            transformer_layers(&p, &s.transformer, &mut layers);
            layers.push((format!("{p}.decision"), s.decision.shallow_clone()));
        }
        layers.push(("decision".to_string(), tr.decision.shallow_clone()));
        // (C, B) indicator of each row's class: its product sums per class
        let onehot = Tensor::of_slice(classes)
            .to_device(dev)
            .one_hot(n_classes)
            .to_kind(kind)
            .tr();
        layers
            .into_iter()
            .map(|(name, a)| LayerActivity {
                name,
                sums: onehot
                    .mm(&a.abs())
                    .to_kind(Kind::Double)
                    .to_device(Device::Cpu),
            })
            .collect()
    }))
}

/// The encoder's aggregated decision output `Σ_i ReLU(d_i)` (the input of the
/// head; n_d latent features per row) for rows `start .. start + len`,
/// float64 on the CPU.
pub fn latent(model: &Model, data: &Dataset, start: i64, len: i64) -> Result<Tensor> {
    let net = model.supervised()?;
    data.check_rows(start, len)?;
    Ok(crate::runtime::on_pool(|| {
        trace(net, &data.slice(start, len))
            .decision
            .to_kind(Kind::Double)
            .to_device(Device::Cpu)
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{NetConfig, Task};
    use crate::encoder::Backend;
    use crate::test_data::normal;

    fn setup() -> (Model, Dataset, Vec<i32>) {
        tch::manual_seed(11);
        let cfg = NetConfig::example(4, vec![2], Task::Classification);
        let m = Model::new(cfg, Device::Cpu).unwrap();
        let x = normal(&[4, 60], 21);
        let cols: Vec<Vec<f64>> = (0..4).map(|j| Vec::<f64>::from(&x.get(j))).collect();
        let y: Vec<i32> = (0..60).map(|i| (cols[0][i] > 0.0) as i32).collect();
        let d = Dataset::classes_example(&m.cfg, &cols, &y).unwrap();
        (m, d, y)
    }

    #[test]
    fn activity_sums_absolute_outputs_per_class() {
        let (m, d, y) = setup();
        let classes: Vec<i64> = y.iter().map(|&c| c as i64).collect();
        let acts = activity(&m, &d, 0, &classes, 2).unwrap();
        // 3 steps x (attentive, 2 shared, 2 specific, decision) + splitter's 4 + sum
        assert_eq!(acts.len(), 3 * 6 + 4 + 1);
        assert_eq!(acts[0].name, "step0.shared1");
        let last = acts.last().unwrap();
        assert_eq!(last.name, "decision");
        // brute force on the latent features: Σ over each class's rows, by loop
        let lat = latent(&m, &d, 0, 60).unwrap();
        for c in 0..2i64 {
            for j in 0..8i64 {
                let want: f64 = (0..60)
                    .filter(|&i| classes[i as usize] == c)
                    .map(|i| lat.double_value(&[i, j]).abs())
                    .sum();
                let got = last.sums.double_value(&[c, j]);
                // float32 sums of ≤ 60 O(1) terms: relative error ≤ 60·2^-24
                assert!((got - want).abs() <= 1e-5 * (1.0 + want), "{got} vs {want}");
            }
        }
        // attentive masks sum to 1 per row: their class sums total the class counts
        let att = &acts[4];
        assert_eq!(att.name, "step1.attentive");
        let n1 = classes.iter().filter(|&&c| c == 1).count() as f64;
        let tot = att.sums.get(1).sum(Kind::Double).double_value(&[]);
        assert!((tot - n1).abs() < 1e-4, "{tot} vs {n1}");
        assert!(activity(&m, &d, 0, &[2], 2).is_err());
    }

    #[test]
    fn latent_features_feed_the_head() {
        let (m, d, _) = setup();
        let net = m.supervised().unwrap();
        let lat = latent(&m, &d, 10, 20).unwrap();
        let (out, _, _) = tch::no_grad(|| net.forward(&d.slice(10, 20), false, Backend::Autograd));
        let via = lat.to_kind(Kind::Float).linear::<Tensor>(&net.head, None);
        assert!((via - out).abs().max().double_value(&[]) < 1e-4);
    }
}
