//! BiART's Bi-DALL-E-style blocks (GEGLU, LayerScale, `to_qkv` without bias) against the
//! upstream `Transformer` of wcshin-git/Bidirectional_DALLE@2f16503 itself: the fixture is written
//! by `reference/bidalle_block_fixtures.py`, which imports the upstream modules (4 layers cycling
//! full, axial_row, axial_col and conv_like attention, text 6 + image 5×5, both directions).

use std::collections::HashMap;

use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};
use tessera_models::biart::{layer_scale_init, Biart, BiartConfig, Direction};

fn fixture() -> HashMap<String, Tensor> {
    let p = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/bidalle_block.safetensors");
    Tensor::read_safetensors(p).unwrap().into_iter().collect()
}

/// The reference toy model on a 5×5 grid with kernel 5, and Bi-DALL-E's block options.
fn config() -> BiartConfig {
    BiartConfig {
        image_side: 5,
        conv_kernel: 5,
        segment_embedding: false,
        ..BiartConfig::reference_fixture()
    }
    .with_bidalle_blocks()
}

/// Largest |a − b| over the rows where `rows` (B, L) is true.
fn max_diff(a: &Tensor, b: &Tensor, rows: &Tensor) -> f64 {
    let rows = rows.unsqueeze(-1).expand_as(a);
    let d = (a.to_kind(Kind::Double) - b.to_kind(Kind::Double)).abs();
    d.masked_select(&rows).max().double_value(&[])
}

#[test]
fn blocks_match_upstream_bidalle_transformer() {
    let f = fixture();
    let vs = VarStore::new(Device::Cpu);
    let m = Biart::new(&vs.root(), config()).unwrap();
    let vars = vs.variables();
    let mut loaded = 0;
    tch::no_grad(|| {
        for (name, v) in vars.iter().filter(|(n, _)| n.starts_with("blocks.")) {
            let src = f.get(&format!("model.{name}")).unwrap_or_else(|| panic!("fixture lacks model.{name}"));
            assert_eq!(v.size(), src.size(), "{name}");
            v.shallow_clone().copy_(src);
            loaded += 1;
        }
    });
    // Every upstream parameter has a Tessera counterpart and no block has a bias on qkv.
    assert_eq!(loaded, f.keys().filter(|k| k.starts_with("model.")).count());
    assert!(!vars.contains_key("blocks.0.attn.qkv.bias"));
    assert!(vars.contains_key("head.bias"));

    let text = &f["text"];
    for dir in Direction::BOTH {
        let d = dir.name();
        let keep = m.key_keep(dir, text);
        let out = tch::no_grad(|| m.blocks_forward(&f[&format!("x_{d}")], dir, &keep, false));
        let want = &f[&format!("out_{d}")];
        // Upstream's i2t sparse layers let [PAD] queries see [PAD] keys (spec §13.4); those rows
        // are the only ones allowed to differ.
        let rows = match dir {
            Direction::T2i => Tensor::ones_like(&keep),
            Direction::I2t => keep.shallow_clone(),
        };
        let diff = max_diff(&out, want, &rows);
        println!("{d}: max |Δ| = {diff:.3e}");
        assert!(diff < 1e-5, "{d}: blocks differ from upstream by {diff}");
        // The branches matter: the output is far from the input.
        assert!(max_diff(&out, &f[&format!("x_{d}")], &rows) > 0.1);
    }
}

#[test]
fn layer_scale_init_follows_upstream_by_layer_index() {
    let f = fixture();
    let layers = Vec::<i64>::try_from(&f["layer_scale_layers"]).unwrap();
    let want = Vec::<f32>::try_from(&f["layer_scale_init"]).unwrap();
    for (&layer, &w) in layers.iter().zip(&want) {
        assert_eq!(layer_scale_init(layer as usize) as f32, w, "layer {layer}");
    }
    // A 26-layer model: γ starts at 0.1 up to the 18th block, 1e-5 for the 19th–24th, then 1e-6.
    let vs = VarStore::new(Device::Cpu);
    let _m = Biart::new(&vs.root(), BiartConfig { n_layer: 26, ..config() }).unwrap();
    let vars = vs.variables();
    for (block, want) in [(0, 0.1f32), (17, 0.1), (18, 1e-5), (23, 1e-5), (24, 1e-6), (25, 1e-6)] {
        for ls in ["ls1", "ls2"] {
            let v = &vars[&format!("blocks.{block}.{ls}")];
            assert_eq!(v.size(), [16]);
            for got in [v.min(), v.max()] {
                assert_eq!(got.double_value(&[]) as f32, want, "blocks.{block}.{ls}");
            }
        }
    }
}
