//! Normalize and validate as one stateless stage, with the verdict of their
//! label-only checks kept per series (issue #17 item 1).
//!
//! Most of what the two stages decide depends on a sample's labels alone:
//! the cleaned, sorted, relabeled label set (or a drop), the label limits,
//! the registry entry, whether the registry allows the labels. A series
//! repeats its labels in every sample, so that verdict is worked out once per
//! series and looked up afterwards, keyed by a 128-bit digest of the labels
//! as the receiver decoded them. What depends on the sample stays per sample,
//! in the same order as in [`Validate`]: the timestamp window, the type
//! (against the registry or the first type seen for the name) and
//! non-finite values. Drops are counted per sample under the same stage and
//! reason as without the cache; the cache changes nothing a sender or a
//! counter can see. Cardinality decisions are never cached (they live in the
//! shards).
//!
//! The stage also hands on each kept sample's series hash (the digest of
//! its final, sorted labels), so the shard split neither sorts nor hashes.
//!
//! The cache is bounded: at most [`VERDICT_CACHE_MAX_SERIES`] (or the
//! pipeline's `cardinality.max_series`, if lower) series, in
//! [`CACHE_SHARDS`] parts; a full part is emptied and fills again from the
//! samples that follow (they are then worked out once more).
//!
//! The usual verdict — keep the labels as decoded — is also written into the
//! labels' shared part when a decoder shared them (a [`SharedPart::note`]),
//! so a series seen before is resolved from the cache line its labels
//! already brought in, without a lookup in the cache (which, at 200,000
//! series, costs a cache miss per sample). See [`Note`].

use std::sync::atomic::{AtomicU32, Ordering};

use parking_lot::RwLock;

use super::relabel::Scratch;
use super::validate::{NameMemo, check_allowed_labels};
use super::{Normalize, SeriesMap, Validate};
use crate::model::{Labels, MetricKind, Sample, SharedPart, now_ms};
use crate::pipeline::{DropTally, StatelessStage};
use crate::telemetry::{DropReason, Stage};

/// Most series whose verdicts one pipeline keeps.
pub const VERDICT_CACHE_MAX_SERIES: u64 = 1 << 18;
/// Independently locked parts of the cache.
const CACHE_SHARDS: usize = 32;
/// Worst-case bytes of one cached verdict: its slot in a just-grown table
/// (7 of 16 buckets in use; 8 key bytes, 64 value bytes, one control byte).
pub const VERDICT_BYTES: u64 = (73 * 16u64).div_ceil(7);

/// What the label-only checks decided for one series.
#[derive(Clone)]
enum Verdict {
    /// Every sample of the series goes, for this reason.
    Drop(Stage, DropReason),
    Keep(Kept),
}

#[derive(Clone)]
struct Kept {
    /// The final labels when normalize changed them (shared, so a copy is a
    /// reference count); `None` when the decoded labels are already final.
    labels: Option<Labels>,
    /// Series hash of the final labels.
    hash: u64,
    /// A label-only drop that validate applies after the timestamp window
    /// (unknown metric, label not allowed), so a sample outside the window
    /// is counted as such first, as without the cache.
    after_window: Option<DropReason>,
    /// The metric's type: the registry's, or for a metric outside the
    /// registry the first type seen for its name (it never changes once
    /// seen). `None` while a metric outside the registry has no type yet.
    kind: Option<MetricKind>,
    /// [`Validate::typed_epoch`] when `kind` was read: while it is the same,
    /// no name got a type since, so an untyped sample needs no lookup.
    typed_epoch: usize,
}

#[derive(Clone)]
struct Cached {
    /// The digest's other half: a key collision is detected, not trusted.
    check: u64,
    verdict: Verdict,
}

/// Normalize → validate, with per-series verdicts (see the module docs).
pub struct Resolve {
    normalize: Normalize,
    validate: Validate,
    shards: Box<[RwLock<SeriesMap<Cached>>]>,
    per_shard: usize,
    /// This instance's number in the notes it writes; `None` once the process
    /// has built more instances than a note can number (it then uses the cache only).
    owner: Option<u64>,
}

/// Resolve instances built so far in the process (every pipeline, every reload).
static INSTANCES: AtomicU32 = AtomicU32::new(0);

