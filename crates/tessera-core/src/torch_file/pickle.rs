//! A pickle reader that builds plain values and never runs code.
//!
//! PyTorch's `torch.save` writes a pickle (protocol 2) whose tensors are calls to
//! `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, …)` and whose storages are
//! persistent ids `('storage', torch.FloatStorage, key, location, numel)`. Python's unpickler would
//! import and call whatever globals the file names (which is how a malicious checkpoint runs code).
//! This reader only *records* globals and calls: the tensor-building ones it recognises become
//! [`Value::Tensor`], a handful of containers (`OrderedDict`, `set`) become containers, and every
//! other call stays an inert [`Value::Object`].
//!
//! Limitation: memoised containers are copied when fetched again (`BINGET`), so a dict or list that
//! the file references twice is seen as it was when first memoised. State dicts and Lightning
//! checkpoints reference each container once.
//!
//! A hostile pickle gets an error, never a crash: values nest at most `MAX_DEPTH` deep, copies of
//! memoised values are paid from `MAX_COPY_BYTES`, and repeated dict keys are merged in one pass.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use thiserror::Error;

/// Deeper values are refused: dropping, cloning, printing or flattening one recurses per level.
const MAX_DEPTH: usize = 1000;
/// Memo stores, memo fetches and DUP copy at most this many bytes in all (a pickle bomb's guard).
const MAX_COPY_BYTES: usize = 2 << 30;

/// A pickled value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    None,
    Bool(bool),
    Int(i64),
    /// An integer beyond 64 bits (`LONG1`/`LONG4`), as little-endian two's-complement bytes.
    BigInt(Vec<u8>),
    Float(f64),
    Str(String),
    Bytes(Vec<u8>),
    Tuple(Vec<Value>),
    List(Vec<Value>),
    /// Insertion-ordered pairs (Python dicts and `OrderedDict`s).
    Dict(Vec<(Value, Value)>),
    Set(Vec<Value>),
    /// A reference to `module.name` (a class or function). Never imported.
    Global {
        module: String,
        name: String,
    },
    /// `callable(*args)`, recorded and not evaluated, with the state a `BUILD` gave it.
    Object {
        callable: Box<Value>,
        args: Box<Value>,
        state: Option<Box<Value>>,
    },
    /// A torch storage named by a persistent id.
    Storage(StorageRef),
    /// A strided view on a storage.
    Tensor(TensorRef),
}

/// `('storage', torch.<Type>Storage, key, location, numel)`.
#[derive(Debug, Clone, PartialEq)]
pub struct StorageRef {
    /// The storage class, e.g. `FloatStorage`: it fixes the element type.
    pub class: String,
    /// The entry `data/<key>` in the archive.
    pub key: String,
    pub location: String,
    /// Elements in the storage.
    pub numel: i64,
}

/// `torch._utils._rebuild_tensor_v2(storage, storage_offset, size, stride, …)`.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorRef {
    pub storage: StorageRef,
    pub offset: i64,
    pub size: Vec<i64>,
    pub stride: Vec<i64>,
}

impl Value {
    /// The value under string key `key` of a dict.
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(pairs) => {
                pairs.iter().find(|(k, _)| matches!(k, Value::Str(s) if s == key)).map(|(_, v)| v)
            }
            _ => None,
        }
    }

    fn as_int(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            Value::Bool(b) => Some(*b as i64),
            _ => None,
        }
    }

    fn as_ints(&self) -> Option<Vec<i64>> {
        match self {
            Value::Tuple(v) | Value::List(v) => v.iter().map(Value::as_int).collect(),
            _ => None,
        }
    }
}

#[derive(Debug, Error)]
pub enum PickleError {
    #[error("the pickle ends early (truncated file?)")]
    Truncated,
    #[error("unsupported pickle opcode 0x{0:02x} at byte {1}")]
    Opcode(u8, usize),
    #[error("malformed pickle at byte {at}: {what}")]
    Malformed { at: usize, what: String },
}

/// Read one pickle from `data` (up to its `STOP`).
pub fn read(data: &[u8]) -> Result<Value, PickleError> {
    Machine::new(data, MAX_COPY_BYTES).run()
}

/// A value on the stack or in the memo, with its nesting depth (1 for a leaf).
type Node = (Value, usize);

