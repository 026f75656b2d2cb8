//! `spillq.MSGPACK`: Python objects to MessagePack and back, in Rust.
//!
//! The bytes are what `rmp-serde` (spillq's default codec, `MsgPack`) writes and reads for the
//! same data, so a Rust `Queue<T>` and a Python queue share a directory: a struct is an array
//! of its fields, a map is a map, `Option::None` is nil, `serde_bytes` byte strings are bin.
//!
//! | Python | MessagePack | back in Python |
//! |---|---|---|
//! | `None`, `bool` | nil, bool | the same |
//! | `int` (-2**63 .. 2**64-1) | the smallest int format | `int` |
//! | `float` | float 64 | `float` (float 32 too) |
//! | `str` | str | `str` |
//! | `bytes`, `bytearray` | bin | `bytes` |
//! | `list`, `tuple` | array | `list` (`tuple` as a map key) |
//! | `dict` | map | `dict` |
//!
//! Decoding never panics and never allocates beyond the input: `rmpv` bounds nesting and
//! preallocation, and every failure is a `ValueError`.

use pyo3::exceptions::{PyOverflowError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{
    PyBool, PyByteArray, PyBytes, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple,
};
use rmpv::Value;

/// Containers nested deeper than this are refused when packing: a self-referencing list ends
/// here instead of overflowing the stack, and what is packed stays well within the depth
/// that `rmpv` (1024, two levels per container) and `rmp-serde` read back.
pub(crate) const MAX_NESTING: usize = 256;

/// Appends the MessagePack encoding of `item` to `buf`.
///
/// # Errors
///
/// `TypeError` for a type with no MessagePack equivalent, `OverflowError` for an `int` out of
/// range, `ValueError` for nesting deeper than [`MAX_NESTING`] or a `str` with lone surrogates.
pub(crate) fn pack(item: &Bound<'_, PyAny>, buf: &mut Vec<u8>) -> PyResult<()> {
    pack_nested(item, buf, 0)
}

fn pack_nested(item: &Bound<'_, PyAny>, buf: &mut Vec<u8>, depth: usize) -> PyResult<()> {
    if item.is_none() {
        rmp::encode::write_nil(buf).map_err(write_failed)
    } else if let Ok(flag) = item.cast::<PyBool>() {
        // Before `int`: `bool` is a subclass of `int`.
        rmp::encode::write_bool(buf, flag.is_true()).map_err(write_failed)
    } else if item.is_instance_of::<PyInt>() {
        pack_int(item, buf)
    } else if let Ok(number) = item.cast::<PyFloat>() {
        rmp::encode::write_f64(buf, number.value()).map_err(write_failed)
    } else if let Ok(text) = item.cast::<PyString>() {
        rmp::encode::write_str(buf, &text.to_cow()?).map_err(write_failed)
    } else if let Ok(bytes) = item.cast::<PyBytes>() {
        rmp::encode::write_bin(buf, bytes.as_bytes()).map_err(write_failed)
    } else if let Ok(bytes) = item.cast::<PyByteArray>() {
        rmp::encode::write_bin(buf, &bytes.to_vec()).map_err(write_failed)
    } else if let Ok(list) = item.cast::<PyList>() {
        pack_array(list.len(), list.iter(), buf, depth)
    } else if let Ok(tuple) = item.cast::<PyTuple>() {
        pack_array(tuple.len(), tuple.iter(), buf, depth)
    } else if let Ok(dict) = item.cast::<PyDict>() {
        let depth = nest(depth)?;
        rmp::encode::write_map_len(buf, length(dict.len())?).map_err(write_failed)?;
        let mut written = 0;
        for (key, value) in dict.iter() {
            pack_nested(&key, buf, depth)?;
            pack_nested(&value, buf, depth)?;
            written += 1;
        }
        same_length(dict.len(), written)
    } else {
        Err(PyTypeError::new_err(format!(
            "MSGPACK cannot encode an object of type {}; use None, bool, int, float, str, \
             bytes, list, tuple or dict, or the pickle serializer",
            item.get_type().name()?
        )))
    }
}

fn pack_int(number: &Bound<'_, PyAny>, buf: &mut Vec<u8>) -> PyResult<()> {
    if let Ok(signed) = number.extract::<i64>() {
        rmp::encode::write_sint(buf, signed).map_err(write_failed)?;
    } else if let Ok(unsigned) = number.extract::<u64>() {
        rmp::encode::write_uint(buf, unsigned).map_err(write_failed)?;
    } else {
        return Err(PyOverflowError::new_err(
            "int out of MessagePack's range (-2**63 to 2**64-1)",
        ));
    }
    Ok(())
}

fn pack_array<'py>(
    len: usize,
    items: impl Iterator<Item = Bound<'py, PyAny>>,
    buf: &mut Vec<u8>,
    depth: usize,
) -> PyResult<()> {
    let depth = nest(depth)?;
    rmp::encode::write_array_len(buf, length(len)?).map_err(write_failed)?;
    let mut written = 0;
    for item in items {
        pack_nested(&item, buf, depth)?;
        written += 1;
    }
    same_length(len, written)
}

