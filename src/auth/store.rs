//! The loaded keys: lookup by the SHA-256 of a presented key, each key's
//! scopes, pipelines and token buckets, and reloads that swap the whole set
//! at once (a request in flight keeps the key it was admitted with).

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use governor::clock::{Clock, MonotonicClock};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};

/// A key's token bucket, on the standard monotonic clock. Not governor's default
/// quanta clock: its TSC readings can jump back when a thread moves between
/// cores whose counters are not synchronized (common on VMs), and a bucket then
/// refuses requests well inside its rate (governor issue #299; bench-auth saw
/// 2–7 spurious 429s per run on this 2-vCPU VM).
type KeyLimiter = RateLimiter<NotKeyed, InMemoryState, MonotonicClock, NoOpMiddleware<std::time::Instant>>;
use metrics::Counter;
use parking_lot::{Mutex, RwLock};
use subtle::ConstantTimeEq;

use super::keys::{KeySpec, KeysFile, KeysFileError, Scope, hash_key, parse_hex_digest};
use crate::telemetry::AuthMetrics;

/// A token bucket and its size.
struct Bucket {
    limiter: KeyLimiter,
    /// `(per_second, burst)` it was built from, to keep it across reloads.
    shape: (u32, u32),
}

impl Bucket {
    fn new(per_second: u32, burst: Option<u32>) -> Option<Arc<Bucket>> {
        let rate = NonZeroU32::new(per_second)?;
        let burst = burst.and_then(NonZeroU32::new).unwrap_or(rate);
        let limiter = RateLimiter::direct_with_clock(Quota::per_second(rate).allow_burst(burst), MonotonicClock);
        Some(Arc::new(Bucket { limiter, shape: (rate.get(), burst.get()) }))
    }
}

/// Why a key's request is refused by its limits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RateLimited {
    #[error("key {key} is over its {limit}; retry in {retry_after:?}")]
    Wait { key: String, limit: &'static str, retry_after: Duration },
    #[error("a request of {samples} samples exceeds key {key}'s samples_burst of {burst}; send smaller requests")]
    TooLarge { key: String, samples: u64, burst: u32 },
}

/// One key as loaded: what a request authenticated with it may do.
pub struct KeyEntry {
    pub name: Arc<str>,
    scopes: Vec<Scope>,
    pipelines: Vec<String>,
    samples: Option<Arc<Bucket>>,
    requests: Option<Arc<Bucket>>,
    rate_limited: Counter,
    received_samples: Counter,
}

impl std::fmt::Debug for KeyEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyEntry").field("name", &self.name).field("scopes", &self.scopes).finish()
    }
}

/// The key a request was authenticated with; in the request's extensions.
pub type Principal = Arc<KeyEntry>;

impl KeyEntry {
    pub fn has_scope(&self, scope: Scope) -> bool {
        self.scopes.iter().any(|s| *s == scope || *s == Scope::Admin)
    }

    /// Whether the key may feed `pipeline` (no list = every pipeline).
    pub fn may_feed(&self, pipeline: &str) -> bool {
        self.pipelines.is_empty() || self.pipelines.iter().any(|p| p == pipeline)
    }

    /// Takes one request from the key's request bucket.
    pub fn check_request(&self) -> Result<(), RateLimited> {
        let Some(b) = &self.requests else { return Ok(()) };
        b.limiter.check().map_err(|not_until| {
            self.rate_limited.increment(1);
            RateLimited::Wait {
                key: self.name.to_string(),
                limit: "requests_per_second",
                retry_after: not_until.wait_time_from(MonotonicClock.now()),
            }
        })
    }

    /// Takes `n` samples from the key's sample bucket, all or none.
    pub fn check_samples(&self, n: u64) -> Result<(), RateLimited> {
        let Some(b) = &self.samples else { return Ok(()) };
        let Some(n32) = u32::try_from(n).ok().and_then(NonZeroU32::new) else {
            if n == 0 {
                return Ok(());
            }
            self.rate_limited.increment(1);
            return Err(RateLimited::TooLarge { key: self.name.to_string(), samples: n, burst: b.shape.1 });
        };
        match b.limiter.check_n(n32) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => {
                self.rate_limited.increment(1);
                Err(RateLimited::Wait {
                    key: self.name.to_string(),
                    limit: "samples_per_second",
                    retry_after: not_until.wait_time_from(MonotonicClock.now()),
                })
            }
            Err(_) => {
                self.rate_limited.increment(1);
                Err(RateLimited::TooLarge { key: self.name.to_string(), samples: n, burst: b.shape.1 })
            }
        }
    }

    /// Counts samples accepted from this key.
    pub fn received(&self, n: u64) {
        self.received_samples.increment(n);
    }
}

