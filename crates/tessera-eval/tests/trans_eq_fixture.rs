//! `TransEq` against TE-VQGAN's own `ShiftEqMetric.cal_acc` (wcshin-git/TE-VQGAN@248f883,
//! `taming/models/vqgan.py`), run by `reference/upstream_vqgan_fixtures.py` on hand-made code maps:
//! map sides 2, 4, 6×10, 8 and 16 (the centre crop `h//4 : -h//4` of sides that are not multiples
//! of 4), exact equivariance, partial and none, and one case of two batches.

use std::collections::HashMap;

use tch::Tensor;
use tessera_eval::equivariance::TransEq;

#[test]
fn trans_eq_acc_matches_te_vqgan_shift_eq_metric() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/trans_eq.safetensors");
    let f: HashMap<String, Tensor> = Tensor::read_safetensors(path).unwrap().into_iter().collect();
    let mut cases = 0;
    while let Some(idx) = f.get(&format!("case{cases}.indices")) {
        let get = |k: &str| &f[&format!("case{cases}.{k}")];
        let batch = get("batch").int64_value(&[]);
        let mut t = TransEq::default();
        for b in idx.split(batch, 0) {
            t.add(&b);
        }
        let (correct, total) = (get("correct").int64_value(&[]), get("total").int64_value(&[]));
        assert_eq!((t.correct, t.total), (correct, total), "case{cases}: {:?}", idx.size());
        assert!((t.accuracy() - get("acc").double_value(&[])).abs() < 1e-12, "case{cases}");
        cases += 1;
    }
    assert_eq!(cases, 7);
}
