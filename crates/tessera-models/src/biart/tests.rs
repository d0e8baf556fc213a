use super::sample::{keep_top_k, keep_top_p, sample_logits, SampleConfig};
use super::*;
use std::sync::{Mutex, MutexGuard};
use tch::{nn::VarStore, Device};

/// libtorch's generator is global to the process: tests that seed it run one at a time.
pub(super) fn rng_lock() -> MutexGuard<'static, ()> {
    static RNG: Mutex<()> = Mutex::new(());
    RNG.lock().unwrap_or_else(|e| e.into_inner())
}

fn tiny(attn: Vec<AttnType>, pad: PadTokens) -> (VarStore, Biart) {
    tch::manual_seed(3);
    let vs = VarStore::new(Device::Cpu);
    let cfg = BiartConfig { attn_types: attn, pad_tokens: pad, ..BiartConfig::reference_fixture() };
    let m = Biart::new(&vs.root(), cfg).unwrap();
    (vs, m)
}

fn all_types() -> Vec<AttnType> {
    vec![AttnType::Full, AttnType::AxialRow, AttnType::AxialCol, AttnType::ConvLike]
}

fn batch() -> (Tensor, Tensor) {
    let text = Tensor::from_slice(&[1i64, 5, 6, 2, 0, 0, 1, 7, 8, 5, 6, 2]).view([2, 6]);
    let codes = Tensor::from_slice(&[0i64, 1, 2, 3, 4, 5, 6, 0, 1, 6, 5, 4, 3, 2, 1, 0, 6, 6]).view([2, 9]);
    (text, codes)
}

#[test]
fn logit_masks_allow_only_the_predicted_modality() {
    let _rng = rng_lock();
    let (_vs, m) = tiny(vec![AttnType::Full], PadTokens::Unique);
    let (vt, off, v) = (9, m.config.image_offset(), m.config.vocab_size());
    assert_eq!((off, v), (15, 22));
    for dir in Direction::BOTH {
        let allowed = m.allowed_logits(dir);
        for s in 0..15i64 {
            let row: Vec<bool> = Vec::<bool>::try_from(allowed.get(s)).unwrap();
            let image = match dir {
                Direction::T2i => s >= 5,
                Direction::I2t => s < 8,
            };
            for (id, ok) in row.iter().enumerate() {
                let want = if image { id as i64 >= off } else { (id as i64) < vt };
                assert_eq!(*ok, want, "{dir:?} position {s} id {id}");
            }
        }
    }
}

#[test]
fn unique_pad_tokens_take_their_position_slot() {
    let _rng = rng_lock();
    let (_vs, m) = tiny(vec![AttnType::Full], PadTokens::Unique);
    let (text, codes) = batch();
    let seq = m.sequence(Direction::T2i, &text, &codes);
    let row: Vec<i64> = Vec::<i64>::try_from(seq.get(0)).unwrap();
    // Pads at text positions 4 and 5 become 9+4 and 9+5; codes shift by the offset 15.
    assert_eq!(&row[..6], &[1, 5, 6, 2, 13, 14]);
    assert_eq!(&row[6..9], &[15, 16, 17]);
    let i2t: Vec<i64> = Vec::<i64>::try_from(m.sequence(Direction::I2t, &text, &codes).get(0)).unwrap();
    assert_eq!(&i2t[9..], &[1, 5, 6, 2, 13, 14]);
    let (_vs2, shared) = tiny(vec![AttnType::Full], PadTokens::Shared);
    let row: Vec<i64> = Vec::<i64>::try_from(shared.sequence(Direction::T2i, &text, &codes).get(0)).unwrap();
    assert_eq!(&row[..6], &[1, 5, 6, 2, 0, 0]);
}

#[test]
fn loss_weights_the_target_modality() {
    let _rng = rng_lock();
    let (_vs, m) = tiny(all_types(), PadTokens::Unique);
    let (text, codes) = batch();
    for dir in Direction::BOTH {
        let parts = m.loss(dir, &text, &codes, false);
        // Recompute both cross-entropies by hand from the masked logits.
        let seq = m.sequence(dir, &text, &codes);
        let input = seq.narrow(1, 0, 14);
        let logits = m.forward_from(&input, dir, 0, &m.key_keep(dir, &text), None, false);
        let logp = logits.log_softmax(-1, Kind::Float);
        let (mut cond, mut nc, mut tgt, mut nt) = (0.0, 0.0, 0.0, 0.0);
        let split = m.geometry.first_target_output(dir);
        for b in 0..2i64 {
            let full: Vec<i64> = Vec::<i64>::try_from(seq.get(b)).unwrap();
            for s in 0..14usize {
                let next = full[s + 1];
                let is_text_target = match dir {
                    Direction::T2i => s + 1 < 6,
                    Direction::I2t => s + 1 >= 9,
                };
                if is_text_target && next >= 9 {
                    continue; // a pad slot: ignored
                }
                let lp = -logp.get(b).get(s as i64).double_value(&[next]);
                if s < split {
                    cond += lp;
                    nc += 1.0;
                } else {
                    tgt += lp;
                    nt += 1.0;
                }
            }
        }
        let (cond, tgt) = (cond / nc, tgt / nt);
        assert!((parts.condition.double_value(&[]) - cond).abs() < 1e-5);
        assert!((parts.target.double_value(&[]) - tgt).abs() < 1e-5);
        let want = (cond + 7.0 * tgt) / 8.0;
        assert!((parts.total.double_value(&[]) - want).abs() < 1e-5, "{dir:?}");
    }
}