struct Machine<'a> {
    data: &'a [u8],
    pos: usize,
    stack: Vec<Node>,
    marks: Vec<usize>,
    memo: HashMap<u64, Node>,
    /// Bytes that copies may still take.
    copy_budget: usize,
}

impl<'a> Machine<'a> {
    fn new(data: &'a [u8], copy_budget: usize) -> Self {
        Machine { data, pos: 0, stack: Vec::new(), marks: Vec::new(), memo: HashMap::new(), copy_budget }
    }

    fn bad(&self, what: impl Into<String>) -> PickleError {
        PickleError::Malformed { at: self.pos, what: what.into() }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], PickleError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.data.len()).ok_or(PickleError::Truncated)?;
        let s = &self.data[self.pos..end];
        self.pos = end;
        Ok(s)
    }

    fn u8(&mut self) -> Result<u8, PickleError> {
        Ok(self.take(1)?[0])
    }

    fn le<const N: usize>(&mut self) -> Result<[u8; N], PickleError> {
        Ok(self.take(N)?.try_into().expect("N bytes"))
    }

    fn len_u32(&mut self) -> Result<usize, PickleError> {
        Ok(u32::from_le_bytes(self.le()?) as usize)
    }

    fn len_u64(&mut self) -> Result<usize, PickleError> {
        usize::try_from(u64::from_le_bytes(self.le()?)).map_err(|_| self.bad("length overflows"))
    }

    fn line(&mut self) -> Result<&'a str, PickleError> {
        let rest = &self.data[self.pos..];
        let n = rest.iter().position(|&b| b == b'\n').ok_or(PickleError::Truncated)?;
        let s = std::str::from_utf8(&rest[..n]).map_err(|_| self.bad("non-UTF-8 text line"))?;
        self.pos += n + 1;
        Ok(s)
    }

    fn string(&mut self, n: usize) -> Result<Value, PickleError> {
        let bytes = self.take(n)?;
        Ok(Value::Str(String::from_utf8_lossy(bytes).into_owned()))
    }

    /// Push a leaf.
    fn push(&mut self, v: Value) {
        self.stack.push((v, 1));
    }

    /// The depth of a container of values `inner` deep, unless that passes `MAX_DEPTH`.
    fn depth_over(&self, inner: usize) -> Result<usize, PickleError> {
        if inner >= MAX_DEPTH {
            return Err(self.bad(format!("values nested more than {MAX_DEPTH} deep")));
        }
        Ok(inner + 1)
    }

    /// Push container `v`, whose values are `inner` deep.
    fn push_over(&mut self, v: Value, inner: usize) -> Result<(), PickleError> {
        let depth = self.depth_over(inner)?;
        self.stack.push((v, depth));
        Ok(())
    }

    fn pop(&mut self) -> Result<Node, PickleError> {
        self.stack.pop().ok_or_else(|| self.bad("pop from an empty stack"))
    }

    fn top(&mut self) -> Result<&mut Node, PickleError> {
        let at = self.pos;
        self.stack.last_mut().ok_or(PickleError::Malformed { at, what: "empty stack".into() })
    }

    /// A copy of the top of the stack, paid from the copy budget.
    fn copy_top(&mut self) -> Result<Node, PickleError> {
        let at = self.pos;
        let top = self.stack.last().ok_or(PickleError::Malformed { at, what: "empty stack".into() })?;
        copy(top, &mut self.copy_budget).ok_or_else(|| over_budget(at))
    }

    /// Everything pushed since the last MARK, and the depth of the deepest.
    fn pop_mark(&mut self) -> Result<(Vec<Value>, usize), PickleError> {
        let m = self.marks.pop().ok_or_else(|| self.bad("no MARK"))?;
        if m > self.stack.len() {
            return Err(self.bad("MARK above the stack"));
        }
        Ok(unzip(self.stack.split_off(m)))
    }

    fn memo_get(&mut self, key: u64) -> Result<(), PickleError> {
        let at = self.pos;
        let node = self.memo.get(&key).ok_or_else(|| self.bad(format!("memo key {key} unset")))?;
        let node = copy(node, &mut self.copy_budget).ok_or_else(|| over_budget(at))?;
        self.stack.push(node);
        Ok(())
    }

    fn memo_put(&mut self, key: u64) -> Result<(), PickleError> {
        let node = self.copy_top()?;
        self.memo.insert(key, node);
        Ok(())
    }

    /// SETITEM(S) with `items` (keys and values, `inner` deep). Repeated keys are merged at STOP.
    fn set_items(&mut self, items: Vec<Value>, inner: usize) -> Result<(), PickleError> {
        if !items.len().is_multiple_of(2) {
            return Err(self.bad("odd number of dict items"));
        }
        let depth = self.depth_over(inner)?;
        let at = self.pos;
        match self.top()? {
            (Value::Dict(pairs), d) => {
                let mut it = items.into_iter();
                while let (Some(k), Some(v)) = (it.next(), it.next()) {
                    pairs.push((k, v));
                }
                *d = (*d).max(depth);
                Ok(())
            }
            // Items set on an opaque object (a dict subclass we do not know) are dropped.
            (Value::Object { .. }, _) => Ok(()),
            _ => Err(PickleError::Malformed { at, what: "SETITEM(S) on a non-dict".into() }),
        }
    }

    /// APPEND(S) / ADDITEMS with `items` (`inner` deep).
    fn append(&mut self, items: Vec<Value>, inner: usize) -> Result<(), PickleError> {
        let depth = self.depth_over(inner)?;
        let at = self.pos;
        match self.top()? {
            (Value::List(v) | Value::Set(v), d) => {
                v.extend(items);
                *d = (*d).max(depth);
                Ok(())
            }
            (Value::Object { .. }, _) => Ok(()),
            _ => Err(PickleError::Malformed { at, what: "APPEND(S) on a non-list".into() }),
        }
    }

    fn run(mut self) -> Result<Value, PickleError> {
        loop {
            let at = self.pos;
            let op = self.u8()?;
            match op {
                0x80 => {
                    self.u8()?; // PROTO
                }
                0x95 => {
                    self.le::<8>()?; // FRAME
                }
                b'.' => {
                    let (mut v, _) = self.pop()?;
                    merge_keys(&mut v);
                    return Ok(v);
                }
                b'(' => self.marks.push(self.stack.len()),
                b'0' => {
                    self.pop()?;
                }
                b'1' => {
                    self.pop_mark()?;
                }
                b'2' => {
                    let v = self.copy_top()?;
                    self.stack.push(v);
                }
                b'N' => self.push(Value::None),
                0x88 => self.push(Value::Bool(true)),
                0x89 => self.push(Value::Bool(false)),
                b'J' => {
                    let v = i32::from_le_bytes(self.le()?);
                    self.push(Value::Int(v as i64));
                }
                b'K' => {
                    let v = self.u8()?;
                    self.push(Value::Int(v as i64));
                }
                b'M' => {
                    let v = u16::from_le_bytes(self.le()?);
                    self.push(Value::Int(v as i64));
                }
                0x8a | 0x8b => {
                    let n = if op == 0x8a { self.u8()? as usize } else { self.len_u32()? };
                    let bytes = self.take(n)?;
                    self.push(long_from_le(bytes).map_or_else(|| Value::BigInt(bytes.to_vec()), Value::Int));
                }
                b'I' | b'L' => {
                    let line = self.line()?.trim_end_matches('L');
                    let v = match line {
                        "00" => Value::Bool(false),
                        "01" => Value::Bool(true),
                        s => Value::Int(s.parse().map_err(|_| self.bad(format!("bad integer `{s}`")))?),
                    };
                    self.push(v);
                }
                b'G' => {
                    let v = f64::from_be_bytes(self.le()?);
                    self.push(Value::Float(v));
                }
                b'F' => {
                    let s = self.line()?;
                    let v = s.parse().map_err(|_| self.bad(format!("bad float `{s}`")))?;
                    self.push(Value::Float(v));
                }
                b'X' | b'T' => {
                    let n = self.len_u32()?;
                    let v = self.string(n)?;
                    self.push(v);
                }
                0x8c | b'U' => {
                    let n = self.u8()? as usize;
                    let v = self.string(n)?;
                    self.push(v);
                }
                0x8d => {
                    let n = self.len_u64()?;
                    let v = self.string(n)?;
                    self.push(v);
                }
                b'V' => {
                    let s = self.line()?.to_string();
                    self.push(Value::Str(s));
                }
                b'S' => {
                    let s = self.line()?.trim();
                    let s = s.trim_matches(|c| c == '\'' || c == '"').to_string();
                    self.push(Value::Str(s));
                }
                b'B' | b'C' | 0x8e | 0x96 => {
                    let n = match op {
                        b'B' => self.len_u32()?,
                        b'C' => self.u8()? as usize,
                        _ => self.len_u64()?,
                    };
                    let v = self.take(n)?.to_vec();
                    self.push(Value::Bytes(v));
                }
                b')' => self.push(Value::Tuple(vec![])),
                b't' => {
                    let (items, inner) = self.pop_mark()?;
                    self.push_over(Value::Tuple(items), inner)?;
                }
                0x85..=0x87 => {
                    let n = (op - 0x84) as usize;
                    if self.stack.len() < n {
                        return Err(self.bad("TUPLEn on a short stack"));
                    }
                    let (items, inner) = unzip(self.stack.split_off(self.stack.len() - n));
                    self.push_over(Value::Tuple(items), inner)?;
                }
                b']' => self.push(Value::List(vec![])),
                b'l' => {
                    let (items, inner) = self.pop_mark()?;
                    self.push_over(Value::List(items), inner)?;
                }
                b'a' => {
                    let (v, inner) = self.pop()?;
                    self.append(vec![v], inner)?;
                }
                b'e' | 0x90 => {
                    let (items, inner) = self.pop_mark()?;
                    self.append(items, inner)?;
                }
                b'}' => self.push(Value::Dict(vec![])),
                b'd' => {
                    let (items, inner) = self.pop_mark()?;
                    self.push(Value::Dict(vec![]));
                    self.set_items(items, inner)?;
                }
                b's' => {
                    let (v, dv) = self.pop()?;
                    let (k, dk) = self.pop()?;
                    self.set_items(vec![k, v], dk.max(dv))?;
                }
                b'u' => {
                    let (items, inner) = self.pop_mark()?;
                    self.set_items(items, inner)?;
                }
                0x8f => self.push(Value::Set(vec![])),
                0x91 => {
                    let (items, inner) = self.pop_mark()?;
                    self.push_over(Value::Set(items), inner)?;
                }
                b'c' => {
                    let module = self.line()?.to_string();
                    let name = self.line()?.to_string();
                    self.push(Value::Global { module, name });
                }
                0x93 => {
                    let (name, _) = self.pop()?;
                    let (module, _) = self.pop()?;
                    match (module, name) {
                        (Value::Str(module), Value::Str(name)) => self.push(Value::Global { module, name }),
                        _ => return Err(self.bad("STACK_GLOBAL needs two strings")),
                    }
                }
                b'R' => {
                    let (args, da) = self.pop()?;
                    let (callable, dc) = self.pop()?;
                    let v = reduce(callable, args).map_err(|what| PickleError::Malformed { at, what })?;
                    self.push_over(v, da.max(dc))?;
                }
                0x81 | 0x92 => {
                    if op == 0x92 {
                        self.pop()?; // NEWOBJ_EX's kwargs
                    }
                    let (args, da) = self.pop()?;
                    let (cls, dc) = self.pop()?;
                    self.push_over(object(cls, args), da.max(dc))?;
                }
                b'b' => {
                    let (state, inner) = self.pop()?;
                    let depth = self.depth_over(inner)?;
                    // A dict's BUILD state is its instance `__dict__` (e.g. a state_dict's
                    // `_metadata`), not items; only opaque objects keep it.
                    if let (Value::Object { state: slot, .. }, d) = self.top()? {
                        *slot = Some(Box::new(state));
                        *d = (*d).max(depth);
                    }
                }
                b'q' => {
                    let k = self.u8()? as u64;
                    self.memo_put(k)?;
                }
                b'r' => {
                    let k = self.len_u32()? as u64;
                    self.memo_put(k)?;
                }
                b'p' => {
                    let s = self.line()?;
                    let k = s.parse().map_err(|_| self.bad(format!("bad memo key `{s}`")))?;
                    self.memo_put(k)?;
                }
                0x94 => {
                    let k = self.memo.len() as u64;
                    self.memo_put(k)?;
                }
                b'h' => {
                    let k = self.u8()? as u64;
                    self.memo_get(k)?;
                }
                b'j' => {
                    let k = self.len_u32()? as u64;
                    self.memo_get(k)?;
                }
                b'g' => {
                    let s = self.line()?;
                    let k = s.parse().map_err(|_| self.bad(format!("bad memo key `{s}`")))?;
                    self.memo_get(k)?;
                }
                b'Q' => {
                    let (pid, _) = self.pop()?;
                    let v = persistent_load(pid).map_err(|what| PickleError::Malformed { at, what })?;
                    self.push(v);
                }
                other => return Err(PickleError::Opcode(other, at)),
            }
        }
    }
}

