//! Virtual batches of a training batch and the parallel tasks they are grouped into.
use super::MAX_SPLIT;

/// Rows per parallel task (at least).
pub(crate) const TASK_ROWS: usize = 2048;

/// Which rows make up each virtual batch of a training batch, and how the
/// virtual batches are grouped into parallel tasks.
#[derive(Debug, Clone)]
pub struct Chunks {
    pub rows: usize,
    /// number of equal chunks and their size
    pub k: usize,
    pub c: usize,
    /// the remainder chunk (start row, length); length 0 if none
    pub rest: (usize, usize),
    /// equal chunks per task
    pub group: usize,
}

impl Chunks {
    /// The layout of virtual batches of the given sizes, in row order: equal
    /// ones first, then at most one of another size.
    pub fn from_sizes(sizes: &[i64]) -> Chunks {
        let rows = sizes.iter().sum::<i64>() as usize;
        let c = sizes[0] as usize;
        let k = sizes.iter().take_while(|&&s| s as usize == c).count();
        // tasks of at least TASK_ROWS rows (fewer, larger products), but up
        // to MAX_SPLIT tasks (fixed by the shape, never by the threads)
        let group = TASK_ROWS.div_ceil(c).min(k.div_ceil(MAX_SPLIT)).max(1);
        Chunks {
            rows,
            k,
            c,
            rest: (k * c, rows - k * c),
            group,
        }
    }

    #[cfg(test)]
    pub fn count(&self) -> usize {
        self.k + usize::from(self.rest.1 > 0)
    }

    /// Rows of chunk `i`: (first row, count).
    pub fn rows_of(&self, i: usize) -> (usize, usize) {
        if i < self.k {
            (i * self.c, self.c)
        } else {
            (self.rest.0, self.rest.1)
        }
    }

    /// Tasks as ranges of chunk indices.
    pub fn tasks(&self) -> Vec<std::ops::Range<usize>> {
        let mut t: Vec<_> = (0..self.k)
            .step_by(self.group)
            .map(|i| i..(i + self.group).min(self.k))
            .collect();
        if self.rest.1 > 0 {
            t.push(self.k..self.k + 1);
        }
        t
    }

    /// Rows covered by a task: (first row, count).
    pub fn task_rows(&self, t: &std::ops::Range<usize>) -> (usize, usize) {
        let (first, _) = self.rows_of(t.start);
        let (last, n) = self.rows_of(t.end - 1);
        (first, last + n - first)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_cover_every_row_once() {
        // the layouts of 1000, 1030, 257, 7 and 64 rows (ghost_bn's chunk_sizes)
        for sizes in [
            vec![125i64; 8],
            [vec![115; 8], vec![110]].concat(),
            vec![86, 86, 85],
            vec![3, 4],
            vec![64],
        ] {
            let c = Chunks::from_sizes(&sizes);
            let rows = sizes.iter().sum::<i64>() as usize;
            let mut seen = vec![0; rows];
            for i in 0..c.count() {
                let (f, n) = c.rows_of(i);
                for r in 0..n {
                    seen[f + r] += 1;
                }
            }
            assert!(seen.iter().all(|&v| v == 1), "sizes {sizes:?}");
            let mut covered = 0;
            for t in c.tasks() {
                let (f, n) = c.task_rows(&t);
                assert_eq!(f, covered);
                covered += n;
            }
            assert_eq!(covered, rows);
        }
    }
}
