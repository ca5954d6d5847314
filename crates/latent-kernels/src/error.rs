//! The errors this crate's kernels report before touching any data.
//!
//! The public functions return `candle_core::Result` (they sit inside candle graphs), so
//! these errors travel wrapped in `candle_core::Error::Wrapped`; their messages name the
//! op, what it expected and what it found.

/// Why a kernel refused its inputs.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// An input has the wrong rank or a dimension that does not fit the others.
    #[error("{op}: expected {expected}, found {what} of shape {found:?}")]
    BadShape {
        op: &'static str,
        what: &'static str,
        expected: String,
        found: Vec<usize>,
    },

    /// A scalar parameter (stride, padding, eps) is out of range for the given shapes.
    #[error("{op}: {message}")]
    BadParameter { op: &'static str, message: String },

    /// A CPU kernel was handed storage it cannot read (another device, or not f32).
    #[error("{op}: {what} must be f32 data on the CPU, found {found}")]
    UnsupportedStorage {
        op: &'static str,
        what: &'static str,
        found: String,
    },
}

impl From<KernelError> for candle_core::Error {
    fn from(error: KernelError) -> Self {
        candle_core::Error::wrap(error)
    }
}
