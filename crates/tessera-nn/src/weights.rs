//! Copying named tensors into a [`VarStore`]: every variable must be found, with its shape.

use std::collections::HashMap;

use tch::nn::VarStore;
use tch::Tensor;

/// Copy `tensors[prefix + name]` into each variable `name` of `vs`. A missing tensor or a shape
/// that differs is an error naming the key (the first in name order); tensors no variable asks
/// for are ignored.
pub fn copy_named(vs: &VarStore, prefix: &str, tensors: &HashMap<String, Tensor>) -> Result<(), String> {
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    tch::no_grad(|| {
        for (name, mut var) in vars {
            let key = format!("{prefix}{name}");
            let src = tensors.get(&key).ok_or_else(|| format!("missing tensor `{key}`"))?;
            if src.size() != var.size() {
                return Err(format!("`{key}` has shape {:?}, the model needs {:?}", src.size(), var.size()));
            }
            var.copy_(src);
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn, Device, Kind};

    #[test]
    fn copies_by_name_and_names_what_is_missing_or_misshapen() {
        let vs = VarStore::new(Device::Cpu);
        let _ = nn::linear(vs.root() / "fc", 2, 3, Default::default());
        let w = Tensor::arange(6, (Kind::Float, Device::Cpu)).view([3, 2]);
        let mut t = HashMap::from([
            ("m.fc.weight".to_string(), w.shallow_clone()),
            ("m.fc.bias".to_string(), Tensor::ones([3], (Kind::Float, Device::Cpu))),
            ("m.unused".to_string(), Tensor::zeros([1], (Kind::Float, Device::Cpu))),
        ]);
        copy_named(&vs, "m.", &t).unwrap();
        assert!(vs.variables()["fc.weight"].equal(&w));
        t.insert("m.fc.bias".into(), Tensor::ones([4], (Kind::Float, Device::Cpu)));
        let e = copy_named(&vs, "m.", &t).unwrap_err();
        assert!(e.contains("m.fc.bias") && e.contains("[4]") && e.contains("[3]"), "{e}");
        t.remove("m.fc.bias");
        assert!(copy_named(&vs, "m.", &t).unwrap_err().contains("missing tensor `m.fc.bias`"));
    }
}
