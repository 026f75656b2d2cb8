//! Turns a [`spillq::Error`] into the Python exception of the same meaning, and raises the
//! standard library's `queue.Full` and `queue.Empty`.
//!
//! The exception classes are defined in Python (`spillq/_errors.py`), where one of them can
//! derive from two bases (`IoError` is also an `OSError`); they are looked up once.

use pyo3::call::PyCallArgs;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBytes, PyType};

/// The module that defines spillq's exception classes.
const ERRORS_MODULE: &str = "spillq._errors";

/// The class `name` of `spillq._errors`.
fn class<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyType>> {
    static MODULE: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    let module = MODULE.get_or_try_init(py, || py.import(ERRORS_MODULE).map(Bound::unbind))?;
    Ok(module.bind(py).getattr(name)?.cast_into::<PyType>()?)
}

/// An exception of spillq's class `name`, made with `args`.
fn instantiate<'py>(py: Python<'py>, name: &str, args: impl PyCallArgs<'py>) -> PyErr {
    match class(py, name).and_then(|class| class.call1(args)) {
        Ok(error) => PyErr::from_value(error),
        Err(error) => error,
    }
}

/// `spillq.<name>(message)`.
pub(crate) fn error(py: Python<'_>, name: &str, message: impl Into<String>) -> PyErr {
    instantiate(py, name, (message.into(),))
}

/// The Python exception for a failure of the queue. Its message is spillq's, which says what
/// happened, where, and what to do.
pub(crate) fn from_spillq(py: Python<'_>, failure: spillq::Error) -> PyErr {
    let message = failure.to_string();
    let name = match &failure {
        spillq::Error::Closed => "ClosedError",
        spillq::Error::Full => return full(py),
        spillq::Error::Locked { .. } => "LockedError",
        spillq::Error::Io { source, .. } => {
            // OSError's two-argument form sets `errno` and keeps spillq's message as `strerror`.
            return match source.raw_os_error() {
                Some(errno) => instantiate(py, "IoError", (errno, message)),
                None => error(py, "IoError", message),
            };
        }
        spillq::Error::Codec { .. } => "CodecError",
        spillq::Error::Corrupt { .. } => "CorruptError",
        spillq::Error::UnsupportedVersion { .. } => "VersionError",
        spillq::Error::TooLarge { .. } => "TooLargeError",
        spillq::Error::Poisoned { .. } => "PoisonedError",
        spillq::Error::InvalidOption { .. } => {
            return pyo3::exceptions::PyValueError::new_err(message);
        }
        _ => "Error",
    };
    error(py, name, message)
}

/// Wraps a failure of a serializer (an `Exception`, not a `KeyboardInterrupt`) in
/// `spillq.CodecError`, the original kept as its `__cause__`; `payload` is set when the bytes
/// that failed to load are known, so that nothing a `get` removed is lost unseen.
pub(crate) fn codec(
    py: Python<'_>,
    what: impl Into<String>,
    cause: PyErr,
    payload: Option<&[u8]>,
) -> PyErr {
    if !cause.is_instance_of::<PyException>(py) {
        return cause;
    }
    let error = error(
        py,
        "CodecError",
        format!("{}: {}", what.into(), cause.value(py)),
    );
    if let Some(bytes) = payload {
        // The error is reported even if the attribute cannot be set.
        let _ = error.value(py).setattr("payload", PyBytes::new(py, bytes));
    }
    error.set_cause(py, Some(cause));
    error
}

fn stdlib_queue_class(py: Python<'_>, cell: &'static PyOnceLock<Py<PyType>>, name: &str) -> PyErr {
    match cell.import(py, "queue", name) {
        Ok(class) => PyErr::from_type(class.clone(), ()),
        Err(error) => error,
    }
}

/// `queue.Full`, as `queue.Queue` raises it.
pub(crate) fn full(py: Python<'_>) -> PyErr {
    static FULL: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    stdlib_queue_class(py, &FULL, "Full")
}

/// `queue.Empty`, as `queue.Queue` raises it.
pub(crate) fn empty(py: Python<'_>) -> PyErr {
    static EMPTY: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    stdlib_queue_class(py, &EMPTY, "Empty")
}