#[test]
fn cached_forward_matches_the_full_forward() {
    let _rng = rng_lock();
    for (pad, dalle) in [(PadTokens::Unique, false), (PadTokens::Shared, false), (PadTokens::Unique, true)] {
        let (_vs, m) = if dalle {
            // Bi-DALL-E's blocks go through the same cache.
            tch::manual_seed(3);
            let vs = VarStore::new(Device::Cpu);
            let cfg = BiartConfig { attn_types: all_types(), ..BiartConfig::reference_fixture() }
                .with_bidalle_blocks();
            let m = Biart::new(&vs.root(), cfg).unwrap();
            (vs, m)
        } else {
            tiny(all_types(), pad)
        };
        let (text, codes) = batch();
        for dir in Direction::BOTH {
            let seq = m.sequence(dir, &text, &codes).narrow(1, 0, 14);
            let keep = m.key_keep(dir, &text);
            let full = m.forward_from(&seq, dir, 0, &keep, None, false);
            let mut cache = KvCache::default();
            let mut parts =
                vec![m.forward_from(&seq.narrow(1, 0, 5), dir, 0, &keep, Some(&mut cache), false)];
            for p in 5..14 {
                parts.push(m.forward_from(&seq.narrow(1, p, 1), dir, p, &keep, Some(&mut cache), false));
            }
            let cached = Tensor::cat(&parts, 1);
            let finite = full.isfinite();
            let diff =
                (full.masked_select(&finite) - cached.masked_select(&finite)).abs().max().double_value(&[]);
            assert!(diff < 1e-5, "{dir:?} (dalle blocks: {dalle}): {diff}");
        }
    }
}

#[test]
fn cached_and_uncached_sampling_give_the_same_tokens() {
    let _rng = rng_lock();
    let (_vs, m) = tiny(all_types(), PadTokens::Unique);
    let (text, codes) = batch();
    for dir in Direction::BOTH {
        let cond = if dir == Direction::T2i { &text } else { &codes };
        let mut cfg = SampleConfig { filter_thres: None, top_k: Some(5), ..Default::default() };
        tch::manual_seed(11);
        let a = m.generate(dir, cond, &cfg);
        cfg.use_cache = false;
        tch::manual_seed(11);
        let b = m.generate(dir, cond, &cfg);
        assert_eq!(Vec::<i64>::try_from(a.view([-1])).unwrap(), Vec::<i64>::try_from(b.view([-1])).unwrap());
        // The output is in the right modality.
        let (lo, hi) = if dir == Direction::T2i { (0, 7) } else { (0, 9) };
        assert!(a.min().int64_value(&[]) >= lo && a.max().int64_value(&[]) < hi, "{dir:?}");
    }
}

#[test]
fn image_to_text_starts_with_cls_and_pads_after_sep() {
    let _rng = rng_lock();
    let (_vs, m) = tiny(vec![AttnType::Full], PadTokens::Unique);
    let (_, codes) = batch();
    tch::manual_seed(5);
    let text = m.generate(Direction::I2t, &codes, &SampleConfig { filter_thres: None, ..Default::default() });
    assert_eq!(text.size(), vec![2, 6]);
    for b in 0..2 {
        let row: Vec<i64> = Vec::<i64>::try_from(text.get(b)).unwrap();
        assert_eq!(row[0], CLS);
        if let Some(p) = row.iter().position(|&t| t == SEP) {
            assert!(row[p + 1..].iter().all(|&t| t == PAD), "{row:?}");
        }
    }
}

#[test]
fn filters_keep_what_they_promise() {
    let _rng = rng_lock();
    let l = Tensor::from_slice(&[1.0f32, 3.0, 2.0, 0.0]).view([1, 4]);
    let k = keep_top_k(&l, 2);
    assert_eq!(Vec::<bool>::try_from(k.isfinite().view([-1])).unwrap(), vec![false, true, true, false]);
    // Probabilities of [ln 5, ln 3, ln 2, -inf]… use logits whose softmax is 0.5, 0.3, 0.2.
    let l = Tensor::from_slice(&[5f32.ln(), 3f32.ln(), 2f32.ln()]).view([1, 3]);
    let p = keep_top_p(&l, 0.6);
    assert_eq!(Vec::<bool>::try_from(p.isfinite().view([-1])).unwrap(), vec![true, true, false]);
    let p = keep_top_p(&l, 0.5);
    assert_eq!(Vec::<bool>::try_from(p.isfinite().view([-1])).unwrap(), vec![true, false, false]);
    // filter_thres 0.9 of V = 20 keeps max(⌊0.1·20⌋, 1) = 2 ids: only those can be drawn.
    let l = Tensor::arange(20, (Kind::Float, Device::Cpu)).view([1, 20]).repeat([500, 1]);
    let s = sample_logits(&l, &SampleConfig::default());
    assert!(s.ge(18).all().int64_value(&[]) == 1);
    // Greedy.
    let g = sample_logits(&l, &SampleConfig { temperature: 0.0, ..Default::default() });
    assert!(g.eq(19).all().int64_value(&[]) == 1);
}

