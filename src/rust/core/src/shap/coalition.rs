//! Mixing explained rows with background rows per coalition, on the host,
//! into one data set per forward chunk: for a job (row i, coalition z) and
//! every background row b, each column comes from row i when its player is
//! in z, else from b. The columns of one player (a factor's code, whose
//! embedding columns follow it; every predictor of a feature group) and
//! their presence flags move together.
use crate::config::NetConfig;
use crate::data::Dataset;
use crate::error::{invalid, Result};
use crate::model::Model;
use crate::msg;
use tch::{Device, Kind, Tensor};

/// Rows copied to the host: numeric (n × pn), codes (n × pc), presence (n × F).
struct Host {
    n: usize,
    num: Vec<f32>,
    cat: Vec<i64>,
    present: Option<Vec<f32>>,
}

impl Host {
    fn new(d: &Dataset) -> Host {
        let flat_f = |t: &Tensor| {
            Vec::<f32>::from(
                &t.to_device(Device::Cpu)
                    .to_kind(Kind::Float)
                    .contiguous()
                    .view([-1]),
            )
        };
        Host {
            n: d.n as usize,
            num: flat_f(&d.x_num),
            cat: d
                .x_cat
                .as_ref()
                .map(|t| {
                    Vec::<i64>::from(
                        &t.to_device(Device::Cpu)
                            .to_kind(Kind::Int64)
                            .contiguous()
                            .view([-1]),
                    )
                })
                .unwrap_or_default(),
            present: d.present.as_ref().map(flat_f),
        }
    }
}

pub struct Mixer {
    /// Original predictor indices of each player.
    pub players: Vec<Vec<usize>>,
    num_player: Vec<usize>,
    cat_player: Vec<usize>,
    col_player: Vec<usize>,
    pn: usize,
    pc: usize,
    f: usize,
    x: Host,
    bg: Host,
    /// Presence flags are carried when either side has a missing cell.
    with_present: bool,
}

impl Mixer {
    pub fn new(
        cfg: &NetConfig,
        x: &Dataset,
        bg: &Dataset,
        players: Vec<Vec<usize>>,
    ) -> Result<Mixer> {
        let f = cfg.n_features();
        let mut col_player = vec![usize::MAX; f];
        for (j, members) in players.iter().enumerate() {
            if members.is_empty() {
                return invalid(msg!("Every SHAP player needs at least one predictor."));
            }
            for &c in members {
                if c >= f || col_player[c] != usize::MAX {
                    return invalid(
                        "the SHAP players must partition the predictors (each in exactly one)",
                    );
                }
                col_player[c] = j;
            }
        }
        if col_player.contains(&usize::MAX) {
            return invalid(msg!("The SHAP players must cover every predictor."));
        }
        Ok(Mixer {
            num_player: cfg.num_cols.iter().map(|&c| col_player[c]).collect(),
            cat_player: cfg.cat_cols.iter().map(|&c| col_player[c]).collect(),
            pn: cfg.num_cols.len(),
            pc: cfg.cat_cols.len(),
            f,
            with_present: x.present.is_some() || bg.present.is_some(),
            x: Host::new(x),
            bg: Host::new(bg),
            col_player,
            players,
        })
    }

    pub fn n_rows(&self) -> usize {
        self.x.n
    }

    fn dataset(
        &self,
        model: &Model,
        n: usize,
        num: Vec<f32>,
        cat: Vec<i64>,
        present: Option<Vec<f32>>,
    ) -> Dataset {
        let dev = model.vs.device();
        let put = |t: Tensor| {
            if dev == Device::Cpu {
                t
            } else {
                t.to_device(dev)
            }
        };
        Dataset {
            n: n as i64,
            x_num: put(Tensor::of_slice(&num).view([n as i64, self.pn as i64])),
            x_cat: (self.pc > 0)
                .then(|| put(Tensor::of_slice(&cat).view([n as i64, self.pc as i64]))),
            present: present.map(|p| put(Tensor::of_slice(&p).view([n as i64, self.f as i64]))),
            y: None,
            w: None,
        }
    }

    fn whole(&self, model: &Model, h: &Host) -> Dataset {
        let present = if self.with_present {
            Some(h.present.clone().unwrap_or_else(|| vec![1.0; h.n * self.f]))
        } else {
            None
        };
        self.dataset(model, h.n, h.num.clone(), h.cat.clone(), present)
    }

    /// The explained rows as they are.
    pub fn explained_dataset(&self, model: &Model) -> Dataset {
        self.whole(model, &self.x)
    }

    /// The background rows as they are.
    pub fn background_dataset(&self, model: &Model) -> Dataset {
        self.whole(model, &self.bg)
    }

    /// One data set of rows.len() × m rows: job t (row `rows[t]`, coalition
    /// `masks[t·p..(t+1)·p]`) mixed with every background row, background
    /// rows innermost.
    pub fn mix(&self, model: &Model, rows: &[usize], masks: &[bool]) -> Dataset {
        let (pn, pc, f, m) = (self.pn, self.pc, self.f, self.bg.n);
        let p = self.players.len();
        let n = rows.len() * m;
        let mut num = Vec::with_capacity(n * pn);
        let mut cat = Vec::with_capacity(n * pc);
        let mut present = if self.with_present {
            Vec::with_capacity(n * f)
        } else {
            Vec::new()
        };
        let mut num_cols = Vec::with_capacity(pn);
        let mut cat_cols = Vec::with_capacity(pc);
        let mut pres_cols = Vec::with_capacity(f);
        for (t, &i) in rows.iter().enumerate() {
            let z = &masks[t * p..(t + 1) * p];
            num_cols.clear();
            num_cols.extend((0..pn).filter(|&k| z[self.num_player[k]]));
            cat_cols.clear();
            cat_cols.extend((0..pc).filter(|&k| z[self.cat_player[k]]));
            let xn = &self.x.num[i * pn..(i + 1) * pn];
            let xc = &self.x.cat[i * pc..(i + 1) * pc];
            for b in 0..m {
                let start = num.len();
                num.extend_from_slice(&self.bg.num[b * pn..(b + 1) * pn]);
                for &k in &num_cols {
                    num[start + k] = xn[k];
                }
                let start = cat.len();
                cat.extend_from_slice(&self.bg.cat[b * pc..(b + 1) * pc]);
                for &k in &cat_cols {
                    cat[start + k] = xc[k];
                }
            }
            if self.with_present {
                pres_cols.clear();
                pres_cols.extend((0..f).filter(|&c| z[self.col_player[c]]));
                for b in 0..m {
                    let start = present.len();
                    match &self.bg.present {
                        Some(bp) => present.extend_from_slice(&bp[b * f..(b + 1) * f]),
                        None => present.extend(std::iter::repeat_n(1.0f32, f)),
                    }
                    for &c in &pres_cols {
                        present[start + c] =
                            self.x.present.as_ref().map_or(1.0, |xp| xp[i * f + c]);
                    }
                }
            }
        }
        self.dataset(model, n, num, cat, self.with_present.then_some(present))
    }
}
