//! The one public error type, and the small errors that give a refused item back.

use std::fmt;
use std::path::PathBuf;

/// The boxed error a [`Codec`](crate::Codec) returns.
///
/// ```
/// let error: spillq::CodecError = "not a number".into();
/// assert_eq!(error.to_string(), "not a number");
/// ```
pub type CodecError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in spillq. Each variant says what and where, and its message
/// says what to do about it.
///
/// # Examples
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let queue = spillq::Queue::<u8>::open(dir.path())?;
/// match spillq::Queue::<u8>::open(dir.path()) {
///     Err(spillq::Error::Locked { path }) => assert_eq!(path, dir.path()),
///     other => panic!("expected Locked, got {other:?}"),
/// }
/// queue.close()?;
/// let error = queue.get().unwrap_err();
/// assert!(matches!(error, spillq::Error::Closed));
/// assert!(error.to_string().contains("open it again"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
#[non_exhaustive]
pub enum Error {
    /// The queue was closed (by [`Queue::close`](crate::Queue::close) or by dropping its last
    /// handle). Open it again to go on.
    Closed,
    /// The queue is full, at `max_len` items or at its disk cap (`max_disk_bytes`), and the
    /// call would not wait (longer).
    Full,
    /// Another `Queue` (in this process or another) holds the directory. Close it first.
    Locked {
        /// The queue directory.
        path: PathBuf,
    },
    /// The operating system refused an operation on `path`.
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// What the operating system said.
        source: std::io::Error,
    },
    /// An item could not be encoded, or a stored record could not be decoded as `T`.
    Codec {
        /// The sequence number of the stored record, when the item had one.
        sequence: Option<u64>,
        /// Where the undecodable record's bytes were moved aside, if they were.
        moved_to: Option<PathBuf>,
        /// What the codec said.
        source: CodecError,
    },
    /// Bytes on disk are not what spillq wrote, and spillq cannot work around them.
    Corrupt {
        /// The damaged file.
        path: PathBuf,
        /// Byte offset in that file.
        offset: u64,
        /// What is wrong.
        reason: String,
    },
    /// A file was written by a newer spillq with a format this build does not read.
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The format version it carries.
        found: u32,
        /// The newest version this build reads.
        supported: u32,
    },
    /// An encoded item is larger than the largest record spillq stores.
    TooLarge {
        /// Encoded size of the item.
        bytes: usize,
        /// The largest payload a record holds.
        max_bytes: usize,
    },
    /// An option given to the [`Builder`](crate::Builder) cannot work.
    InvalidOption {
        /// The option.
        option: &'static str,
        /// Why, and what to give instead.
        reason: String,
    },
    /// An earlier fsync or msync failed. Linux may have dropped the dirty pages it could not
    /// write, so the queue refuses writes until it is reopened.
    Poisoned {
        /// The earlier failure.
        cause: String,
    },
}

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn corrupt(
        path: impl Into<PathBuf>,
        offset: u64,
        reason: impl Into<String>,
    ) -> Self {
        Self::Corrupt {
            path: path.into(),
            offset,
            reason: reason.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Closed => f.write_str("the queue is closed; open it again to go on"),
            Self::Full => f.write_str(
                "the queue is full (max_len items, or its disk cap); retry once consumers made room",
            ),
            Self::Locked { path } => write!(
                f,
                "{} is in use by another open queue (this process or another); close that one first",
                path.display()
            ),
            Self::Io { path, source } => write!(f, "I/O error on {}: {source}", path.display()),
            Self::Codec {
                sequence,
                moved_to,
                source,
            } => {
                match sequence {
                    Some(sequence) => write!(f, "codec error for record {sequence}: {source}")?,
                    None => write!(f, "codec error: {source}")?,
                }
                if let Some(path) = moved_to {
                    write!(f, " (its bytes were moved to {})", path.display())?;
                }
                Ok(())
            }
            Self::Corrupt {
                path,
                offset,
                reason,
            } => write!(
                f,
                "{} is corrupt at byte {offset}: {reason}; move the file aside to open the rest",
                path.display()
            ),
            Self::UnsupportedVersion {
                path,
                found,
                supported,
            } => write!(
                f,
                "{} has format version {found}, newer than this spillq reads ({supported}); upgrade spillq",
                path.display()
            ),
            Self::TooLarge { bytes, max_bytes } => write!(
                f,
                "an item encodes to {bytes} bytes, more than the largest record ({max_bytes} bytes)"
            ),
            Self::InvalidOption { option, reason } => write!(f, "{option}: {reason}"),
            Self::Poisoned { cause } => write!(
                f,
                "the queue refuses writes after an earlier sync failure ({cause}); reopen it"
            ),
        }
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Self::Io { source, .. } => Some(source),
            Self::Codec { source, .. } => Some(source.as_ref()),
            _ => None,
        }
    }
}

