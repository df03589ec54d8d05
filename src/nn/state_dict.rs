//! State dicts: parameters saved to and loaded from safetensors files under PyTorch's
//! `state_dict` names, so weights move between nabla and PyTorch by name.

use super::{Buffer, Module, Param};
use crate::error::{Error, Result};
use crate::tensor::{Element, Tensor};
use safetensors::{Dtype, SafeTensorError, SafeTensors};
use std::collections::BTreeMap;
use std::path::Path;

/// One stored tensor, as read from a file.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredTensor {
    /// `"F32"`, `"F64"`, `"I64"`, … (safetensors' names).
    pub dtype: String,
    /// The dimensions.
    pub shape: Vec<usize>,
    /// The values as f64 (integers converted), row-major.
    pub values: Vec<f64>,
}

/// The tensors of a safetensors file by name, and its metadata.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StateDict {
    /// Tensors by name.
    pub tensors: BTreeMap<String, StoredTensor>,
    /// The file's `__metadata__` strings.
    pub metadata: BTreeMap<String, String>,
}

fn io_error(op: &'static str, path: &Path, msg: impl ToString) -> Error {
    Error::Io { op, path: path.display().to_string(), msg: msg.to_string() }
}

/// Reads every tensor of a safetensors file (F32, F64, F16 excluded; I64, I32 as numbers).
///
/// A damaged or hostile file gives an `Err`, never a panic: the header's declared size,
/// every tensor's offsets, shape and dtype are checked against the bytes actually present
/// before anything is converted, so memory stays proportional to the file's size.
pub fn read_safetensors(path: impl AsRef<Path>) -> Result<StateDict> {
    let path = path.as_ref();
    let bytes = std::fs::read(path).map_err(|e| io_error("load", path, e))?;
    parse(&bytes).map_err(|msg| io_error("load", path, msg))
}

impl StateDict {
    /// Parses the bytes of a safetensors file, as [`read_safetensors`] does a file.
    ///
    /// ```
    /// use nabla::nn::StateDict;
    /// let err = StateDict::from_bytes(&[8, 0, 0, 0, 0, 0, 0, 0, b'{']).unwrap_err();
    /// assert!(err.to_string().starts_with("load: <bytes>: "));
    /// ```
    pub fn from_bytes(bytes: &[u8]) -> Result<StateDict> {
        parse(bytes).map_err(|msg| Error::Io { op: "load", path: "<bytes>".into(), msg })
    }
}