/// One loaded keys file.
#[derive(Default)]
struct Keys {
    /// Keys by the first 8 bytes of their SHA-256; the whole digest is then
    /// compared in constant time (a map keyed by the full digest would make
    /// its ordinary `==` the real check).
    by_digest_prefix: HashMap<u64, Vec<([u8; 32], Arc<KeyEntry>)>>,
    by_name: HashMap<String, Arc<KeyEntry>>,
}

impl Keys {
    /// Builds the set, keeping the buckets of keys whose limits did not change.
    fn build(file: &KeysFile, previous: &Keys, metrics: &AuthMetrics) -> Keys {
        let mut keys = Keys::default();
        for spec in &file.keys {
            let Some(digest) = parse_hex_digest(&spec.sha256) else { continue };
            let old = previous.by_name.get(&spec.name);
            let keep = |old: Option<&Arc<Bucket>>, per: Option<u32>, burst: Option<u32>| {
                let per = per?;
                let shape = (per, burst.unwrap_or(per));
                match old {
                    Some(b) if b.shape == shape => Some(b.clone()),
                    _ => Bucket::new(per, burst),
                }
            };
            let entry = Arc::new(KeyEntry {
                name: spec.name.as_str().into(),
                scopes: spec.scopes.clone(),
                pipelines: spec.pipelines.clone(),
                samples: keep(old.and_then(|o| o.samples.as_ref()), spec.samples_per_second, spec.samples_burst),
                requests: keep(old.and_then(|o| o.requests.as_ref()), spec.requests_per_second, spec.requests_burst),
                rate_limited: metrics.rate_limited(&spec.name),
                received_samples: metrics.key_received_samples(&spec.name),
            });
            keys.by_digest_prefix.entry(digest_prefix(&digest)).or_default().push((digest, entry.clone()));
            keys.by_name.insert(spec.name.clone(), entry);
        }
        keys
    }
}

fn digest_prefix(digest: &[u8; 32]) -> u64 {
    let mut prefix = [0u8; 8];
    prefix.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(prefix)
}

/// The API keys of `[auth] keys_file`, re-read when the file changes and on SIGHUP.
pub struct KeyStore {
    path: PathBuf,
    keys: RwLock<Arc<Keys>>,
    stamp: Mutex<Option<(SystemTime, u64)>>,
    metrics: AuthMetrics,
}

fn stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let m = std::fs::metadata(path).ok()?;
    Some((m.modified().ok()?, m.len()))
}

impl KeyStore {
    /// Loads `path`; a missing or invalid file is an error (fail closed).
    pub fn open(path: &Path) -> Result<Arc<KeyStore>, KeysFileError> {
        let s = stamp(path);
        let file = KeysFile::load(path)?;
        let store = Self::from_file(path, &file);
        *store.stamp.lock() = s;
        Ok(store)
    }