/// A kept verdict whose labels are final as decoded, as the 64-bit note of
/// the labels' shared part ([`SharedPart::note`]):
///
/// | bits | what |
/// |---|---|
/// | 0–7 | `after_window`: 0 none, else 1 + the reason's index in [`DropReason::ALL`] |
/// | 8–11 | `kind`: 0 none, else 1 + [`kind_index`] |
/// | 12–31 | `typed_epoch` (a verdict read at a later epoch is not noted) |
/// | 32–55 | the writer: its [`Resolve::owner`] |
///
/// The series hash is the part's own ([`SharedPart::series_hash`]): labels
/// final as decoded hash the same. A note is one atomic word, so it is read
/// whole or not at all. Two pipelines fed the same labels would overwrite
/// each other's notes on every sample; so the later-built instance (a reload,
/// or simply the other pipeline) takes notes over and the earlier one leaves
/// them alone and uses its cache.
struct Note;

impl Note {
    const OWNER_BITS: u32 = 24;
    const EPOCH_LIMIT: usize = 1 << 20;

    fn encode(owner: u64, kept: &Kept) -> Option<u64> {
        if kept.labels.is_some() || kept.typed_epoch >= Self::EPOCH_LIMIT {
            return None;
        }
        let after_window = kept.after_window.map_or(0, |r| 1 + r as u64);
        let kind = kept.kind.map_or(0, |k| 1 + kind_index(k) as u64);
        Some(owner << 32 | (kept.typed_epoch as u64) << 12 | kind << 8 | after_window)
    }

    fn decode(note: u64, part: &SharedPart) -> Option<Kept> {
        let after_window = match (note & 0xff) as usize {
            0 => None,
            r => Some(*DropReason::ALL.get(r - 1)?),
        };
        let kind = match ((note >> 8) & 0xf) as usize {
            0 => None,
            k => Some(*KINDS.get(k - 1)?),
        };
        let typed_epoch = ((note >> 12) & 0xf_ffff) as usize;
        Some(Kept { labels: None, hash: part.series_hash(), after_window, kind, typed_epoch })
    }
}

const KINDS: [MetricKind; 5] =
    [MetricKind::Unspecified, MetricKind::Counter, MetricKind::Gauge, MetricKind::Histogram, MetricKind::Summary];

fn kind_index(kind: MetricKind) -> usize {
    KINDS.iter().position(|k| *k == kind).unwrap_or(0)
}

impl Resolve {
    pub fn new(normalize: Normalize, validate: Validate, max_series: u64) -> Self {
        let capacity = max_series.clamp(1, VERDICT_CACHE_MAX_SERIES) as usize;
        Resolve {
            normalize,
            validate,
            shards: (0..CACHE_SHARDS).map(|_| RwLock::new(SeriesMap::default())).collect(),
            per_shard: capacity.div_ceil(CACHE_SHARDS),
            owner: Some(u64::from(INSTANCES.fetch_add(1, Ordering::Relaxed)) + 1)
                .filter(|&n| n < 1 << Note::OWNER_BITS),
        }
    }

    /// The verdict noted in `part` by this instance, if any.
    #[inline]
    fn noted(&self, part: &SharedPart) -> Option<Kept> {
        let note = part.note();
        if note >> 32 != self.owner? {
            return None;
        }
        Note::decode(note, part)
    }

    /// Notes `kept` in `part`, unless a later instance owns its note or the
    /// verdict cannot be a note. Says whether the part now carries it.
    #[inline]
    fn write_note(&self, part: &SharedPart, kept: &Kept) -> bool {
        let Some(owner) = self.owner else { return false };
        let current = part.note();
        if current >> 32 > owner {
            return false;
        }
        let Some(note) = Note::encode(owner, kept) else { return false };
        if note != current {
            part.set_note(note);
        }
        true
    }

    /// Notes a kept verdict in the labels' part, and keeps the verdict in the
    /// cache only where the note will not be seen again: a part a decoder's
    /// table hands out for every later sample of the series
    /// ([`SharedPart::is_kept`]) carries it for them, so caching it too would
    /// only hold a second copy (about 60 bytes per series).
    fn settle(&self, labels: &Labels, key: u64, check: u64, verdict: &Verdict) {
        let noted = match (verdict, labels.shared_whole()) {
            (Verdict::Keep(kept), Some(part)) => self.write_note(part, kept) && part.is_kept(),
            _ => false,
        };
        if !noted {
            self.remember(key, check, verdict.clone());
        }
    }

    fn shard(&self, key: u64) -> &RwLock<SeriesMap<Cached>> {
        &self.shards[(key >> 59) as usize % CACHE_SHARDS]
    }

