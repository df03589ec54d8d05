//! The crate's one error type.

use thiserror::Error as ThisError;

/// Everything that can go wrong on user input. Each variant names the op that refused and
/// says why with the values involved, for example
/// `matmul: [2, 3] @ [4, 5]: inner dims 3 and 4 differ`.
///
/// ```
/// use nabla::prelude::*;
/// let a = Tensor::zeros(&[2, 3]);
/// let b = Tensor::zeros(&[4, 5]);
/// let err = a.matmul(&b).unwrap_err();
/// assert_eq!(err.to_string(), "matmul: [2, 3] @ [4, 5]: inner dims 3 and 4 differ");
/// ```
#[derive(Debug, Clone, PartialEq, ThisError)]
pub enum Error {
    /// Shapes that the op cannot combine (broadcasting, matmul, cat, reshape sizes).
    #[error("{op}: {msg}")]
    Shape {
        /// The op's name, as its method is called.
        op: &'static str,
        /// What was wrong, with the shapes.
        msg: String,
    },
    /// A dimension index outside `-ndim..ndim`.
    #[error("{op}: dim {dim} is out of range for a tensor of {ndim} dims")]
    Dim {
        /// The op's name.
        op: &'static str,
        /// The dimension asked for.
        dim: isize,
        /// How many dimensions the tensor has.
        ndim: usize,
    },
    /// An element index outside the size of the dimension it indexes.
    #[error("{op}: index {index} is out of range for dim {dim} of size {size}")]
    Index {
        /// The op's name.
        op: &'static str,
        /// The offending index.
        index: usize,
        /// The dimension it indexes.
        dim: usize,
        /// That dimension's size.
        size: usize,
    },
    /// A configuration value outside what the op accepts.
    #[error("{op}: {msg}")]
    Invalid {
        /// The op's name.
        op: &'static str,
        /// What was wrong, with the values.
        msg: String,
    },
    /// Reading or writing a file failed.
    #[error("{op}: {path}: {msg}")]
    Io {
        /// What was being done (`save`, `load`).
        op: &'static str,
        /// The file.
        path: String,
        /// The system's or the parser's message.
        msg: String,
    },
    /// Asking for gradients in a way that has no answer (a non-scalar root without a
    /// cotangent, a rule that cannot be differentiated again).
    #[error("{op}: {msg}")]
    Autograd {
        /// The op or entry point that refused.
        op: &'static str,
        /// Why.
        msg: String,
    },
    /// In [`detect_anomaly`](crate::autograd::detect_anomaly): the first op whose forward
    /// output or backward gradient held a NaN or an infinity.
    #[error("anomaly: {op} produced {value} in its {phase}; the op was created at {origin}")]
    Anomaly {
        /// The op's name.
        op: &'static str,
        /// `"forward output"` or `"backward gradient for input k"`.
        phase: String,
        /// The first offending value (`NaN`, `inf`, `-inf`).
        value: String,
        /// Where the op was called: the first frame outside nabla (`file:line` when the
        /// build has debug info, else the function).
        origin: String,
    },
}

/// `Result<T, nabla::Error>`.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn shape(op: &'static str, msg: impl Into<String>) -> Self {
        Error::Shape { op, msg: msg.into() }
    }
    pub(crate) fn invalid(op: &'static str, msg: impl Into<String>) -> Self {
        Error::Invalid { op, msg: msg.into() }
    }
    pub(crate) fn autograd(op: &'static str, msg: impl Into<String>) -> Self {
        Error::Autograd { op, msg: msg.into() }
    }
    /// The same error reported by `op`: an op built on another names itself, not its helper.
    pub(crate) fn in_op(self, name: &'static str) -> Self {
        match self {
            Error::Shape { msg, .. } => Error::Shape { op: name, msg },
            Error::Dim { dim, ndim, .. } => Error::Dim { op: name, dim, ndim },
            Error::Index { index, dim, size, .. } => Error::Index { op: name, index, dim, size },
            Error::Invalid { msg, .. } => Error::Invalid { op: name, msg },
            Error::Autograd { msg, .. } => Error::Autograd { op: name, msg },
            other => other,
        }
    }
}