#[test]
fn segment_embedding_tells_the_directions_apart() {
    let _rng = rng_lock();
    // Same tokens at the same positions, different segments ⇒ different logits.
    let (_vs, m) = tiny(vec![AttnType::Full], PadTokens::Unique);
    let (text, codes) = batch();
    let keep = m.key_keep(Direction::T2i, &text);
    let seq = m.sequence(Direction::T2i, &text, &codes).narrow(1, 0, 6);
    let a = m.embed(&seq, Direction::T2i, 0);
    // In i2t the first 6 positions are image positions with segment 0 as well; compare segment
    // rows directly instead: positions ≥ 6 in t2i carry segment 1.
    let b = m.embed(&seq, Direction::T2i, 6);
    let seg = m.seg_emb.as_ref().unwrap().ws.shallow_clone();
    let (tp, ip) = m.positions();
    let pos = Tensor::cat(&[tp, ip], 0);
    let expected = &b - &a - (pos.narrow(0, 6, 6) - pos.narrow(0, 0, 6)).unsqueeze(0);
    let diff = (expected - (seg.get(1) - seg.get(0))).abs().max().double_value(&[]);
    assert!(diff < 1e-6, "{diff}");
    let _ = keep;
}

#[test]
fn fixed_positions_follow_the_sinusoid() {
    let _rng = rng_lock();
    let p = fixed_2d_positions(4, 8);
    // c = 4, freqs = [1, 1/100]; position (row 2, col 3): channels sin(3), sin(0.03), cos(3), cos(0.03), sin(2), …
    let row: Vec<f32> = Vec::<f32>::try_from(p.get(2 * 4 + 3)).unwrap();
    let want = [
        3f32.sin(),
        0.03f32.sin(),
        3f32.cos(),
        0.03f32.cos(),
        2f32.sin(),
        0.02f32.sin(),
        2f32.cos(),
        0.02f32.cos(),
    ];
    for (a, b) in row.iter().zip(want) {
        assert!((a - b).abs() < 1e-6);
    }
}

/// Temperatures near 0 sample the best token instead of overflowing to NaN; infinite or NaN
/// temperatures are refused by `check`.
#[test]
fn extreme_temperatures_are_greedy_or_refused() {
    let l = Tensor::from_slice(&[1.0f32, 3.0, 2.0, f32::NEG_INFINITY, 0.5, 2.9, 0.0, 1.0, 0.0, 0.0])
        .view([1, 10]);
    for t in [1e-45, 1e-30, 1e-6] {
        let cfg = SampleConfig { temperature: t, filter_thres: None, ..Default::default() };
        assert!(cfg.check().is_ok());
        assert_eq!(sample_logits(&l, &cfg).int64_value(&[0]), 1, "T = {t}");
    }
    for t in [f64::INFINITY, f64::NAN, -1.0] {
        let cfg = SampleConfig { temperature: t, ..Default::default() };
        assert!(cfg.check().unwrap_err().contains("temperature"), "T = {t}");
    }
}

#[test]
fn image_features_average_the_image_positions_of_the_chosen_block() {
    let _rng = rng_lock();
    let (_vs, m) = tiny(all_types(), PadTokens::Unique);
    let (text, codes) = batch();
    for dir in Direction::BOTH {
        let seq = m.sequence(dir, &text, &codes);
        let keep = m.key_keep(dir, &text);
        let h = m.blocks_forward(&m.embed(&seq, dir, 0), dir, &keep, false);
        let first = if dir == Direction::T2i { 6 } else { 0 };
        let want = h.narrow(1, first, 9).mean_dim(1, false, h.kind());
        let got = m.image_features(dir, &text, &codes, 4);
        assert_eq!(got.size(), vec![2, 16]);
        assert!(got.allclose(&want, 1e-6, 1e-6, false), "{dir:?}");
        assert!(!m.image_features(dir, &text, &codes, 1).allclose(&got, 1e-3, 1e-3, false));
    }
    // In image→text order the image comes first, so its features cannot see the caption.
    let other = Tensor::from_slice(&[1i64, 3, 2, 0, 0, 0, 1, 4, 4, 4, 4, 2]).view([2, 6]);
    let a = m.image_features(Direction::I2t, &text, &codes, 4);
    assert!(a.equal(&m.image_features(Direction::I2t, &other, &codes, 4)));
}