/// The tensors of a safetensors buffer. The `safetensors` crate validates the header (its
/// size at most 100 MB and within the buffer; offsets contiguous, in bounds and matching
/// each shape times its dtype's size, without overflow) before any tensor is touched.
fn parse(bytes: &[u8]) -> std::result::Result<StateDict, String> {
    if let Some(declared) = bytes.get(..8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
        && declared > (bytes.len() - 8) as u64
    {
        let text = bytes[..8].iter().all(|b| b.is_ascii_graphic() || b.is_ascii_whitespace());
        let start = String::from_utf8_lossy(&bytes[..bytes.len().min(16)]).escape_debug().to_string();
        return Err(format!(
            "not a safetensors file: its first 8 bytes declare a header of {declared} bytes in a file of {}{}",
            bytes.len(),
            if text { format!(" (it begins with text: \"{start}\")") } else { String::new() }
        ));
    }
    let (_, header) = SafeTensors::read_metadata(bytes).map_err(|e| describe(e, bytes.len()))?;
    let metadata = header.metadata().clone().unwrap_or_default().into_iter().collect();
    let file = SafeTensors::deserialize(bytes).map_err(|e| describe(e, bytes.len()))?;
    let mut tensors = BTreeMap::new();
    for (name, view) in file.tensors() {
        let raw = view.data();
        let width = match view.dtype() {
            Dtype::F64 | Dtype::I64 => 8,
            Dtype::F32 | Dtype::I32 => 4,
            other => return Err(format!("tensor {name:?}: dtype {other:?} is not supported")),
        };
        let count = view.shape().iter().try_fold(1usize, |n, &d| n.checked_mul(d));
        if count.and_then(|n| n.checked_mul(width)) != Some(raw.len()) {
            return Err(format!("tensor {name:?}: shape {:?} does not match its {} bytes", view.shape(), raw.len()));
        }
        let values: Vec<f64> = match view.dtype() {
            Dtype::F64 => raw.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes"))).collect(),
            Dtype::F32 => raw.chunks_exact(4).map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")) as f64).collect(),
            Dtype::I64 => raw.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")) as f64).collect(),
            _ => raw.chunks_exact(4).map(|c| i32::from_le_bytes(c.try_into().expect("4 bytes")) as f64).collect(),
        };
        tensors.insert(name, StoredTensor { dtype: format!("{:?}", view.dtype()), shape: view.shape().to_vec(), values });
    }
    Ok(StateDict { tensors, metadata })
}

/// The safetensors crate's error in words.
fn describe(e: SafeTensorError, len: usize) -> String {
    match e {
        SafeTensorError::HeaderTooSmall => format!("not a safetensors file: {len} bytes, fewer than the 8-byte header size"),
        SafeTensorError::HeaderTooLarge => "the declared header size exceeds the format's 100 MB limit".into(),
        SafeTensorError::InvalidHeaderLength => format!("the declared header runs past the end of the {len}-byte file"),
        SafeTensorError::InvalidHeader | SafeTensorError::InvalidHeaderStart => "the header is not UTF-8 JSON".into(),
        SafeTensorError::InvalidHeaderDeserialization | SafeTensorError::JsonError(_) => {
            "the header is not a valid safetensors JSON map (syntax, fields or dtype name)".into()
        }
        SafeTensorError::MetadataIncompleteBuffer => "the data section is shorter or longer than the header declares".into(),
        SafeTensorError::InvalidOffset(name) => format!("tensor {name:?}: its offsets overlap, leave a gap or run backwards"),
        SafeTensorError::TensorInvalidInfo => "a tensor's shape and dtype do not match its byte range".into(),
        SafeTensorError::ValidationOverflow => "a tensor's declared size overflows".into(),
        other => format!("{other:?}"),
    }
}

fn dtype_name<T: Element>() -> &'static str {
    match T::DTYPE {
        "f64" => "F64",
        _ => "F32",
    }
}

/// Writes `params` to `path` as safetensors under their names. The file is written to a
/// temporary file beside it and renamed over it, so a crash never leaves a half-written
/// file in place of the previous one.
pub fn save_state_dict<T: Element>(params: &[(String, Param<T>)], path: impl AsRef<Path>) -> Result<()> {
    let tensors: Vec<(String, Tensor<T>)> = params.iter().map(|(name, p)| (name.clone(), p.tensor())).collect();
    save_tensors(&tensors, path)
}

/// Writes named tensors to `path` as safetensors, through a temporary file renamed into
/// place (what [`save_state_dict`] and `optim::save_state` use).
pub fn save_tensors<T: Element>(tensors: &[(String, Tensor<T>)], path: impl AsRef<Path>) -> Result<()> {
    let entries: Vec<(String, Tensor<T>, bool)> = tensors.iter().map(|(n, t)| (n.clone(), t.clone(), false)).collect();
    write_entries(&entries, path.as_ref())
}

/// Writes a module's parameters and buffers (integer buffers as `I64`).
pub(crate) fn save_module<T: Element>(module: &dyn Module<T>, path: impl AsRef<Path>) -> Result<()> {
    let mut entries: Vec<(String, Tensor<T>, bool)> = module.named_parameters().into_iter().map(|(n, p)| (n, p.tensor(), false)).collect();
    entries.extend(module.named_buffers().into_iter().map(|(n, b)| (n, b.tensor(), b.is_integer())));
    write_entries(&entries, path.as_ref())
}

/// Writes `(name, value, as_i64)` entries as safetensors, through a temporary file.
fn write_entries<T: Element>(entries: &[(String, Tensor<T>, bool)], path: &Path) -> Result<()> {
    let float = if T::DTYPE == "f64" { Dtype::F64 } else { Dtype::F32 };
    let buffers: Vec<(String, Vec<usize>, Dtype, Vec<u8>)> = entries
        .iter()
        .map(|(name, t, integer)| {
            let values = t.to_vec();
            let (dtype, bytes) = if *integer {
                (Dtype::I64, values.iter().flat_map(|v| (v.to_f64().expect("float") as i64).to_le_bytes()).collect())
            } else {
                (float, values.iter().flat_map(|&v| le_bytes(v)).collect())
            };
            (name.clone(), t.shape().to_vec(), dtype, bytes)
        })
        .collect();
    let views = buffers
        .iter()
        .map(|(name, shape, dtype, bytes)| safetensors::tensor::TensorView::new(*dtype, shape.clone(), bytes).map(|v| (name.clone(), v)))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| io_error("save", path, e))?;
    let data = safetensors::serialize(views, &None).map_err(|e| io_error("save", path, e))?;
    let tmp = path.with_extension("safetensors.tmp");
    std::fs::write(&tmp, data).map_err(|e| io_error("save", &tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| io_error("save", path, e))
}