/// Why [`Queue::try_put`](crate::Queue::try_put) refused an item. Holds the item.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let queue = spillq::Queue::builder(dir.path()).max_len(1).open()?;
/// queue.put("first".to_string())?;
/// match queue.try_put("second".to_string()) {
///     Err(spillq::TryPutError::Full(item)) => assert_eq!(item, "second"),
///     other => panic!("{other:?}"),
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub enum TryPutError<T> {
    /// The queue holds `max_len` items.
    Full(T),
    /// The queue is closed.
    Closed(T),
    /// Anything else (the codec refused the item, the disk failed); the item comes back too.
    Failed(T, Error),
}

/// Why [`Queue::put_timeout`](crate::Queue::put_timeout) refused an item. Holds the item.
///
/// ```
/// use std::time::Duration;
/// let dir = tempfile::tempdir()?;
/// let queue = spillq::Queue::builder(dir.path()).max_len(1).open()?;
/// queue.put(1)?;
/// let refused = queue.put_timeout(2, Duration::from_millis(5)).unwrap_err();
/// assert!(refused.is_full());
/// // Converts into spillq::Error with `?` (the item is dropped then).
/// let error: spillq::Error = refused.into();
/// assert!(matches!(error, spillq::Error::Full));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub enum PutTimeoutError<T> {
    /// The queue still held `max_len` items when the timeout ran out.
    Full(T),
    /// The queue is closed.
    Closed(T),
    /// Anything else (the codec refused the item, the disk failed); the item comes back too.
    Failed(T, Error),
}

/// Refusals that give the item back for a retry. Other failures are plain [`Error`]s.
macro_rules! item_error {
    ($name:ident, $full:literal, $example:literal) => {
        impl<T> $name<T> {
            /// The refused item.
            ///
            #[doc = $example]
            pub fn into_inner(self) -> T {
                match self {
                    Self::Full(item) | Self::Closed(item) | Self::Failed(item, _) => item,
                }
            }

            /// Whether the queue was full (rather than closed or failing); see
            /// [`into_inner`](Self::into_inner) for an example.
            pub fn is_full(&self) -> bool {
                matches!(self, Self::Full(_))
            }
        }

        impl<T> fmt::Debug for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    Self::Full(_) => f.write_str(concat!(stringify!($name), "::Full(..)")),
                    Self::Closed(_) => f.write_str(concat!(stringify!($name), "::Closed(..)")),
                    Self::Failed(_, error) => {
                        write!(f, concat!(stringify!($name), "::Failed(.., {:?})"), error)
                    }
                }
            }
        }

        impl<T> fmt::Display for $name<T> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                match self {
                    Self::Full(_) => f.write_str($full),
                    Self::Closed(_) => f.write_str("the queue is closed"),
                    Self::Failed(_, error) => fmt::Display::fmt(error, f),
                }
            }
        }

        impl<T> std::error::Error for $name<T> {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                match self {
                    Self::Failed(_, error) => Some(error),
                    _ => None,
                }
            }
        }

        impl<T> From<$name<T>> for Error {
            fn from(error: $name<T>) -> Self {
                match error {
                    $name::Full(_) => Error::Full,
                    $name::Closed(_) => Error::Closed,
                    $name::Failed(_, error) => error,
                }
            }
        }
    };
}

item_error!(
    TryPutError,
    "the queue holds max_len items",
    "```
# let dir = tempfile::tempdir()?;
let queue = spillq::Queue::builder(dir.path()).max_len(1).open()?;
queue.try_put(1)?;
let refused = queue.try_put(2).unwrap_err();
assert!(refused.is_full());
assert_eq!(refused.into_inner(), 2);
# Ok::<(), Box<dyn std::error::Error>>(())
```"
);
item_error!(
    PutTimeoutError,
    "the queue still held max_len items when the timeout ran out",
    "```
# let dir = tempfile::tempdir()?;
let queue = spillq::Queue::builder(dir.path()).max_len(1).open()?;
queue.put(1)?;
let refused = queue.put_timeout(2, std::time::Duration::from_millis(1)).unwrap_err();
assert!(refused.is_full());
assert_eq!(refused.into_inner(), 2);
# Ok::<(), Box<dyn std::error::Error>>(())
```"
);
