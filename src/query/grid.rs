//! The time grid of a render (DESIGN §7.1): aligned `start`, `end` and `step`.

use serde::Serialize;

/// A render's grid. Invariants (enforced by [`TimeGrid::new`]): `step_ms ≥ 1000`,
/// `start_ms` and `end_ms` are multiples of `step_ms` (aligned down from the epoch),
/// `start_ms < end_ms`.
///
/// The points are `t = start + k·step` for `k = 1 ..= (end − start)/step`, i.e.
/// `start < t ≤ end`; the point at `t` covers the bucket `(t − step, t]`.
/// The first bucket therefore begins at `start` (exclusive), the last ends at `end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct TimeGrid {
    pub start_ms: i64,
    pub end_ms: i64,
    pub step_ms: i64,
}

/// Why a grid cannot be built (HTTP 400, naming the field).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GridError {
    #[error("step: {step_ms} ms is below the minimum of 1s")]
    StepTooSmall { step_ms: i64 },
    #[error("step: {step_ms} ms is not a whole number of seconds")]
    StepNotWholeSeconds { step_ms: i64 },
    #[error("end: {end_ms} is not after start {start_ms} once both are aligned down to the step ({step_ms} ms)")]
    Empty { start_ms: i64, end_ms: i64, step_ms: i64 },
}

impl TimeGrid {
    /// Aligns `start` and `end` down to a multiple of `step` and checks the result.
    pub fn new(start_ms: i64, end_ms: i64, step_ms: i64) -> Result<TimeGrid, GridError> {
        if step_ms < 1000 {
            return Err(GridError::StepTooSmall { step_ms });
        }
        if step_ms % 1000 != 0 {
            return Err(GridError::StepNotWholeSeconds { step_ms });
        }
        let start = start_ms.div_euclid(step_ms) * step_ms;
        let end = end_ms.div_euclid(step_ms) * step_ms;
        if end <= start {
            return Err(GridError::Empty { start_ms, end_ms, step_ms });
        }
        Ok(TimeGrid { start_ms: start, end_ms: end, step_ms })
    }

    /// Number of points: `(end − start) / step`.
    pub fn len(&self) -> usize {
        ((self.end_ms - self.start_ms) / self.step_ms) as usize
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The timestamp of point `k` (0-based): `start + (k + 1)·step`.
    pub fn point(&self, k: usize) -> i64 {
        self.start_ms + (k as i64 + 1) * self.step_ms
    }

    /// Every point's timestamp, ascending.
    pub fn points(&self) -> impl Iterator<Item = i64> + '_ {
        (0..self.len()).map(|k| self.point(k))
    }

    /// Index of the point whose timestamp is exactly `t`, if `t` is on the grid.
    pub fn index_of_point(&self, t: i64) -> Option<usize> {
        if t <= self.start_ms || t > self.end_ms || (t - self.start_ms) % self.step_ms != 0 {
            return None;
        }
        Some(((t - self.start_ms) / self.step_ms - 1) as usize)
    }

    /// Index of the bucket `(t − step, t]` that contains the sample time `ts`.
    pub fn bucket_of(&self, ts: i64) -> Option<usize> {
        if ts <= self.start_ms || ts > self.end_ms {
            return None;
        }
        // ceil((ts − start) / step) − 1
        Some(((ts - self.start_ms + self.step_ms - 1) / self.step_ms - 1) as usize)
    }

    pub fn step_seconds(&self) -> f64 {
        self.step_ms as f64 / 1000.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligns_down_and_counts_points() {
        let g = TimeGrid::new(3_599_999, 7_260_001, 60_000).unwrap();
        assert_eq!((g.start_ms, g.end_ms), (3_540_000, 7_260_000));
        assert_eq!(g.len(), 62);
        assert_eq!(g.point(0), 3_600_000);
        assert_eq!(g.points().last(), Some(7_260_000));
        assert_eq!(g.index_of_point(3_600_000), Some(0));
        assert_eq!(g.index_of_point(3_540_000), None);
        assert_eq!(g.index_of_point(3_600_001), None);
        // bucket (t - step, t]
        assert_eq!(g.bucket_of(3_540_001), Some(0));
        assert_eq!(g.bucket_of(3_600_000), Some(0));
        assert_eq!(g.bucket_of(3_600_001), Some(1));
        assert_eq!(g.bucket_of(3_540_000), None);
        assert_eq!(g.bucket_of(7_260_001), None);
    }

    #[test]
    fn rejects_bad_grids() {
        assert!(matches!(TimeGrid::new(0, 10_000, 999), Err(GridError::StepTooSmall { .. })));
        assert!(matches!(TimeGrid::new(0, 10_000, 1500), Err(GridError::StepNotWholeSeconds { .. })));
        assert!(matches!(TimeGrid::new(61_000, 119_000, 60_000), Err(GridError::Empty { .. })));
        // negative times align down too
        let g = TimeGrid::new(-1, 60_000, 60_000).unwrap();
        assert_eq!(g.start_ms, -60_000);
    }
}