    fn lookup(&self, key: u64, check: u64) -> Option<Verdict> {
        let shard = self.shard(key).read();
        shard.get(&key).filter(|c| c.check == check).map(|c| c.verdict.clone())
    }

    fn remember(&self, key: u64, check: u64, verdict: Verdict) {
        let mut shard = self.shard(key).write();
        if shard.len() >= self.per_shard && !shard.contains_key(&key) {
            shard.clear();
        }
        shard.insert(key, Cached { check, verdict });
    }

    /// Works out the verdict of the label-only checks for one label set.
    fn decide(&self, decoded: &Labels, scratch: &mut Scratch) -> Verdict {
        let mut labels = decoded.clone();
        if let Err(reason) = self.normalize.normalize_labels(&mut labels, scratch) {
            let reason = if reason == DropReason::Relabel { reason } else { DropReason::InvalidName };
            return Verdict::Drop(Stage::Normalize, reason);
        }
        labels.sort();
        if let Err(reason) = self.validate.check_labels(&labels) {
            return Verdict::Drop(Stage::Validate, reason);
        }
        let typed_epoch = self.validate.typed_epoch();
        let name = labels.name().unwrap_or("");
        let (after_window, kind) = match self.validate.registered(name) {
            Some(entry) => (check_allowed_labels(entry, &labels).err(), Some(entry.kind())),
            None => (self.validate.check_unknown().err(), self.validate.pinned(name)),
        };
        let hash = labels.series_hash();
        let labels = (labels != *decoded).then(|| labels.share());
        Verdict::Keep(Kept { labels, hash, after_window, kind, typed_epoch })
    }

    /// The per-sample checks, in validate's order, after a kept verdict.
    /// Says whether the name got its type meanwhile (the verdict can then
    /// carry it).
    fn check_sample<'r>(
        &'r self,
        s: &mut Sample,
        kept: &Kept,
        now: i64,
        memo: &mut NameMemo<'r>,
    ) -> Result<Option<MetricKind>, DropReason> {
        self.validate.check_window(s.timestamp_ms, now)?;
        if let Some(reason) = kept.after_window {
            return Err(reason);
        }
        // A type once seen for a name outside the registry holds like a
        // registered one: the same three cases.
        let mut typed = None;
        match kept.kind {
            Some(kind) => self.validate.check_kind_registered(s, kind)?,
            None if s.kind == MetricKind::Unspecified && self.validate.typed_epoch() == kept.typed_epoch => {}
            None => {
                let outcome = self.validate.check_kind_unpinned(s, memo);
                typed = self.validate.pinned(s.name());
                outcome?;
            }
        }
        self.validate.check_value(s)?;
        Ok(typed)
    }
}

/// 128 bits of xxh3 over the labels as decoded (see [`Labels::digest128`];
/// only worked out for a sample whose verdict is not noted): the low half
/// keys the cache, the high half checks the entry.
fn digest(labels: &Labels) -> (u64, u64) {
    let d = labels.digest128();
    (d as u64, (d >> 64) as u64)
}

impl StatelessStage for Resolve {
    fn process(&self, samples: &mut Vec<Sample>, drops: &mut DropTally) {
        let mut hashes = Vec::new();
        self.process_hashed(samples, &mut hashes, drops);
    }

