//! What the reader does with values: copies within the memo budget, merges repeated dict keys,
//! and turns the calls it recognises (tensor rebuilds, `OrderedDict`, `set`) into values instead of
//! running them.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use super::{Node, PickleError, StorageRef, TensorRef, Value, MAX_COPY_BYTES};

/// The values of `nodes` and the deepest one's depth (0 for none).
pub(super) fn unzip(nodes: Vec<Node>) -> (Vec<Value>, usize) {
    let depth = nodes.iter().map(|n| n.1).max().unwrap_or(0);
    (nodes.into_iter().map(|n| n.0).collect(), depth)
}

/// A deep copy of `node`, if `budget` can pay for it.
pub(super) fn copy(node: &Node, budget: &mut usize) -> Option<Node> {
    *budget = budget.checked_sub(copy_cost(&node.0, *budget))?;
    Some(node.clone())
}

pub(super) fn over_budget(at: usize) -> PickleError {
    let what = format!("memoised values copied over {} MiB in all (a pickle bomb?)", MAX_COPY_BYTES >> 20);
    PickleError::Malformed { at, what }
}

/// About the bytes a deep copy of `v` allocates; the count stops once it passes `limit`.
pub(super) fn copy_cost(v: &Value, limit: usize) -> usize {
    let strings = |s: &StorageRef| s.class.len() + s.key.len() + s.location.len();
    let mut total = 0;
    let mut todo = vec![v];
    while let Some(v) = todo.pop() {
        total += size_of::<Value>();
        if total > limit {
            break;
        }
        match v {
            Value::Str(s) => total += s.len(),
            Value::Bytes(b) | Value::BigInt(b) => total += b.len(),
            Value::Global { module, name } => total += module.len() + name.len(),
            Value::Storage(s) => total += strings(s),
            Value::Tensor(t) => total += strings(&t.storage) + 8 * (t.size.len() + t.stride.len()),
            Value::Tuple(items) | Value::List(items) | Value::Set(items) => todo.extend(items),
            Value::Dict(pairs) => todo.extend(pairs.iter().flat_map(|(k, v)| [k, v])),
            Value::Object { callable, args, state } => {
                todo.extend([&**callable, &**args].into_iter().chain(state.as_deref()))
            }
            Value::None | Value::Bool(_) | Value::Int(_) | Value::Float(_) => {}
        }
    }
    total
}

/// A dict key that is merged with an equal earlier one.
#[derive(PartialEq, Eq, Hash)]
enum Key {
    Str(String),
    Int(i64),
}

/// Python's dict semantics for every dict in `v`: a repeated string or integer key keeps its first
/// place and takes its last value (other keys are kept as they come).
pub(super) fn merge_keys(v: &mut Value) {
    match v {
        Value::Dict(pairs) => {
            let mut slots: HashMap<Key, usize> = HashMap::new();
            let mut merged: Vec<(Value, Value)> = Vec::with_capacity(pairs.len());
            for (k, mut v) in pairs.drain(..) {
                merge_keys(&mut v);
                let key = match &k {
                    Value::Str(s) => Some(Key::Str(s.clone())),
                    Value::Int(i) => Some(Key::Int(*i)),
                    _ => None,
                };
                match key.map(|key| slots.entry(key)) {
                    Some(Entry::Occupied(slot)) => merged[*slot.get()].1 = v,
                    Some(Entry::Vacant(slot)) => {
                        slot.insert(merged.len());
                        merged.push((k, v));
                    }
                    None => merged.push((k, v)),
                }
            }
            *pairs = merged;
        }
        Value::Tuple(items) | Value::List(items) | Value::Set(items) => items.iter_mut().for_each(merge_keys),
        Value::Object { callable, args, state } => {
            merge_keys(callable);
            merge_keys(args);
            if let Some(state) = state {
                merge_keys(state);
            }
        }
        _ => {}
    }
}

