//! Batch re-scoring (`boneage rescore`, `POST /v1/rescore-jobs`): many radiographs
//! through the one pipeline ([`Analyzer::analyze_upload`]), resumable and
//! idempotent per (image, model).
//!
//! - [`files`]: image files from a folder or a manifest → one CSV or JSON Lines row
//!   per image. The item key is the file's path relative to the folder (or as the
//!   manifest names it) plus the image's sha256; a rerun reads the output, drops a
//!   torn last line, skips every key finished by this model and appends.
//! - [`exams`]: stored exams whose image was kept → a new `analyses` row per exam
//!   for the current model (the store's `UNIQUE(exam_id, model_sha256)` makes it
//!   idempotent), failures recorded once per (exam, model); [`exams::JobRunner`]
//!   runs the API's jobs and resumes unfinished ones when a server starts.
//! - [`compare`]: two model versions over the same exams (or two output files).
//!
//! # Pipeline
//!
//! One reader thread produces work (it reads the files: I/O only) into a bounded
//! channel; N analysis workers share the [`Analyzer`] (and so the one model plan)
//! and each decode, preprocess and infer, so I/O, decoding and inference of
//! different images overlap; one writer (the calling thread) is the only one that
//! writes the output file or the database. Channels hold at most 2 × N items, so
//! memory does not grow with the size of the run.
//!
//! # Several machines
//!
//! [`Shard`] splits the items deterministically by the first 8 bytes of the
//! sha256 of a stable key (the relative path; the exam id) modulo N, so
//! `--shard K/N` for K = 0..N partitions any run with no duplicates and no gaps
//! (a Kubernetes Indexed Job passes `JOB_COMPLETION_INDEX` as K). The shard key is
//! the path rather than path + image hash so that a machine never reads the files
//! of other shards.

pub mod compare;
pub mod exams;
pub mod files;

use std::collections::BTreeMap;
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::analysis::Analyzer;
use crate::store::StoreError;

/// Why a re-scoring run stopped. (A failure on one image is not an error: it is
/// recorded with its code and the run goes on.)
#[derive(Debug, thiserror::Error)]
pub enum RescoreError {
    #[error("{path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
    /// The manifest or the folder cannot be read as input.
    #[error("cannot read the input {path}: {reason}")]
    Input { path: String, reason: String },
    /// An existing output file that is not a re-scoring output (or is damaged
    /// before its last line).
    #[error("the output {path} cannot be resumed: {reason}")]
    Output { path: String, reason: String },
    #[error("{0}")]
    Invalid(String),
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    #[error("a re-scoring thread failed")]
    Thread,
}

impl RescoreError {
    pub(crate) fn io(path: &std::path::Path, source: std::io::Error) -> RescoreError {
        RescoreError::Io {
            path: path.display().to_string(),
            source,
        }
    }
}