    fn process_hashed(&self, samples: &mut Vec<Sample>, hashes: &mut Vec<u64>, drops: &mut DropTally) -> bool {
        let now = now_ms();
        let mut memo = NameMemo::new();
        let mut scratch = Scratch::default();
        let mut normalize_drops = [0u64; DropReason::ALL.len()];
        let mut validate_drops = [0u64; DropReason::ALL.len()];
        hashes.clear();
        hashes.reserve(samples.len());
        samples.retain_mut(|s| {
            let noted = s.labels.shared_whole().and_then(|part| self.noted(part));
            // Where the verdict is in the cache (not looked up when it was noted).
            let mut cached_at = None;
            let verdict = match noted {
                Some(kept) => Verdict::Keep(kept),
                None => {
                    let (key, check) = digest(&s.labels);
                    cached_at = Some((key, check));
                    match self.lookup(key, check) {
                        Some(verdict) => {
                            if let (Verdict::Keep(kept), Some(part)) = (&verdict, s.labels.shared_whole()) {
                                self.write_note(part, kept);
                            }
                            verdict
                        }
                        None => {
                            let verdict = self.decide(&s.labels, &mut scratch);
                            self.settle(&s.labels, key, check, &verdict);
                            verdict
                        }
                    }
                }
            };
            let kept = match verdict {
                Verdict::Drop(Stage::Normalize, reason) => {
                    normalize_drops[reason as usize] += 1;
                    return false;
                }
                Verdict::Drop(_, reason) => {
                    validate_drops[reason as usize] += 1;
                    return false;
                }
                Verdict::Keep(kept) => kept,
            };
            if let Some(labels) = &kept.labels {
                s.labels = labels.clone();
            }
            match self.check_sample(s, &kept, now, &mut memo) {
                Ok(typed) => {
                    hashes.push(kept.hash);
                    if let Some(kind) = typed {
                        let verdict = Verdict::Keep(Kept { kind: Some(kind), ..kept });
                        match cached_at {
                            Some((key, check)) => self.settle(&s.labels, key, check, &verdict),
                            None => {
                                if let (Verdict::Keep(kept), Some(part)) = (&verdict, s.labels.shared_whole()) {
                                    self.write_note(part, kept);
                                }
                            }
                        }
                    }
                    true
                }
                Err(reason) => {
                    validate_drops[reason as usize] += 1;
                    false
                }
            }
        });
        for reason in DropReason::ALL {
            drops.add(Stage::Normalize, reason, normalize_drops[reason as usize]);
        }
        for reason in DropReason::ALL {
            drops.add(Stage::Validate, reason, validate_drops[reason as usize]);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use figment::providers::Format;

    use super::*;
    use crate::registry::MetricRegistry;

    const REGISTRY: &str = r#"
metrics:
  - key: port.in
    name: port_in_octets_total
    type: counter
    unit: bytes
    labels: [device, port, dc]
  - key: load
    name: load1
    type: gauge
"#;

    fn stages(normalize: &str, validate: &str) -> (Normalize, Validate) {
        let n: crate::pipeline::stages::NormalizeConfig =
            figment::Figment::from(figment::providers::Toml::string(normalize)).extract().expect("normalize config");
        let v: crate::pipeline::stages::ValidateConfig =
            figment::Figment::from(figment::providers::Toml::string(validate)).extract().expect("validate config");
        let registry = Arc::new(MetricRegistry::parse(REGISTRY, Path::new("test.yaml")).expect("registry"));
        (Normalize::new(&n), Validate::new("p", &v, registry))
    }

    /// Label sets and samples that reach every outcome of both stages:
    /// invalid and unsorted names, repeated names, empty values, long values,
    /// too many labels, registered and unknown metrics, labels the registry
    /// does not allow, type conflicts, timestamps outside the window, NaN.
    fn corpus(now: i64) -> Vec<Sample> {
        let label_sets: Vec<Vec<(&str, &str)>> = vec![
            vec![("__name__", "cpu"), ("host", "a")],
            vec![("host", "b"), ("__name__", "cpu")],
            vec![("__name__", "cpu.usage"), ("host-name", "c")],
            vec![("__name__", "cpu"), ("host", "a"), ("host", "b")],
            vec![("__name__", "cpu"), ("empty", ""), ("host", "d")],
            vec![("__name__", "cpu"), ("host", "x")],
            vec![("__name__", "cpu"), ("long", "vvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvvv")],
            vec![("__name__", "cpu"), ("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")],
            vec![("__name__", "port_in_octets_total"), ("device", "r1"), ("port", "1")],
            vec![("__name__", "port_in_octets_total"), ("device", "r1"), ("vlan", "9")],
            vec![("__name__", "load1"), ("host", "a")],
            vec![("__name__", "unknown_thing"), ("host", "a")],
            vec![("host", "nameless")],
            vec![("__name__", "9starts_with_digit"), ("drop_me", "yes")],
            vec![("__name__", "relabel_target"), ("env", "dev")],
            vec![("__name__", "relabel_target"), ("env", "prod")],
        ];
        let kinds = [MetricKind::Unspecified, MetricKind::Counter, MetricKind::Gauge];
        let mut out = Vec::new();
        for round in 0..3i64 {
            for (i, pairs) in label_sets.iter().enumerate() {
                for (k, kind) in kinds.iter().enumerate() {
                    let labels: Labels = pairs.iter().copied().collect();
                    let ts = match (i + k) % 7 {
                        0 => now - 10 * 86_400_000,
                        1 => now + 10 * 86_400_000,
                        _ => now - round * 1000 - k as i64,
                    };
                    let value = match (i + k + round as usize) % 5 {
                        0 => f64::NAN,
                        1 => f64::INFINITY,
                        _ => (i * 10 + k) as f64,
                    };
                    let mut s = Sample::new(labels, value, ts);
                    s.kind = *kind;
                    out.push(s);
                }
            }
        }
        out
    }

    /// What normalize → validate → the shard split's sort and hash decide, without a cache:
    /// the samples kept, their series hashes and the drops.
    fn uncached(n: &Normalize, v: &Validate, mut samples: Vec<Sample>) -> (Vec<Sample>, Vec<u64>, DropTally) {
        let mut drops = DropTally::default();
        n.process(&mut samples, &mut drops);
        v.process(&mut samples, &mut drops);
        let hashes = samples
            .iter_mut()
            .map(|s| {
                s.labels.sort();
                s.labels.series_hash()
            })
            .collect();
        (samples, hashes, drops)
    }

    fn tally(drops: &mut DropTally) -> Vec<(Stage, DropReason, u64)> {
        let mut v: Vec<_> = drops.drain().collect();
        v.sort_by_key(|(s, r, _)| (*s as usize, *r as usize));
        v
    }

    /// The cached stage decides exactly what normalize → validate → the
    /// shard split's sort and hash decide, on first sight and from the cache.
    #[test]
    fn same_samples_hashes_and_drops_as_normalize_then_validate() {
        let configs = [
            ("", ""),
            ("invalid_names = \"reject\"", "max_labels = 3\nmax_label_value_length = 20\nunknown_metrics = \"reject\""),
            (
                "static_labels = { dc = \"east\", host = \"static\" }\nstatic_labels_override = true\n\
                 [[relabel]]\naction = \"drop\"\nsource_labels = [\"env\"]\nregex = \"dev\"\n\
                 [[relabel]]\naction = \"labeldrop\"\nregex = \"drop_me\"\n\
                 [[relabel]]\naction = \"replace\"\nsource_labels = [\"env\"]\ntarget_label = \"stage\"\nregex = \"(.*)\"\nreplacement = \"s-$1\"",
                "non_finite = \"drop\"",
            ),
        ];
        for (normalize, validate) in configs {
            let (n, v) = stages(normalize, validate);
            let (n2, v2) = stages(normalize, validate);
            let resolve = Resolve::new(n2, v2, 1_000_000);
            for pass in 0..2 {
                let now = now_ms();
                let (expected, expected_hashes, mut expected_drops) = uncached(&n, &v, corpus(now));

                let mut got = corpus(now);
                let mut got_drops = DropTally::default();
                let mut hashes = Vec::new();
                assert!(resolve.process_hashed(&mut got, &mut hashes, &mut got_drops));
                let context = format!("config ({normalize:?}, {validate:?}), pass {pass}");
                assert_eq!(got.len(), expected.len(), "{context}");
                for (g, e) in got.iter().zip(&expected) {
                    assert!(g.identical(e), "{context}: {g:?} != {e:?}");
                }
                assert_eq!(hashes, expected_hashes, "{context}");
                let (e, g) = (tally(&mut expected_drops), tally(&mut got_drops));
                assert_eq!(g, e, "{context}");
                assert!(e.len() >= 3, "{context}: the corpus should trigger several reasons: {e:?}");
            }
        }
    }

    /// With labels a decoder shared, kept verdicts are noted in the labels and read
    /// back from there: the outcome must be exactly the cache's, pass after pass, also
    /// once a later instance (another pipeline, a reload) has taken the notes over.
    #[test]
    fn noted_verdicts_decide_exactly_as_the_cache_does() {
        // (normalize, validate, whether any labels stay as decoded and so get noted)
        let configs = [
            ("", "", true),
            ("invalid_names = \"reject\"", "max_labels = 3\nunknown_metrics = \"reject\"", true),
            ("static_labels = { dc = \"east\" }", "non_finite = \"drop\"", false),
        ];
        for (normalize, validate, noted) in configs {
            let (n, v) = stages(normalize, validate);
            let (n2, v2) = stages(normalize, validate);
            let resolve = Resolve::new(n2, v2, 1_000_000);
            let (n3, v3) = stages("", "");
            let later = Resolve::new(n3, v3, 1_000_000);
            let now = now_ms();
            let mut shared = corpus(now);
            for (i, s) in shared.iter_mut().enumerate() {
                s.labels = s.labels.clone().share();
                // Half as a decoder's series table hands them out (notes only, no cache).
                if i % 2 == 0
                    && let Some(part) = s.labels.shared_whole()
                {
                    part.mark_kept();
                }
            }
            for pass in 0..4 {
                if pass == 2 {
                    let mut theirs = shared.clone();
                    later.process_hashed(&mut theirs, &mut Vec::new(), &mut DropTally::default());
                }
                let (expected, expected_hashes, mut expected_drops) = uncached(&n, &v, shared.clone());
                let mut got = shared.clone();
                let mut got_drops = DropTally::default();
                let mut hashes = Vec::new();
                resolve.process_hashed(&mut got, &mut hashes, &mut got_drops);
                let context = format!("config ({normalize:?}, {validate:?}), pass {pass}");
                assert_eq!(got.len(), expected.len(), "{context}");
                for (g, e) in got.iter().zip(&expected) {
                    assert!(g.identical(e), "{context}: {g:?} != {e:?}");
                }
                assert_eq!(hashes, expected_hashes, "{context}");
                assert_eq!(tally(&mut got_drops), tally(&mut expected_drops), "{context}");
                let owners: Vec<u64> =
                    shared.iter().filter_map(|s| s.labels.shared_whole()).map(|p| p.note() >> 32).collect();
                let mine = owners.iter().filter(|&&o| Some(o) == resolve.owner).count();
                let theirs = owners.iter().filter(|&&o| Some(o) == later.owner).count();
                if pass < 2 {
                    assert_eq!(mine > 0, noted, "{context}: {mine} verdicts noted");
                } else {
                    assert!(theirs > 0 && mine == 0, "{context}: the later instance owns the notes ({mine} mine)");
                }
            }
        }
    }

    /// A verdict noted in a part a decoder's table keeps is not also cached;
    /// one noted in a part nothing keeps (or not noted at all) is.
    #[test]
    fn verdicts_noted_in_kept_parts_are_not_cached_too() {
        let (n, v) = stages("", "");
        let resolve = Resolve::new(n, v, 1_000_000);
        let now = now_ms();
        let sample = |i: usize| {
            let labels: Labels = [("__name__", "m"), ("i", &*i.to_string())].into_iter().collect();
            Sample::new(labels.share(), 1.0, now)
        };
        let mut samples: Vec<Sample> = (0..100).map(sample).collect();
        for s in samples.iter().take(60) {
            s.labels.shared_whole().expect("shared").mark_kept();
        }
        let mut hashes = Vec::new();
        let mut drops = DropTally::default();
        resolve.process_hashed(&mut samples, &mut hashes, &mut drops);
        assert_eq!(samples.len(), 100);
        let held: usize = resolve.shards.iter().map(|s| s.read().len()).sum();
        assert_eq!(held, 40, "only the verdicts of parts nothing keeps are cached");
        let owner = resolve.owner.expect("an owner");
        assert!(samples.iter().all(|s| s.labels.shared_whole().is_some_and(|p| p.note() >> 32 == owner)));
        assert!(samples.iter().take(60).all(|s| s.labels.shared_whole().is_some_and(SharedPart::is_kept)));
        assert!(!samples[60].labels.shared_whole().is_some_and(SharedPart::is_kept), "a note keeps no mark");
        // The same series again, in fresh parts (a table evicted them): decided again, right.
        let mut again: Vec<Sample> = (0..100).map(sample).collect();
        resolve.process_hashed(&mut again, &mut hashes, &mut drops);
        assert_eq!(again.len(), 100);
        assert!(drops.is_empty());
        assert!(again.iter().zip(&hashes).all(|(s, h)| s.labels.series_hash() == *h));
    }

    #[test]
    fn a_full_cache_part_is_emptied_and_still_decides_right() {
        let (n, v) = stages("", "");
        let resolve = Resolve::new(n, v, 64);
        let now = now_ms();
        let mut samples: Vec<Sample> = (0..1000)
            .map(|i| Sample::new([("__name__", "m"), ("i", &*i.to_string())].into_iter().collect(), 1.0, now))
            .collect();
        let mut hashes = Vec::new();
        let mut drops = DropTally::default();
        resolve.process_hashed(&mut samples, &mut hashes, &mut drops);
        assert_eq!(samples.len(), 1000);
        assert!(drops.is_empty());
        let held: usize = resolve.shards.iter().map(|s| s.read().len()).sum();
        assert!(held <= 64 + CACHE_SHARDS, "{held} verdicts held over a bound of 64");
        assert!(samples.iter().zip(&hashes).all(|(s, h)| s.labels.series_hash() == *h));
    }
}