/// The values of `nodes` and the deepest one's depth (0 for none).
fn unzip(nodes: Vec<Node>) -> (Vec<Value>, usize) {
    let depth = nodes.iter().map(|n| n.1).max().unwrap_or(0);
    (nodes.into_iter().map(|n| n.0).collect(), depth)
}

/// A deep copy of `node`, if `budget` can pay for it.
fn copy(node: &Node, budget: &mut usize) -> Option<Node> {
    *budget = budget.checked_sub(copy_cost(&node.0, *budget))?;
    Some(node.clone())
}

fn over_budget(at: usize) -> PickleError {
    let what = format!("memoised values copied over {} MiB in all (a pickle bomb?)", MAX_COPY_BYTES >> 20);
    PickleError::Malformed { at, what }
}

/// About the bytes a deep copy of `v` allocates; the count stops once it passes `limit`.
fn copy_cost(v: &Value, limit: usize) -> usize {
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
fn merge_keys(v: &mut Value) {
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
fn brief(v: &Value) -> String {
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
fn long_from_le(bytes: &[u8]) -> Option<i64> {
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
fn persistent_load(pid: Value) -> Result<Value, String> {
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
fn object(callable: Value, args: Value) -> Value {
    Value::Object { callable: Box::new(callable), args: Box::new(args), state: None }
}

/// The items of a tuple or list; none for any other value.
fn items(v: Value) -> Vec<Value> {
    match v {
        Value::Tuple(items) | Value::List(items) => items,
        _ => Vec::new(),
    }
}

/// The items of a call's first argument (a list or tuple).
fn first_arg_items(args: Value) -> Vec<Value> {
    items(items(args).into_iter().next().unwrap_or(Value::None))
}

/// The calls a checkpoint's structure needs; any other call is kept as an inert object.
fn reduce(callable: Value, args: Value) -> Result<Value, String> {
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

#[cfg(test)]
mod tests {
    use super::*;

    // Byte strings below were checked with CPython's `pickle.loads` / `pickletools.dis`.

    #[test]
    fn reads_scalars_containers_and_memo() {
        // {'a': [1, -2, 300, 70000, 2**40], 'b': (1.5, None, True), 'a2': 'a'} with the opcodes
        // CPython's protocol-2 pickler uses, plus a memoised string fetched again (`pickle.loads`
        // of these bytes gives that dict).
        let mut p = vec![0x80, 2, b'}', b'q', 0, b'(', b'X', 1, 0, 0, 0, b'a', b'q', 1, b']', b'q', 2, b'('];
        p.extend([b'K', 1, b'J', 0xfe, 0xff, 0xff, 0xff, b'M', 0x2c, 0x01, b'J', 0x70, 0x11, 0x01, 0x00]);
        p.extend([0x8a, 6, 0, 0, 0, 0, 0, 1, b'e']);
        p.extend([b'X', 1, 0, 0, 0, b'b', b'G', 0x3f, 0xf8, 0, 0, 0, 0, 0, 0, b'N', 0x88, 0x87]);
        p.extend([b'X', 2, 0, 0, 0, b'a', b'2', b'h', 1, b'u', b'.']);
        let v = read(&p).unwrap();
        assert_eq!(
            v.get("a"),
            Some(&Value::List(vec![
                Value::Int(1),
                Value::Int(-2),
                Value::Int(300),
                Value::Int(70000),
                Value::Int(1 << 40)
            ]))
        );
        assert_eq!(v.get("b"), Some(&Value::Tuple(vec![Value::Float(1.5), Value::None, Value::Bool(true)])));
        assert_eq!(v.get("a2"), Some(&Value::Str("a".into())));
    }

    #[test]
    fn globals_are_recorded_never_called() {
        // pickle.dumps of an object whose __reduce__ is (os.system, ('echo pwned',))
        let mut p = b"\x80\x02cposix\nsystem\nq\x00X\x0a\x00\x00\x00echo pwnedq\x01\x85q\x02Rq\x03.".to_vec();
        let v = read(&p).unwrap();
        match v {
            Value::Object { callable, args, .. } => {
                assert_eq!(*callable, Value::Global { module: "posix".into(), name: "system".into() });
                assert_eq!(*args, Value::Tuple(vec![Value::Str("echo pwned".into())]));
            }
            other => panic!("{other:?}"),
        }
        // Truncation anywhere is an error, not a panic.
        for n in 0..p.len() - 1 {
            assert!(read(&p[..n]).is_err(), "{n}");
        }
        p[2] = 0xff;
        assert!(matches!(read(&p), Err(PickleError::Opcode(0xff, 2))));
    }

    #[test]
    fn rebuild_tensor_reads_storage_view() {
        // (torch._utils._rebuild_tensor_v2, (pid, 2, (2, 3), (1, 2), False, OrderedDict()))
        let mut p = b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n((X\x07\x00\x00\x00storagectorch\nFloatStorage\nX\x01\x00\x00\x000X\x03\x00\x00\x00cpuK\x08tQK\x02K\x02K\x03\x86K\x01K\x02\x86\x89ccollections\nOrderedDict\n)R".to_vec();
        p.extend(b"tR.");
        let v = read(&p).unwrap();
        assert_eq!(
            v,
            Value::Tensor(TensorRef {
                storage: StorageRef {
                    class: "FloatStorage".into(),
                    key: "0".into(),
                    location: "cpu".into(),
                    numel: 8
                },
                offset: 2,
                size: vec![2, 3],
                stride: vec![1, 2],
            })
        );
    }

    #[test]
    fn long_integers_sign_extend() {
        assert_eq!(long_from_le(&[0xff]), Some(-1));
        assert_eq!(long_from_le(&[0x00, 0x80]), Some(-32768));
        assert_eq!(long_from_le(&[0xff, 0x00]), Some(255));
        assert_eq!(long_from_le(&[0; 9]), None);
    }

    /// `80 02 ] q 00`, `rounds` × `h 00 h 00 86 q 00`, `.`: each round memoises a pair of the last
    /// value, so the value doubles every round.
    fn doubling(rounds: usize) -> Vec<u8> {
        [vec![0x80, 2, b']', b'q', 0], b"h\x00h\x00\x86q\x00".repeat(rounds), vec![b'.']].concat()
    }

    #[test]
    fn memo_doubling_bomb_is_refused() {
        let pair = |v: Value| Value::Tuple(vec![v.clone(), v]);
        assert_eq!(read(&doubling(2)).unwrap(), pair(pair(Value::List(vec![]))));
        // 64 rounds would make 2^64 values; a 64 MiB budget (2 GiB in `read`) keeps the test light.
        let e = Machine::new(&doubling(64), 64 << 20).run().unwrap_err().to_string();
        assert!(e.contains("pickle bomb"), "{e}");
    }

    #[test]
    fn memo_copies_are_bounded_in_all() {
        // A 1 MiB string fetched (and popped) 3000 times: 3 GiB of copies, never much at once.
        let mut p = vec![0x80, 2, b'X'];
        p.extend((1u32 << 20).to_le_bytes());
        p.extend(vec![b'a'; 1 << 20]);
        p.extend([b'q', 0]);
        p.extend(b"h\x000".repeat(3000));
        p.push(b'.');
        let e = read(&p).unwrap_err().to_string();
        assert!(e.contains("copied over 2048 MiB") && e.contains("pickle bomb"), "{e}");
    }

    #[test]
    fn deep_nesting_is_refused() {
        let (n, m) = (1_000_000, 5000);
        let cases = [
            ("TUPLE1", [vec![0x80, 2, b'N'], vec![0x85; n], vec![b'.']].concat()),
            ("MARK…TUPLE", [vec![b'('; n], vec![b'N'], vec![b't'; n], vec![b'.']].concat()),
            ("APPEND", [vec![b']'; m], vec![b'a'; m - 1], vec![b'.']].concat()),
            ("SETITEM", [vec![b'}'], b"K\x01}".repeat(m - 1), vec![b's'; m - 1], vec![b'.']].concat()),
        ];
        for (what, p) in cases {
            let e = read(&p).unwrap_err().to_string();
            assert!(e.contains("nested more than 1000 deep"), "{what}: {e}");
        }
    }

    #[test]
    fn values_at_the_depth_limit_are_safe_to_use() {
        let nested = |depth: usize| [vec![0x80, 2, b'N'], vec![0x85; depth - 1], vec![b'.']].concat();
        let v = read(&nested(MAX_DEPTH)).unwrap();
        // Clone, compare, print and drop recurse per level: they fit in a 1 MiB stack.
        std::thread::Builder::new()
            .stack_size(1 << 20)
            .spawn(move || {
                let w = v.clone();
                assert_eq!(v, w);
                assert!(format!("{w:?}").ends_with(&"])".repeat(MAX_DEPTH - 1)));
                drop((v, w));
            })
            .unwrap()
            .join()
            .unwrap();
        assert!(read(&nested(MAX_DEPTH + 1)).is_err());
    }

    #[test]
    fn repeated_dict_keys_merge_like_python() {
        // {'a': 1, 'b': 2, 'a': 3, 5: 4, 5: 6} via SETITEMS, then a second SETITEM of 'b':
        // Python gives {'a': 3, 'b': 8, 5: 6}.
        let a = [b'X', 1, 0, 0, 0, b'a'];
        let b = [b'X', 1, 0, 0, 0, b'b'];
        let p = [
            &[0x80, 2, b'}', b'('][..],
            &a,
            &[b'K', 1],
            &b,
            &[b'K', 2],
            &a,
            &[b'K', 3, b'K', 5, b'K', 4, b'K', 5, b'K', 6, b'u'],
            &b,
            &[b'K', 8, b's', b'.'],
        ]
        .concat();
        let int = Value::Int;
        let s = |k: &str| Value::Str(k.into());
        assert_eq!(
            read(&p).unwrap(),
            Value::Dict(vec![(s("a"), int(3)), (s("b"), int(8)), (int(5), int(6))])
        );
    }

    #[test]
    fn many_distinct_keys_all_load() {
        // 300 000 single SETITEMs (quadratic, and so minutes long, if each scanned the keys
        // before it).
        let n = 300_000;
        let mut p = vec![0x80, 2, b'}'];
        for i in 0..n as i32 {
            p.push(b'J');
            p.extend(i.to_le_bytes());
            p.extend([b'N', b's']);
        }
        p.push(b'.');
        let Value::Dict(pairs) = read(&p).unwrap() else { panic!("not a dict") };
        assert_eq!(pairs.len(), n);
        assert_eq!(pairs[n - 1].0, Value::Int(n as i64 - 1));
    }

    #[test]
    fn integers_beyond_64_bits_are_kept() {
        // {'big': 2**64 (LONG1), 'neg': -2**80 (LONG4), 'n': 7}
        let mut p = b"\x80\x02}(X\x03\x00\x00\x00big\x8a\x09".to_vec();
        p.extend([0, 0, 0, 0, 0, 0, 0, 0, 1]);
        p.extend(b"X\x03\x00\x00\x00neg\x8b\x0b\x00\x00\x00");
        p.extend([0; 10]);
        p.push(0xff);
        p.extend(b"X\x01\x00\x00\x00nK\x07u.");
        let v = read(&p).unwrap();
        assert_eq!(v.get("big"), Some(&Value::BigInt(vec![0, 0, 0, 0, 0, 0, 0, 0, 1])));
        assert_eq!(v.get("neg"), Some(&Value::BigInt([vec![0; 10], vec![0xff]].concat())));
        assert_eq!(v.get("n"), Some(&Value::Int(7)));
    }

    #[test]
    fn errors_quote_values_briefly() {
        // _rebuild_tensor_v2 called with 100 000 Nones: the message quotes only their start.
        let p = [&b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n("[..], &[b'N'; 100_000], b"tR."].concat();
        let e = read(&p).unwrap_err().to_string();
        assert!(e.contains("unexpected arguments Tuple([None, None") && e.len() < 400, "{e}");
    }
}
