//! The fuzzing loop: pick an input from the corpus, mutate it, run the target under
//! `catch_unwind`, and keep the input when it produced an outcome not seen before.
//!
//! Without compiler instrumentation there is no coverage map; the feedback is the outcome itself
//! (accepted, or the refusal message with numbers and paths blanked), which still steers the
//! corpus towards inputs that get deeper into each parser (a new error means a new check reached).

use std::collections::HashSet;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::mutate::mutate;
use crate::targets::Target;

/// The corpus stops growing here (oldest entries stay: they are the seeds).
const MAX_CORPUS: usize = 4096;

/// What one fuzzing session did.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Stats {
    pub target: String,
    pub seconds: f64,
    pub execs: u64,
    pub crashes: u64,
    /// Inputs the target refused with a clean error, and inputs it accepted.
    pub refused: u64,
    pub accepted: u64,
    /// Distinct outcomes seen (accepted + each kind of refusal).
    pub outcomes: usize,
    pub corpus: usize,
    /// The first crash's panic message, if any.
    pub first_crash: Option<String>,
}

/// The outcome class of a refusal: the template of the message's last line (where TOML and
/// validation errors put the reason) up to the first quote, i.e. its first 8 plain words (letters only, 3 or more), so
/// that values, paths and quoted input do not make every refusal "new".
fn outcome_key(message: &str) -> String {
    let last = message.lines().rev().find(|l| !l.trim().is_empty()).unwrap_or("");
    // Quoted input (`x`, "x", 'x') and everything after it is the user's text, not the template.
    let last = last.split(['"', '`', '\'']).next().unwrap_or("");
    let plain = |w: &&str| w.len() >= 3 && w.chars().all(|c| c.is_ascii_alphabetic());
    last.split_whitespace().filter(plain).take(8).collect::<Vec<_>>().join(" ")
}

/// Fuzz `target` for `budget`, starting from `seeds`; crashing inputs are written to `crash_dir`.
pub fn fuzz(
    target: &mut dyn Target,
    seeds: Vec<Vec<u8>>,
    budget: Duration,
    rng_seed: u64,
    crash_dir: Option<&Path>,
) -> Stats {
    let mut rng = ChaCha8Rng::seed_from_u64(rng_seed);
    let mut corpus = if seeds.is_empty() { vec![Vec::new()] } else { seeds };
    let mut seen = HashSet::new();
    let mut stats = Stats { target: target.name().to_string(), ..Stats::default() };
    let previous_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let start = Instant::now();
    let mut i = 0usize;
    while start.elapsed() < budget {
        // Each seed once as it is, then mutations.
        let input = if i < corpus.len() && stats.execs < corpus.len() as u64 {
            corpus[i].clone()
        } else {
            let mut d = corpus[rng.gen_range(0..corpus.len())].clone();
            let other = &corpus[rng.gen_range(0..corpus.len())];
            mutate(&mut d, other, &mut rng);
            d
        };
        i += 1;
        stats.execs += 1;
        let key = match catch_unwind(AssertUnwindSafe(|| tch::with_grad(|| target.exec(&input)))) {
            Ok(Ok(())) => {
                stats.accepted += 1;
                "accepted".to_string()
            }
            Ok(Err(message)) => {
                stats.refused += 1;
                outcome_key(&message)
            }
            Err(panic) => {
                stats.crashes += 1;
                let message = panic_message(&panic);
                record_crash(crash_dir, target.name(), &input, &message);
                stats.first_crash.get_or_insert(message.clone());
                format!("crash: {}", outcome_key(&message))
            }
        };
        if std::env::var_os("TESSERA_FUZZ_SHOW_OUTCOMES").is_some() && !seen.contains(&key) {
            eprintln!("new outcome: {key}");
        }
        if seen.insert(key) && corpus.len() < MAX_CORPUS {
            corpus.push(input);
        }
    }
    std::panic::set_hook(previous_hook);
    stats.seconds = start.elapsed().as_secs_f64();
    stats.outcomes = seen.len();
    stats.corpus = corpus.len();
    stats
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "a panic without a message".into())
}

/// Write a crashing input as `crash_dir/<target>/crash-<sha256 prefix>` with its message beside it.
fn record_crash(crash_dir: Option<&Path>, target: &str, input: &[u8], message: &str) {
    let Some(dir) = crash_dir else { return };
    let dir = dir.join(target);
    let name: String = Sha256::digest(input).iter().take(8).map(|b| format!("{b:02x}")).collect();
    if std::fs::create_dir_all(&dir).is_ok() {
        let _ = std::fs::write(dir.join(format!("crash-{name}")), input);
        let _ = std::fs::write(dir.join(format!("crash-{name}.txt")), message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A parser with a planted bug: it panics on inputs that start with `BUG` after a length byte
    /// above 200. The fuzzer must find it from a seed that does not crash.
    struct Planted;
    impl Target for Planted {
        fn name(&self) -> &'static str {
            "planted"
        }
        fn seeds(&self) -> Vec<Vec<u8>> {
            vec![b"BUG\x10rest".to_vec()]
        }
        fn exec(&mut self, data: &[u8]) -> Result<(), String> {
            if data.len() < 4 || &data[..3] != b"BUG" {
                return Err(format!("bad magic in {} bytes", data.len()));
            }
            if data[3] > 200 {
                panic!("length byte {} overflows", data[3]);
            }
            Ok(())
        }
    }

    #[test]
    fn a_planted_panic_is_found_recorded_and_counted() {
        let crashes = tempfile::tempdir().unwrap();
        let mut t = Planted;
        let seeds = t.seeds();
        let stats = fuzz(&mut t, seeds, Duration::from_millis(500), 1, Some(crashes.path()));
        assert!(stats.execs > 1000, "{stats:?}");
        assert!(stats.crashes > 0 && stats.accepted > 0 && stats.refused > 0, "{stats:?}");
        assert!(stats.first_crash.as_deref().unwrap().contains("overflows"));
        let files: Vec<_> = std::fs::read_dir(crashes.path().join("planted")).unwrap().flatten().collect();
        let input = files.iter().find(|f| !f.path().to_string_lossy().ends_with(".txt")).unwrap();
        let bytes = std::fs::read(input.path()).unwrap();
        assert!(bytes.starts_with(b"BUG") && bytes[3] > 200, "the recorded input reproduces the crash");
    }

    #[test]
    fn refusals_are_grouped_by_their_message_without_numbers_or_paths() {
        assert_eq!(outcome_key("/tmp/x/a.png: 3 bytes"), outcome_key("/other/b.png: 47 bytes"));
        assert_ne!(outcome_key("bad magic"), outcome_key("truncated"));
    }
}
