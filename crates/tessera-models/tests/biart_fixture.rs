//! BiART against `reference/biart_reference.py` (a PyTorch re-implementation of the same model):
//! masked logits, the three losses of each direction, and gradients, within 1e-5.

use std::collections::HashMap;

use tch::nn::VarStore;
use tch::{Device, Kind, Tensor};
use tessera_models::biart::{fixed_2d_positions, Biart, BiartConfig, Direction};

fn fixture() -> HashMap<String, Tensor> {
    let p = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/biart.safetensors");
    Tensor::read_safetensors(p).unwrap().into_iter().collect()
}

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a.to_kind(Kind::Double) - b.to_kind(Kind::Double)).abs().max().double_value(&[])
}

#[test]
fn matches_the_pytorch_reference() {
    let f = fixture();
    let cfg = BiartConfig::reference_fixture();
    let vs = VarStore::new(Device::Cpu);
    let m = Biart::new(&vs.root(), cfg).unwrap();
    let vars = vs.variables();
    tch::no_grad(|| {
        for (name, v) in vars.iter() {
            let mut v = v.shallow_clone();
            let src = f.get(&format!("model.{name}")).unwrap_or_else(|| panic!("fixture lacks model.{name}"));
            v.copy_(src);
        }
    });
    assert_eq!(vars.len(), f.keys().filter(|k| k.starts_with("model.")).count());
    assert!(max_diff(&fixed_2d_positions(3, 16), &f["image_pos_fixed"]) < 1e-6);

    let (text, codes) = (&f["text"], &f["codes"]);
    let mut total = Tensor::zeros([], (Kind::Float, Device::Cpu));
    for dir in Direction::BOTH {
        let d = dir.name();
        let seq = m.sequence(dir, text, codes);
        let logits = m.forward_from(&seq.narrow(1, 0, 14), dir, 0, &m.key_keep(dir, text), None, false);
        let reference = &f[&format!("logits_{d}")];
        let finite = logits.isfinite();
        assert!(
            finite.eq_tensor(&reference.gt(-1e29)).all().int64_value(&[]) == 1,
            "{d}: logit masks differ"
        );
        let diff = max_diff(&logits.masked_select(&finite), &reference.masked_select(&finite));
        assert!(diff < 1e-5, "{d} logits: {diff}");
        let parts = m.loss(dir, text, codes, false);
        for (name, t) in [("total", &parts.total), ("condition", &parts.condition), ("target", &parts.target)]
        {
            let diff = max_diff(t, &f[&format!("loss_{name}_{d}")]);
            assert!(diff < 1e-5, "{d} loss {name}: {diff}");
        }
        total += parts.total;
    }
    total.backward();
    for name in ["tok_emb.weight", "blocks.1.attn.qkv.weight", "head.weight"] {
        let diff = max_diff(&vars[name].grad(), &f[&format!("grad.{name}")]);
        assert!(diff < 1e-5, "gradient of {name}: {diff}");
    }
}
