//! Every target for a few seconds from the committed corpus: no crash, and both outcomes seen
//! (the seeds are accepted, mutations are refused). The long runs are `tessera-fuzz run all`.

use std::path::Path;
use std::time::Duration;

use tessera_fuzz::{engine, load_corpus, targets};

#[test]
fn every_target_runs_clean_from_the_committed_corpus() {
    let corpus = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/corpus");
    let seconds: u64 = std::env::var("TESSERA_FUZZ_SECONDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3);
    let mut report = Vec::new();
    for mut t in targets::all() {
        let inputs = load_corpus(t.as_ref(), &corpus);
        assert!(!inputs.is_empty());
        let stats = engine::fuzz(t.as_mut(), inputs, Duration::from_secs(seconds), 7, None);
        eprintln!("{}", serde_json::to_string(&stats).unwrap());
        assert!(stats.accepted > 0, "no seed of {} was accepted: {stats:?}", t.name());
        assert!(stats.refused > 0, "no mutation of {} was refused: {stats:?}", t.name());
        report.push(stats);
    }
    let crashed: Vec<_> = report.iter().filter(|s| s.crashes > 0).collect();
    assert!(crashed.is_empty(), "{crashed:#?}");
}
