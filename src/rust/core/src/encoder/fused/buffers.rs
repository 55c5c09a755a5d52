//! The training tape's whole-batch activations, recycled from one batch to the
//! next. A TabNet-S batch (16,384 rows) keeps about 280 MB of them; freshly
//! allocated each batch they came straight from the kernel, and the first
//! write of each page faulted (measured: 5,000 faults and ~5 % of a training
//! step's CPU time, most of it inside the forward's products). A tape takes
//! its buffers here and hands them back when it is dropped; the next batch's
//! tape takes them again, the next epoch's too (an epoch's shorter last batch
//! uses the larger buffers, so they stay). The trainer empties the store when
//! training ends ([`crate::trainer::Trainer::release`]).
//!
//! Only tensors that never leave the tape are recycled (ẑ, the layers'
//! outputs, masks, priors, masked inputs); the autograd leaves are always new.
//! A buffer is owned by one tape at a time: `take` removes it from the store.
//! Its contents are whatever the last tape left, exactly like a new
//! uninitialised tensor: the pass writes every value before reading it.
use crate::kernels::empty;
use std::sync::{Arc, Mutex};
use tch::Tensor;

#[derive(Default)]
pub(crate) struct TapeBuffers {
    free: Mutex<Free>,
}

/// The free buffers, and the most buffers one tape has handed back.
#[derive(Default)]
struct Free {
    buffers: Vec<Tensor>,
    most: usize,
}

impl std::fmt::Debug for TapeBuffers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TapeBuffers({} held)", self.free().buffers.len())
    }
}

impl TapeBuffers {
    fn free(&self) -> std::sync::MutexGuard<'_, Free> {
        self.free.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A (rows, cols) f32 CPU tensor, and the whole buffer it views (to hand
    /// back): the smallest free buffer that is large enough, else a new one.
    pub fn take(&self, rows: usize, cols: usize) -> (Tensor, Tensor) {
        let numel = rows * cols;
        let found = {
            let free = &mut self.free().buffers;
            let best = free
                .iter()
                .enumerate()
                .filter(|(_, t)| t.numel() >= numel)
                .min_by_key(|(_, t)| t.numel())
                .map(|(i, _)| i);
            best.map(|i| free.swap_remove(i))
        };
        match found {
            Some(whole) => {
                let t = whole
                    .view([-1])
                    .narrow(0, 0, numel as i64)
                    .view([rows as i64, cols as i64]);
                (t, whole)
            }
            None => {
                let t = empty(rows, cols);
                (t.shallow_clone(), t)
            }
        }
    }

    /// Hands back a dropped tape's buffers (as `take` gave them). The store
    /// keeps as many as the most one tape has handed back: the largest ones,
    /// which serve any batch up to that size (with two tapes alive at once,
    /// the second one's are partly dropped).
    pub fn give(&self, buffers: Vec<Tensor>) {
        let mut free = self.free();
        free.most = free.most.max(buffers.len());
        let keep = free.most;
        free.buffers.extend(buffers);
        free.buffers.sort_by_key(|t| std::cmp::Reverse(t.numel()));
        free.buffers.truncate(keep);
    }

    /// Frees every buffer held.
    pub fn clear(&self) {
        let old = std::mem::take(&mut *self.free());
        drop(old);
    }

    /// Values held (for tests).
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.free().buffers.iter().map(|t| t.numel()).sum()
    }
}

/// The tape's buffers: taken from the encoder's [`TapeBuffers`], and handed
/// back when the tape (or a pass that never made one) is dropped.
pub(super) struct Buffers {
    store: Arc<TapeBuffers>,
    owned: Vec<Tensor>,
}

impl Buffers {
    pub(super) fn new(store: Arc<TapeBuffers>) -> Buffers {
        Buffers {
            store,
            owned: Vec::new(),
        }
    }

    pub(super) fn take(&mut self, rows: usize, cols: usize) -> Tensor {
        let (t, whole) = self.store.take(rows, cols);
        self.owned.push(whole);
        t
    }
}

impl Drop for Buffers {
    fn drop(&mut self) {
        self.store.give(std::mem::take(&mut self.owned));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_are_reused_best_fit_and_the_store_keeps_one_tape() {
        let store = TapeBuffers::default();
        let (a, whole_a) = store.take(4, 6);
        let (b, whole_b) = store.take(2, 5);
        let (pa, pb) = (a.data_ptr(), b.data_ptr());
        assert_eq!(store.held(), 0);
        store.give(vec![whole_a, whole_b]);
        assert_eq!(store.held(), 34);
        // another shape of the same size: the same buffer, as a view
        let (c, whole_c) = store.take(6, 4);
        assert_eq!((c.size(), c.data_ptr()), (vec![6, 4], pa));
        // a smaller request gets the smallest buffer that holds it (a prefix)
        let (d, whole_d) = store.take(3, 3);
        assert_eq!((d.size(), d.data_ptr()), (vec![3, 3], pb));
        assert_eq!(whole_d.numel(), 10);
        // taken means gone: nothing left, so the next one is new
        let (e, whole_e) = store.take(1, 2);
        assert!(e.data_ptr() != pa && e.data_ptr() != pb);
        // given back: the store keeps as many as one tape has handed back
        // (three here), the largest ones
        store.give(vec![whole_c, whole_d, whole_e]);
        assert_eq!(store.held(), 24 + 10 + 2);
        let (_, w1) = store.take(1, 1);
        store.give(vec![w1]);
        assert_eq!(store.held(), 24 + 10 + 2);
        // a second tape alive at the same time: the smallest are dropped
        let (_, w2) = store.take(6, 4);
        let (_, w3) = store.take(5, 5);
        store.give(vec![w2]);
        store.give(vec![w3]);
        assert_eq!(store.held(), 25 + 24 + 10);
        store.clear();
        assert_eq!(store.held(), 0);
    }
}