/// `{v:?}` cut to about 200 bytes: formatting stops there, however large `v` is.
pub(super) fn brief(v: &Value) -> String {
    struct Cut(String);
    impl std::fmt::Write for Cut {
        fn write_str(&mut self, s: &str) -> std::fmt::Result {
            let room = 200usize.saturating_sub(self.0.len()).min(s.len());
            let end = (0..=room).rev().find(|&i| s.is_char_boundary(i)).unwrap_or(0);
            self.0.push_str(&s[..end]);
            if end < s.len() {
                self.0.push('…');
                return Err(std::fmt::Error);
            }
            Ok(())
        }
    }
    let mut out = Cut(String::new());
    let _ = std::fmt::write(&mut out, format_args!("{v:?}"));
    out.0
}

/// A little-endian two's-complement integer of at most 8 bytes (`LONG1`/`LONG4`).
pub(super) fn long_from_le(bytes: &[u8]) -> Option<i64> {
    if bytes.is_empty() {
        return Some(0);
    }
    if bytes.len() > 8 {
        return None;
    }
    let fill = if bytes[bytes.len() - 1] & 0x80 != 0 { 0xff } else { 0 };
    let mut b = [fill; 8];
    b[..bytes.len()].copy_from_slice(bytes);
    Some(i64::from_le_bytes(b))
}

/// torch's persistent ids: `('storage', storage_type, key, location, numel)`.
pub(super) fn persistent_load(pid: Value) -> Result<Value, String> {
    let Value::Tuple(items) = &pid else {
        return Err(format!("unknown persistent id {}", brief(&pid)));
    };
    match items.as_slice() {
        [Value::Str(kind), Value::Global { name, .. }, Value::Str(key), Value::Str(location), numel]
            if kind == "storage" =>
        {
            let numel = numel.as_int().ok_or("storage numel is not an integer")?;
            Ok(Value::Storage(StorageRef {
                class: name.clone(),
                key: key.clone(),
                location: location.clone(),
                numel,
            }))
        }
        _ => Err(format!("unknown persistent id {}", brief(&pid))),
    }
}

/// `callable(*args)`, recorded.
pub(super) fn object(callable: Value, args: Value) -> Value {
    Value::Object { callable: Box::new(callable), args: Box::new(args), state: None }
}

/// The items of a tuple or list; none for any other value.
pub(super) fn items(v: Value) -> Vec<Value> {
    match v {
        Value::Tuple(items) | Value::List(items) => items,
        _ => Vec::new(),
    }
}

/// The items of a call's first argument (a list or tuple).
pub(super) fn first_arg_items(args: Value) -> Vec<Value> {
    items(items(args).into_iter().next().unwrap_or(Value::None))
}

/// The calls a checkpoint's structure needs; any other call is kept as an inert object.
pub(super) fn reduce(callable: Value, args: Value) -> Result<Value, String> {
    let Value::Global { module, name } = &callable else {
        return Ok(object(callable, args));
    };
    match (module.as_str(), name.as_str()) {
        ("torch._utils", "_rebuild_tensor_v2") | ("torch._utils", "_rebuild_tensor") => {
            let argv = match &args {
                Value::Tuple(v) => v.as_slice(),
                _ => &[],
            };
            let [Value::Storage(storage), offset, size, stride, ..] = argv else {
                return Err(format!("{module}.{name} with unexpected arguments {}", brief(&args)));
            };
            let bad = || format!("{module}.{name}: offset, size and stride must be integers");
            Ok(Value::Tensor(TensorRef {
                storage: storage.clone(),
                offset: offset.as_int().ok_or_else(bad)?,
                size: size.as_ints().ok_or_else(bad)?,
                stride: stride.as_ints().ok_or_else(bad)?,
            }))
        }
        ("torch._utils", "_rebuild_parameter") | ("torch._utils", "_rebuild_parameter_with_state") => {
            items(args).into_iter().next().ok_or_else(|| format!("{module}.{name} without arguments"))
        }
        ("collections", "OrderedDict") | ("builtins", "dict") | ("__builtin__", "dict") => {
            let mut pairs = Vec::new();
            for item in first_arg_items(args) {
                let pair: Result<[Value; 2], _> = items(item).try_into();
                let [k, v] = pair.map_err(|_| format!("{module}.{name} with a non-pair item"))?;
                pairs.push((k, v));
            }
            Ok(Value::Dict(pairs))
        }
        ("builtins", "set") | ("builtins", "frozenset") | ("__builtin__", "set") => {
            Ok(Value::Set(first_arg_items(args)))
        }
        _ => Ok(object(callable, args)),
    }
}
