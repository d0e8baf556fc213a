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

use std::collections::HashMap;

use thiserror::Error;

mod values;
use values::*;

/// Deeper values are refused: dropping, cloning, printing or flattening one recurses per level.
const MAX_DEPTH: usize = 1000;
/// Memo stores, memo fetches and DUP copy at most this many bytes in all (a pickle bomb's guard):
/// 64 MiB. A state dict or Lightning checkpoint copies only small values (keys, storage
/// locations, tuples of sizes), kilobytes to a few MiB; a doubling bomb reaches the limit within
/// about 26 opcodes and is refused after at most 64 MiB of work.
pub const MAX_COPY_BYTES: usize = 64 << 20;

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
            if op == b'.' {
                let (mut v, _) = self.pop()?; // STOP
                merge_keys(&mut v);
                return Ok(v);
            }
            let known = self.constant(op)?
                || self.container(op)?
                || self.global_or_call(op, at)?
                || self.control(op)?;
            if !known {
                return Err(PickleError::Opcode(op, at));
            }
        }
    }

    /// Opcodes that push a constant: None, booleans, integers, floats, strings, bytes. Returns whether `op` was one of them.
    fn constant(&mut self, op: u8) -> Result<bool, PickleError> {
        match op {
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
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Opcodes that build or fill tuples, lists, dicts and sets. Returns whether `op` was one of them.
    fn container(&mut self, op: u8) -> Result<bool, PickleError> {
        match op {
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
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Opcodes that name globals and record calls (never made): GLOBAL, REDUCE, NEWOBJ, BUILD, persistent ids. Returns whether `op` was one of them.
    fn global_or_call(&mut self, op: u8, at: usize) -> Result<bool, PickleError> {
        match op {
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
            b'Q' => {
                let (pid, _) = self.pop()?;
                let v = persistent_load(pid).map_err(|what| PickleError::Malformed { at, what })?;
                self.push(v);
            }
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Framing, marks, stack and memo opcodes. Returns whether `op` was one of them.
    fn control(&mut self, op: u8) -> Result<bool, PickleError> {
        match op {
            0x80 => {
                self.u8()?; // PROTO
            }
            0x95 => {
                self.le::<8>()?; // FRAME
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
            _ => return Ok(false),
        }
        Ok(true)
    }
}

#[cfg(test)]
mod tests;
