//! RRD rows → one value per grid point. Pure.
//!
//! A row at `t` of an archive with resolution `r` covers `(t − r, t]`, like a
//! grid bucket; the step is a multiple of `r` and both are aligned to the
//! epoch, so every row lies in exactly one bucket. Per bucket, over its known
//! rows (an unknown row — RRD's NaN — takes no part; a bucket without a known
//! row has no value):
//!
//! | how | value |
//! |---|---|
//! | `Mean` | arithmetic mean (AVERAGE rows: RRD's own AVERAGE consolidation with every row weighted alike) |
//! | `Min` / `Max` | smallest / largest |
//! | `Last` | the latest |
//! | `Increase` | rows hold per-second rates (DERIVE/COUNTER): `Σ rate·r`, the growth the known rows saw, no extrapolation |
//! | `Rate` | `Increase / step` |
//!
//! (A counter stored as GAUGE keeps counter values: its rows go to the neutral
//! layer as samples, which computes `rate`/`increase` by the model's rule.)

use crate::query::grid::TimeGrid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    Mean,
    Min,
    Max,
    Last,
    Rate,
    Increase,
}

/// `rows`: `(t seconds, value)` ascending at resolution `resolution_s`.
/// Returns `(grid point ms, value)` ascending, only points with a value.
pub fn consolidate(rows: &[(i64, Option<f64>)], resolution_s: i64, grid: &TimeGrid, how: How) -> Vec<(i64, f64)> {
    let mut out = Vec::with_capacity(grid.len());
    let mut current: Option<(usize, Acc)> = None;
    for &(t, v) in rows {
        let Some(v) = v else { continue };
        let Some(bucket) = t.checked_mul(1000).and_then(|ms| grid.bucket_of(ms)) else { continue };
        match &mut current {
            Some((b, acc)) if *b == bucket => acc.add(v),
            _ => {
                if let Some((b, acc)) = current.take() {
                    out.push((grid.point(b), acc.value(how, resolution_s, grid)));
                }
                current = Some((bucket, Acc::new(v)));
            }
        }
    }
    if let Some((b, acc)) = current {
        out.push((grid.point(b), acc.value(how, resolution_s, grid)));
    }
    out
}

#[derive(Debug, Clone, Copy)]
struct Acc {
    sum: f64,
    min: f64,
    max: f64,
    last: f64,
    count: u32,
}

impl Acc {
    fn new(v: f64) -> Acc {
        Acc { sum: v, min: v, max: v, last: v, count: 1 }
    }

    fn add(&mut self, v: f64) {
        self.sum += v;
        self.min = self.min.min(v);
        self.max = self.max.max(v);
        self.last = v;
        self.count += 1;
    }

    fn value(&self, how: How, resolution_s: i64, grid: &TimeGrid) -> f64 {
        match how {
            How::Mean => self.sum / f64::from(self.count),
            How::Min => self.min,
            How::Max => self.max,
            How::Last => self.last,
            How::Increase => self.sum * resolution_s as f64,
            How::Rate => self.sum * resolution_s as f64 / grid.step_seconds(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grid(start_s: i64, end_s: i64, step_s: i64) -> TimeGrid {
        TimeGrid::new(start_s * 1000, end_s * 1000, step_s * 1000).unwrap()
    }

    #[test]
    fn rows_fall_in_the_bucket_they_end_in() {
        let g = grid(600, 1200, 300);
        // Rows at 660..1200 (resolution 60): buckets (600, 900] and (900, 1200].
        let rows: Vec<(i64, Option<f64>)> = (11..=20).map(|k| (k * 60, Some(k as f64))).collect();
        assert_eq!(consolidate(&rows, 60, &g, How::Mean), vec![(900_000, 13.0), (1_200_000, 18.0)]);
        assert_eq!(consolidate(&rows, 60, &g, How::Min), vec![(900_000, 11.0), (1_200_000, 16.0)]);
        assert_eq!(consolidate(&rows, 60, &g, How::Max), vec![(900_000, 15.0), (1_200_000, 20.0)]);
        assert_eq!(consolidate(&rows, 60, &g, How::Last), vec![(900_000, 15.0), (1_200_000, 20.0)]);
        // A row at the grid start belongs to the bucket before the grid.
        assert_eq!(consolidate(&[(600, Some(1.0))], 60, &g, How::Mean), vec![]);
    }

    #[test]
    fn unknown_rows_take_no_part_and_empty_buckets_are_absent() {
        let g = grid(0, 360, 120);
        let rows = vec![(60, None), (120, Some(4.0)), (180, None), (240, None), (300, Some(1.0)), (360, Some(3.0))];
        assert_eq!(consolidate(&rows, 60, &g, How::Mean), vec![(120_000, 4.0), (360_000, 2.0)]);
    }

    #[test]
    fn rates_sum_what_the_known_rows_saw() {
        let g = grid(0, 300, 300);
        let rows: Vec<(i64, Option<f64>)> = (1..=5).map(|k| (k * 60, Some(0.5))).collect();
        assert_eq!(consolidate(&rows, 60, &g, How::Increase), vec![(300_000, 150.0)]);
        assert_eq!(consolidate(&rows, 60, &g, How::Rate), vec![(300_000, 0.5)]);
        // Two known rows of five: the growth they saw, over the whole step.
        let partial = vec![(60, None), (120, None), (180, None), (240, Some(0.5)), (300, Some(0.5))];
        assert_eq!(consolidate(&partial, 60, &g, How::Rate), vec![(300_000, 0.2)]);
    }
}