/// One shard of a run: `index` in `0..count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl Default for Shard {
    fn default() -> Self {
        Shard { index: 0, count: 1 }
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl std::str::FromStr for Shard {
    type Err = RescoreError;

    /// `K/N` with `0 ≤ K < N` (zero-based, as Kubernetes' `JOB_COMPLETION_INDEX`).
    fn from_str(s: &str) -> Result<Shard, RescoreError> {
        let bad = || {
            RescoreError::Invalid(format!(
                "shard {s:?} is not K/N with 0 ≤ K < N (zero-based, e.g. 3/8)"
            ))
        };
        let (k, n) = s.trim().split_once('/').ok_or_else(bad)?;
        let index: u32 = k.trim().parse().map_err(|_| bad())?;
        let count: u32 = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl Shard {
    /// Whether the item with this key belongs to this shard.
    pub fn contains(&self, key: &str) -> bool {
        self.count <= 1 || shard_of(key, self.count) == self.index
    }
}

/// The shard (`0..count`) of a key: the first 8 bytes of its sha256, big-endian,
/// modulo `count`. Stable across machines, runs and releases.
pub fn shard_of(key: &str, count: u32) -> u32 {
    let d = Sha256::digest(key.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&d[..8]);
    (u64::from_be_bytes(first) % u64::from(count.max(1))) as u32
}

/// What a run did, printed at the end.
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct Summary {
    /// Items in scope (this shard).
    pub total: u64,
    /// Already finished by this model before the run (or a duplicate of an item
    /// finished in this run).
    pub skipped: u64,
    /// Analysed and written now.
    pub analysed: u64,
    /// Refused or failed now (each recorded with its code).
    pub failed: u64,
    pub failed_by_code: BTreeMap<String, u64>,
    pub workers: usize,
    pub shard: String,
    pub model_version: String,
    pub model_sha256: String,
    pub seconds: f64,
    /// (analysed + failed) / seconds.
    pub images_per_second: f64,
}

impl Summary {
    fn new(analyzer: &Analyzer, workers: usize, shard: Shard) -> Summary {
        let info = analyzer.model().info();
        Summary {
            workers,
            shard: shard.to_string(),
            model_version: info.version.clone(),
            model_sha256: info.sha256.clone(),
            ..Default::default()
        }
    }

    fn failure(&mut self, code: &str) {
        self.failed += 1;
        *self.failed_by_code.entry(code.to_string()).or_default() += 1;
    }

    fn finish(&mut self, elapsed: Duration) {
        self.seconds = (elapsed.as_secs_f64() * 1000.0).round() / 1000.0;
        let n = (self.analysed + self.failed) as f64;
        self.images_per_second = if self.seconds > 0.0 {
            ((n / self.seconds) * 100.0).round() / 100.0
        } else {
            0.0
        };
    }

    /// One line for people: done, skipped, failed by code, rate.
    pub fn text(&self) -> String {
        let codes = if self.failed_by_code.is_empty() {
            String::new()
        } else {
            let list: Vec<String> = self
                .failed_by_code
                .iter()
                .map(|(k, v)| format!("{k} {v}"))
                .collect();
            format!(" ({})", list.join(", "))
        };
        format!(
            "rescore: {} in scope (shard {}), {} analysed, {} skipped, {} failed{}; {:.1} s, {:.2} images/s with {} workers",
            self.total,
            self.shard,
            self.analysed,
            self.skipped,
            self.failed,
            codes,
            self.seconds,
            self.images_per_second,
            self.workers
        )
    }
}

/// The administrator's filter: one tenant by name, or every tenant.
pub fn tenant_filter(
    store: &crate::store::Store,
    tenant: Option<&str>,
) -> Result<crate::store::RescoreFilter, RescoreError> {
    Ok(match tenant {
        Some(name) => crate::store::RescoreFilter::tenant(
            &store
                .tenant_by_name(name)?
                .ok_or_else(|| RescoreError::Invalid(format!("no tenant {name:?}")))?,
        ),
        None => crate::store::RescoreFilter::all_tenants(),
    })
}

/// A progress bar drawn on stderr only when it is a terminal; hidden otherwise.
pub fn progress_bar(len: u64) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    let target = if std::io::stderr().is_terminal() {
        indicatif::ProgressDrawTarget::stderr()
    } else {
        indicatif::ProgressDrawTarget::hidden()
    };
    let bar = indicatif::ProgressBar::with_draw_target(Some(len), target);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} {per_sec} eta {eta} {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    bar
}

/// Default number of analysis workers: the cores.
pub fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
}

/// Runs `read` on a reader thread (it sends work with the given function, which
/// returns `false` once the run is stopping), `work` on `workers` threads, and
/// `write` on the calling thread for every result, in completion order. `write`
/// is also called with `None` at least every `tick` while waiting, so it can
/// commit a batch. An error from `write` or `read` stops the run: the other
/// threads see their channel close and end.
pub(crate) fn pipeline<I, R>(
    workers: usize,
    tick: Duration,
    read: impl FnOnce(&dyn Fn(I) -> bool) -> Result<(), RescoreError> + Send,
    work: impl Fn(I) -> R + Sync,
    mut write: impl FnMut(Option<R>) -> Result<(), RescoreError>,
) -> Result<(), RescoreError>
where
    I: Send,
    R: Send,
{
    let workers = workers.max(1);
    let (work_tx, work_rx) = sync_channel::<I>(2 * workers);
    let (done_tx, done_rx) = sync_channel::<R>(2 * workers);
    // Shared by the workers only: when the last one ends, the work channel closes
    // and the reader's next send fails.
    let work_rx = Arc::new(Mutex::new(work_rx));
    std::thread::scope(|s| {
        let reader = s.spawn(move || {
            let send = |item: I| work_tx.send(item).is_ok();
            read(&send)
        });
        let mut handles = Vec::with_capacity(workers);
        for _ in 0..workers {
            let done_tx = done_tx.clone();
            let work_rx = Arc::clone(&work_rx);
            let work = &work;
            handles.push(s.spawn(move || loop {
                let next = match work_rx.lock() {
                    Ok(rx) => rx.recv(),
                    Err(_) => return,
                };
                let Ok(item) = next else { return };
                // A panic in one analysis must not end the run silently: the
                // worker dies, the others go on; the item is redone on resume.
                if done_tx.send(work(item)).is_err() {
                    return;
                }
            }));
        }
        drop(done_tx);
        drop(work_rx);
        let written = drain(&done_rx, tick, &mut write);
        // On a write error, closing the results makes the workers stop, which
        // closes the work channel and stops the reader.
        drop(done_rx);
        let read_result = reader.join().map_err(|_| RescoreError::Thread);
        let mut worker_panicked = false;
        for h in handles {
            worker_panicked |= h.join().is_err();
        }
        written?;
        read_result??;
        if worker_panicked {
            return Err(RescoreError::Thread);
        }
        Ok(())
    })
}

fn drain<R>(
    rx: &Receiver<R>,
    tick: Duration,
    write: &mut impl FnMut(Option<R>) -> Result<(), RescoreError>,
) -> Result<(), RescoreError> {
    loop {
        match rx.recv_timeout(tick) {
            Ok(r) => write(Some(r))?,
            Err(RecvTimeoutError::Timeout) => write(None)?,
            Err(RecvTimeoutError::Disconnected) => return Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn shards_partition_every_key_for_every_count_up_to_16() {
        let keys: Vec<String> = (0..5000)
            .map(|i| format!("images/{}/{i}.png", i % 37))
            .collect();
        for n in 1..=16u32 {
            let mut seen: HashSet<&str> = HashSet::new();
            let mut sizes = vec![0usize; n as usize];
            for k in 0..n {
                let shard = Shard { index: k, count: n };
                for key in keys.iter().filter(|key| shard.contains(key)) {
                    assert!(seen.insert(key), "{key} in two shards of {n}");
                    sizes[k as usize] += 1;
                }
            }
            assert_eq!(seen.len(), keys.len(), "a key in no shard of {n}");
            // Roughly even: no shard holds under half its share.
            let share = keys.len() / n as usize;
            assert!(sizes.iter().all(|&s| s * 2 >= share), "{n}: {sizes:?}");
        }
    }

    #[test]
    fn shard_of_is_the_first_8_bytes_of_sha256_mod_n() {
        // sha256("abc") = ba7816bf8f01cfea 414140de…; 0xba7816bf8f01cfea mod 7 = 2,
        // computed by hand from the published FIPS 180-2 test vector.
        assert_eq!(0xba78_16bf_8f01_cfeau64 % 7, 2);
        assert_eq!(shard_of("abc", 7), 2);
        assert_eq!(shard_of("abc", 1), 0);
    }

    #[test]
    fn shard_syntax() {
        assert_eq!(
            "3/8".parse::<Shard>().unwrap(),
            Shard { index: 3, count: 8 }
        );
        for bad in ["8/8", "1/0", "3", "-1/4", "a/b", ""] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }

    #[test]
    fn pipeline_delivers_every_item_once_and_stops_on_a_write_error() {
        let mut got = Vec::new();
        pipeline(
            3,
            Duration::from_millis(50),
            |send| {
                for i in 0..200u32 {
                    if !send(i) {
                        break;
                    }
                }
                Ok(())
            },
            |i| i * 2,
            |r| {
                if let Some(r) = r {
                    got.push(r);
                }
                Ok(())
            },
        )
        .unwrap();
        got.sort_unstable();
        assert_eq!(got, (0..200).map(|i| i * 2).collect::<Vec<_>>());

        let mut n = 0;
        let err = pipeline(
            2,
            Duration::from_millis(50),
            |send| {
                for i in 0..100_000u32 {
                    if !send(i) {
                        break;
                    }
                }
                Ok(())
            },
            |i| i,
            |r| {
                if r.is_some() {
                    n += 1;
                }
                if n == 10 {
                    Err(RescoreError::Invalid("stop".into()))
                } else {
                    Ok(())
                }
            },
        );
        assert!(matches!(err, Err(RescoreError::Invalid(_))));
        assert_eq!(n, 10);
    }
}
