//! How a Python item becomes the bytes the queue stores: [`ItemCodec`], and the
//! [`Serializer`] class of the constants `spillq.PICKLE` and `spillq.MSGPACK`.
//!
//! Both directions run with the GIL held: the producer serializes before it releases the GIL to
//! put, the consumer deserializes after it takes the GIL back.

use crate::{errors, msgpack};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyByteArray, PyBytes, PyString};

/// The pickle protocol of `spillq.PICKLE`: 5 is read by every Python the package supports
/// (3.9 and later), whatever a newer Python's highest protocol is.
const PICKLE_PROTOCOL: u8 = 5;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Builtin {
    Pickle,
    MsgPack,
}

/// A serializer that spillq implements itself: `spillq.PICKLE` (the default) or
/// `spillq.MSGPACK` (interchange with Rust queues of the same items).
///
/// `dumps(obj)` returns the bytes a queue stores for `obj`; `loads(data)` reads them back.
#[pyclass(frozen, module = "spillq")]
pub struct Serializer {
    builtin: Builtin,
}

impl Serializer {
    pub(crate) fn pickle(py: Python<'_>) -> PyResult<Bound<'_, Self>> {
        Bound::new(
            py,
            Self {
                builtin: Builtin::Pickle,
            },
        )
    }

    pub(crate) fn msgpack(py: Python<'_>) -> PyResult<Bound<'_, Self>> {
        Bound::new(
            py,
            Self {
                builtin: Builtin::MsgPack,
            },
        )
    }
}

#[pymethods]
impl Serializer {
    /// The bytes a queue stores for `obj`. Raises `spillq.CodecError` if `obj` cannot be
    /// serialized.
    fn dumps<'py>(&self, obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyBytes>> {
        let bytes = ItemCodec::Builtin(self.builtin).dumps(obj)?;
        Ok(PyBytes::new(obj.py(), &bytes))
    }

    /// The object that `data` holds. Raises `spillq.CodecError` if `data` is not what `dumps`
    /// writes.
    fn loads<'py>(&self, py: Python<'py>, data: &[u8]) -> PyResult<Bound<'py, PyAny>> {
        ItemCodec::Builtin(self.builtin).loads(py, data)
    }

    fn __repr__(&self) -> &'static str {
        match self.builtin {
            Builtin::Pickle => "spillq.PICKLE",
            Builtin::MsgPack => "spillq.MSGPACK",
        }
    }
}

/// A queue's serializer.
pub(crate) enum ItemCodec {
    Builtin(Builtin),
    /// Any object with `dumps(obj) -> bytes` and `loads(bytes) -> obj`: a module such as
    /// `pickle` or `json`, or the `dumps`/`loads` pair a python-persistent-queue user passed.
    Custom {
        dumps: Py<PyAny>,
        loads: Py<PyAny>,
    },
}

impl ItemCodec {
    /// The codec for the `serializer` argument of `Queue`: `None` means pickle.
    pub(crate) fn from_argument(serializer: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let Some(serializer) = serializer else {
            return Ok(Self::Builtin(Builtin::Pickle));
        };
        if let Ok(builtin) = serializer.cast::<Serializer>() {
            return Ok(Self::Builtin(builtin.get().builtin));
        }
        let function = |name: &str| -> PyResult<Py<PyAny>> {
            match serializer.getattr(name) {
                Ok(function) if function.is_callable() => Ok(function.unbind()),
                _ => Err(PyTypeError::new_err(format!(
                    "serializer must be spillq.PICKLE, spillq.MSGPACK, or an object with \
                     dumps() and loads() (such as the pickle module); {} has no callable {name}",
                    serializer
                        .repr()
                        .map_or_else(|_| "it".into(), |repr| repr.to_string())
                ))),
            }
        };
        Ok(Self::Custom {
            dumps: function("dumps")?,
            loads: function("loads")?,
        })
    }

    /// `item` serialized. Raises `spillq.CodecError` (its cause: the serializer's exception).
    pub(crate) fn dumps(&self, item: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
        let py = item.py();
        let bytes = match self {
            Self::Builtin(Builtin::Pickle) => pickle(py, Function::Dumps)
                .and_then(|dumps| dumps.call1((item, PICKLE_PROTOCOL)))
                .and_then(|bytes| Ok(bytes.cast::<PyBytes>()?.as_bytes().to_vec())),
            Self::Builtin(Builtin::MsgPack) => {
                let mut buf = Vec::new();
                msgpack::pack(item, &mut buf).map(|()| buf)
            }
            Self::Custom { dumps, .. } => dumps
                .bind(py)
                .call1((item,))
                .and_then(|bytes| custom_bytes(&bytes)),
        };
        bytes.map_err(|cause| {
            let type_name = item
                .get_type()
                .name()
                .map_or_else(|_| "?".into(), |name| name.to_string());
            errors::codec(
                py,
                format!("cannot serialize an object of type {type_name}"),
                cause,
                None,
            )
        })
    }

    /// The item that `bytes` holds. Raises `spillq.CodecError` carrying `bytes` as `payload`.
    pub(crate) fn loads<'py>(&self, py: Python<'py>, bytes: &[u8]) -> PyResult<Bound<'py, PyAny>> {
        let item = match self {
            Self::Builtin(Builtin::Pickle) => pickle(py, Function::Loads)
                .and_then(|loads| loads.call1((PyBytes::new(py, bytes),))),
            Self::Builtin(Builtin::MsgPack) => msgpack::unpack(py, bytes),
            Self::Custom { loads, .. } => loads.bind(py).call1((PyBytes::new(py, bytes),)),
        };
        item.map_err(|cause| errors::codec(py, "cannot deserialize an item", cause, Some(bytes)))
    }
}

/// What a user's `dumps` returned, as bytes: `bytes`, `bytearray`, or `str` (UTF-8, so that
/// `json` works as it is).
fn custom_bytes(returned: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    if let Ok(bytes) = returned.cast::<PyBytes>() {
        Ok(bytes.as_bytes().to_vec())
    } else if let Ok(bytes) = returned.cast::<PyByteArray>() {
        Ok(bytes.to_vec())
    } else if let Ok(text) = returned.cast::<PyString>() {
        Ok(text.to_cow()?.as_bytes().to_vec())
    } else {
        Err(PyTypeError::new_err(format!(
            "dumps() must return bytes or str, not {}",
            returned.get_type().name()?
        )))
    }
}

#[derive(Clone, Copy)]
enum Function {
    Dumps,
    Loads,
}

/// `pickle.dumps` or `pickle.loads` (the C implementations), looked up once.
fn pickle(py: Python<'_>, function: Function) -> PyResult<&Bound<'_, PyAny>> {
    static DUMPS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    static LOADS: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    let (cell, name) = match function {
        Function::Dumps => (&DUMPS, "dumps"),
        Function::Loads => (&LOADS, "loads"),
    };
    cell.get_or_try_init(py, || Ok(py.import("pickle")?.getattr(name)?.unbind()))
        .map(|function| function.bind(py))
}
