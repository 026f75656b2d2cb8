//! `spillq._native`: the extension module behind the Python package `spillq`.
//!
//! A Python item crosses into Rust as bytes: the serializer (pickle, MessagePack, or the user's
//! own) runs while the GIL is held, and the queue stores those bytes unchanged as the record's
//! payload (`codec::Identity`). Every call that may wait (for an item, for room, for the disk)
//! releases the GIL, so many Python threads share one queue. The Python half of the package
//! (`python/spillq/`) holds the exception classes and the compatibility classes for python-persistent-queue and pydisq.

#![warn(unreachable_pub)]

mod codec;
mod errors;
mod msgpack;
mod queue;
mod serializer;

/// The extension module. Import `spillq` instead.
#[pyo3::pymodule(name = "_native")]
mod native {
    use pyo3::prelude::*;

    #[pymodule_export]
    use crate::queue::Queue;
    #[pymodule_export]
    use crate::serializer::Serializer;

    #[pymodule_init]
    fn init(module: &Bound<'_, PyModule>) -> PyResult<()> {
        let py = module.py();
        module.add("PICKLE", crate::serializer::Serializer::pickle(py)?)?;
        module.add("MSGPACK", crate::serializer::Serializer::msgpack(py)?)?;
        crate::queue::install_hooks(module)
    }
}