    /// A store of `file`'s keys (benchmarks and tests; `path` is only reported).
    pub fn from_file(path: &Path, file: &KeysFile) -> Arc<KeyStore> {
        let metrics = AuthMetrics::new();
        let keys = Keys::build(file, &Keys::default(), &metrics);
        metrics.keys.set(keys.by_name.len() as f64);
        Arc::new(KeyStore {
            path: path.to_path_buf(),
            keys: RwLock::new(Arc::new(keys)),
            stamp: Mutex::new(None),
            metrics,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn len(&self) -> usize {
        self.keys.read().by_name.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The key whose SHA-256 matches `presented`. The table is indexed by a
    /// prefix of the digest, so the time taken does not depend on the number
    /// of keys, and what a timing can reveal is how much of a digest matches,
    /// never of a key; the full digests are compared in constant time.
    pub fn lookup(&self, presented: &[u8]) -> Option<Principal> {
        let digest = hash_key(presented);
        let keys = self.keys.read().clone();
        let candidates = keys.by_digest_prefix.get(&digest_prefix(&digest))?;
        candidates.iter().find(|(stored, _)| bool::from(stored.ct_eq(&digest))).map(|(_, entry)| entry.clone())
    }

    /// The key named `name` (a client certificate mapped by `[auth] client_certs`).
    pub fn by_name(&self, name: &str) -> Option<Principal> {
        self.keys.read().by_name.get(name).cloned()
    }

    /// Re-reads the file if it changed since the last load.
    pub fn reload_if_changed(&self) {
        let now = stamp(&self.path);
        if *self.stamp.lock() == now {
            return;
        }
        self.reload_with(now);
    }

    /// Re-reads the file now (SIGHUP). An invalid file keeps the current keys.
    pub fn reload(&self) {
        self.reload_with(stamp(&self.path));
    }

    fn reload_with(&self, now: Option<(SystemTime, u64)>) {
        *self.stamp.lock() = now;
        match KeysFile::load(&self.path) {
            Ok(file) => {
                let keys = Keys::build(&file, &self.keys.read(), &self.metrics);
                let n = keys.by_name.len();
                *self.keys.write() = Arc::new(keys);
                self.metrics.keys.set(n as f64);
                self.metrics.reloads(true).increment(1);
                tracing::info!(path = %self.path.display(), keys = n, "API keys reloaded");
            }
            Err(e) => {
                self.metrics.reloads(false).increment(1);
                tracing::error!(error = %e, "API keys not reloaded; keeping the previous ones");
            }
        }
    }

    /// The spec of every key, for `tsrelay keys list`.
    pub fn specs(path: &Path) -> Result<Vec<KeySpec>, KeysFileError> {
        Ok(KeysFile::load(path)?.keys)
    }
}

/// Re-reads the keys file when it changes, until `stop`.
pub fn watch(
    store: Arc<KeyStore>,
    every: Duration,
    stop: tokio_util::sync::CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => store.reload_if_changed(),
                _ = stop.cancelled() => return,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::keys::to_hex;

    fn file(extra: &str) -> KeysFile {
        let a = to_hex(&hash_key(b"key-a"));
        let b = to_hex(&hash_key(b"key-b"));
        KeysFile::parse(&format!(
            "keys:\n  - name: a\n    sha256: {a}\n{extra}  - name: b\n    sha256: {b}\n    scopes: [read]\n    pipelines: [p]\n"
        ))
        .unwrap()
    }

    #[test]
    fn lookup_by_key_scopes_and_pipelines() {
        let s = KeyStore::from_file(Path::new("k.yaml"), &file(""));
        assert!(s.lookup(b"nope").is_none());
        let a = s.lookup(b"key-a").expect("a");
        assert_eq!(&*a.name, "a");
        assert!(a.has_scope(Scope::Write) && !a.has_scope(Scope::Read));
        assert!(a.may_feed("anything"));
        let b = s.lookup(b"key-b").expect("b");
        assert!(b.has_scope(Scope::Read) && !b.has_scope(Scope::Write));
        assert!(b.may_feed("p") && !b.may_feed("q"));
    }

    #[test]
    fn a_digest_sharing_the_prefix_is_not_the_key() {
        let real = hash_key(b"key-c");
        let mut decoy = real;
        decoy[31] ^= 1;
        let keys = |specs: &[(&str, [u8; 32])]| {
            let text: String =
                specs.iter().map(|(n, d)| format!("  - name: {n}\n    sha256: {}\n", to_hex(d))).collect();
            KeyStore::from_file(Path::new("k.yaml"), &KeysFile::parse(&format!("keys:\n{text}")).unwrap())
        };
        assert!(keys(&[("decoy", decoy)]).lookup(b"key-c").is_none());
        let both = keys(&[("decoy", decoy), ("c", real)]);
        assert_eq!(&*both.lookup(b"key-c").expect("c").name, "c");
    }

    #[test]
    fn buckets_refuse_over_the_rate_and_too_large_requests() {
        let s = KeyStore::from_file(
            Path::new("k.yaml"),
            &file("    samples_per_second: 10\n    samples_burst: 20\n    requests_per_second: 1\n"),
        );
        let a = s.lookup(b"key-a").unwrap();
        assert!(a.check_request().is_ok());
        match a.check_request() {
            Err(RateLimited::Wait { limit: "requests_per_second", retry_after, .. }) => {
                assert!(retry_after <= Duration::from_secs(1), "{retry_after:?}")
            }
            other => panic!("{other:?}"),
        }
        assert!(a.check_samples(15).is_ok());
        assert!(matches!(a.check_samples(15), Err(RateLimited::Wait { limit: "samples_per_second", .. })));
        assert!(matches!(a.check_samples(21), Err(RateLimited::TooLarge { burst: 20, .. })));
        assert!(a.check_samples(0).is_ok());
    }
}