fn le_bytes<T: Element>(v: T) -> Vec<u8> {
    match T::DTYPE {
        "f64" => v.to_f64().expect("float").to_le_bytes().to_vec(),
        _ => (v.to_f64().expect("float") as f32).to_le_bytes().to_vec(),
    }
}

/// Sets `params` from `state` by name, as PyTorch's `load_state_dict(strict=True)`: every
/// parameter must be present with its shape and element type, and the file must hold
/// nothing else. On any mismatch nothing is changed and the error lists every mismatch.
pub fn load_state_dict<T: Element>(params: &[(String, Param<T>)], state: &StateDict) -> Result<()> {
    let slots: Vec<(String, Slot<T>)> = params.iter().map(|(n, p)| (n.clone(), Slot::Param(p.clone()))).collect();
    load_slots(&slots, state)
}

/// Sets a module's parameters and buffers from `state`, strictly, all or nothing.
pub(crate) fn load_module<T: Element>(module: &dyn Module<T>, state: &StateDict) -> Result<()> {
    let mut slots: Vec<(String, Slot<T>)> = module.named_parameters().into_iter().map(|(n, p)| (n, Slot::Param(p))).collect();
    slots.extend(module.named_buffers().into_iter().map(|(n, b)| (n, Slot::Buffer(b))));
    load_slots(&slots, state)
}

/// Where a stored tensor goes.
enum Slot<T: Element> {
    Param(Param<T>),
    Buffer(Buffer<T>),
}

impl<T: Element> Slot<T> {
    fn shape(&self) -> Vec<usize> {
        match self {
            Slot::Param(p) => p.shape(),
            Slot::Buffer(b) => b.shape(),
        }
    }

    fn dtype(&self) -> &'static str {
        match self {
            Slot::Buffer(b) if b.is_integer() => "I64",
            _ => dtype_name::<T>(),
        }
    }

    fn set(&self, value: ndarray::ArrayD<T>) -> Result<()> {
        match self {
            Slot::Param(p) => p.set(value),
            Slot::Buffer(b) => b.set(value),
        }
    }
}

fn load_slots<T: Element>(slots: &[(String, Slot<T>)], state: &StateDict) -> Result<()> {
    let mut problems = Vec::new();
    for (name, slot) in slots {
        match state.tensors.get(name) {
            None => problems.push(format!("missing {name}")),
            Some(t) if t.shape != slot.shape() => {
                problems.push(format!("{name} has shape {:?} in the file, {:?} in the module", t.shape, slot.shape()))
            }
            Some(t) if t.dtype != slot.dtype() => {
                problems.push(format!("{name} is {} in the file, {} in the module", t.dtype, slot.dtype()))
            }
            Some(t) if t.values.len() != t.shape.iter().product::<usize>() => {
                problems.push(format!("{name} has {} values for shape {:?}", t.values.len(), t.shape))
            }
            Some(_) => {}
        }
    }
    for name in state.tensors.keys() {
        if !slots.iter().any(|(n, _)| n == name) {
            problems.push(format!("unexpected {name}"));
        }
    }
    if !problems.is_empty() {
        return Err(Error::invalid("load_state_dict", problems.join("; ")));
    }
    // Every value is built before the first one changes: all or nothing.
    let values = slots
        .iter()
        .map(|(name, _)| {
            let t = &state.tensors[name];
            ndarray::ArrayD::from_shape_vec(t.shape.as_slice(), t.values.iter().map(|&v| T::of(v)).collect())
                .map_err(|e| Error::shape("load_state_dict", format!("{name}: {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    for ((_, slot), value) in slots.iter().zip(values) {
        slot.set(value)?;
    }
    Ok(())
}