fn nest(depth: usize) -> PyResult<usize> {
    if depth >= MAX_NESTING {
        return Err(PyValueError::new_err(format!(
            "MSGPACK cannot encode containers nested deeper than {MAX_NESTING} levels \
             (or a container that contains itself)"
        )));
    }
    Ok(depth + 1)
}

fn length(len: usize) -> PyResult<u32> {
    u32::try_from(len).map_err(|_| {
        PyValueError::new_err(format!(
            "MSGPACK cannot encode a container of {len} entries (at most 2**32-1)"
        ))
    })
}

/// The header announced `announced` entries: anything else would be a corrupt record.
fn same_length(announced: usize, written: usize) -> PyResult<()> {
    if announced == written {
        Ok(())
    } else {
        Err(PyValueError::new_err(
            "a container changed size while MSGPACK encoded it",
        ))
    }
}

/// Writing into a `Vec` does not fail; should it, the item is refused, not the process.
fn write_failed(error: impl std::fmt::Display) -> PyErr {
    PyValueError::new_err(format!("MSGPACK could not write: {error}"))
}

/// Decodes one MessagePack value that fills `bytes` exactly.
///
/// # Errors
///
/// `ValueError` if `bytes` is not one MessagePack value (trailing bytes included: pickle bytes,
/// for instance, start like an empty map), holds an extension type, or a str that is not UTF-8;
/// `TypeError` if a map key cannot be a `dict` key (a map).
pub(crate) fn unpack<'py>(py: Python<'py>, bytes: &[u8]) -> PyResult<Bound<'py, PyAny>> {
    let mut rest = bytes;
    let value = rmpv::decode::read_value(&mut rest)
        .map_err(|error| PyValueError::new_err(format!("not MessagePack: {error}")))?;
    if !rest.is_empty() {
        return Err(PyValueError::new_err(format!(
            "not one MessagePack value: {} bytes follow the first value",
            rest.len()
        )));
    }
    to_python(py, &value, false)
}

/// `value` as a Python object; arrays become tuples where they are (inside) map keys, which must
/// be hashable.
fn to_python<'py>(py: Python<'py>, value: &Value, in_key: bool) -> PyResult<Bound<'py, PyAny>> {
    Ok(match value {
        Value::Nil => py.None().into_bound(py),
        Value::Boolean(flag) => PyBool::new(py, *flag).to_owned().into_any(),
        Value::Integer(number) => match (number.as_i64(), number.as_u64()) {
            (Some(signed), _) => signed.into_pyobject(py)?.into_any(),
            (None, Some(unsigned)) => unsigned.into_pyobject(py)?.into_any(),
            (None, None) => return Err(PyValueError::new_err("a MessagePack int out of range")),
        },
        Value::F32(number) => PyFloat::new(py, f64::from(*number)).into_any(),
        Value::F64(number) => PyFloat::new(py, *number).into_any(),
        Value::String(text) => match text.as_str() {
            Some(text) => PyString::new(py, text).into_any(),
            None => {
                return Err(PyValueError::new_err(
                    "a MessagePack str that is not valid UTF-8",
                ));
            }
        },
        Value::Binary(bytes) => PyBytes::new(py, bytes).into_any(),
        Value::Array(items) => {
            let items = items
                .iter()
                .map(|item| to_python(py, item, in_key))
                .collect::<PyResult<Vec<_>>>()?;
            if in_key {
                PyTuple::new(py, items)?.into_any()
            } else {
                PyList::new(py, items)?.into_any()
            }
        }
        Value::Map(entries) => {
            let dict = PyDict::new(py);
            for (key, value) in entries {
                dict.set_item(to_python(py, key, true)?, to_python(py, value, in_key)?)?;
            }
            dict.into_any()
        }
        Value::Ext(kind, _) => {
            return Err(PyValueError::new_err(format!(
                "MessagePack extension type {kind} has no Python equivalent in MSGPACK"
            )));
        }
    })
}
