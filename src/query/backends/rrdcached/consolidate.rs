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
//! | `CounterIncrease` / `CounterRate` | rows hold counter values (a counter stored as GAUGE): the model's rule over the rows in `[t − step, t]`: consecutive deltas, a decrease counting the new value, fewer than two rows: none |

use crate::query::grid::TimeGrid;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum How {
    Mean,
    Min,
    Max,
    Last,
    Rate,
    Increase,
    CounterRate,
    CounterIncrease,
}

/// `rows`: `(t seconds, value)` ascending at resolution `resolution_s`.
/// Returns `(grid point ms, value)` ascending, only points with a value.
pub fn consolidate(rows: &[(i64, Option<f64>)], resolution_s: i64, grid: &TimeGrid, how: How) -> Vec<(i64, f64)> {
    let mut out = Vec::with_capacity(grid.len());
    if matches!(how, How::CounterRate | How::CounterIncrease) {
        return counter_growth(rows, grid, how == How::CounterRate);
    }
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
            How::CounterRate | How::CounterIncrease => f64::NAN,
        }
    }
}

/// The model's `increase` over counter values: rows in `[t − step, t]`.
fn counter_growth(rows: &[(i64, Option<f64>)], grid: &TimeGrid, rate: bool) -> Vec<(i64, f64)> {
    let known: Vec<(i64, f64)> =
        rows.iter().filter_map(|&(t, v)| Some((t.checked_mul(1000)?, v?))).filter(|(_, v)| v.is_finite()).collect();
    let mut out = Vec::new();
    let mut lo = 0;
    for t in grid.points() {
        let from = t - grid.step_ms;
        while lo < known.len() && known[lo].0 < from {
            lo += 1;
        }
        let mut growth = 0.0;
        let mut n = 0;
        let mut prev: Option<f64> = None;
        for &(_, v) in known[lo..].iter().take_while(|(ts, _)| *ts <= t) {
            if let Some(p) = prev {
                growth += if v >= p { v - p } else { v };
            }
            prev = Some(v);
            n += 1;
        }
        if n >= 2 {
            out.push((t, if rate { growth / grid.step_seconds() } else { growth }));
        }
    }
    out
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

    #[test]
    fn counter_values_follow_the_model() {
        let g = grid(0, 240, 120);
        // Samples at 0, 60, ..., 240; a reset at 180 (value 5 after 30).
        let rows = vec![(0, Some(10.0)), (60, Some(20.0)), (120, Some(30.0)), (180, Some(5.0)), (240, Some(15.0))];
        assert_eq!(consolidate(&rows, 60, &g, How::CounterIncrease), vec![(120_000, 20.0), (240_000, 15.0)]);
        assert_eq!(consolidate(&rows, 60, &g, How::CounterRate), vec![(120_000, 20.0 / 120.0), (240_000, 15.0 / 120.0)]);
        // One row in the window: nothing.
        assert_eq!(consolidate(&[(240, Some(1.0))], 60, &g, How::CounterIncrease), vec![]);
    }
}
