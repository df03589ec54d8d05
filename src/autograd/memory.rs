//! Memory accounting: the bytes held by live tensors, their peak, and the process's peak
//! resident set — what recomputing instead of storing ([`checkpoint`](super::checkpoint))
//! saves.
//!
//! Every tensor holds its value, and a recorded graph keeps the values its backward rules
//! read (an input a rule does not read is kept as its shape only; see
//! [`GraphNode`](super::GraphNode)), so the bytes of live tensor values are the memory a
//! forward pass stores for backward (plus the inputs and parameters). The count is
//! logical: two tensors viewing one buffer count twice, and arrays an op keeps privately
//! (the fused LSTM's gates, max pooling's argmax) are not counted.
//!
//! ```
//! use nabla::prelude::*;
//! use nabla::autograd::memory;
//! let before = memory::live_bytes();
//! let x = Tensor::zeros(&[1024]);                  // 4 KiB of f32
//! assert_eq!(memory::live_bytes() - before, 4096);
//! drop(x);
//! assert_eq!(memory::live_bytes(), before);
//! ```

use std::sync::atomic::{AtomicUsize, Ordering};

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

pub(crate) fn allocated(bytes: usize) {
    let now = LIVE.fetch_add(bytes, Ordering::Relaxed) + bytes;
    // A plain load first: past the first steps the peak is rarely exceeded, and a locked
    // read-modify-write per tensor showed in profiles of small training steps.
    if now > PEAK.load(Ordering::Relaxed) {
        PEAK.fetch_max(now, Ordering::Relaxed);
    }
}

pub(crate) fn freed(bytes: usize) {
    LIVE.fetch_sub(bytes, Ordering::Relaxed);
}

/// Bytes of the values of all live tensors in the process, now.
pub fn live_bytes() -> usize {
    LIVE.load(Ordering::Relaxed)
}

/// The largest [`live_bytes`] since the start or the last [`reset_peak`].
pub fn peak_live_bytes() -> usize {
    PEAK.load(Ordering::Relaxed)
}

/// Starts a new peak from the current live bytes.
pub fn reset_peak() {
    PEAK.store(LIVE.load(Ordering::Relaxed), Ordering::Relaxed);
}

/// The peak resident set of the process in bytes (`VmHWM` on Linux; `None` elsewhere).
/// Unlike [`peak_live_bytes`] it includes freed memory the allocator or the buffer pool
/// kept, the code and everything else.
pub fn peak_rss_bytes() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb = status.lines().find_map(|l| l.strip_prefix("VmHWM:"))?.trim().trim_end_matches("kB").trim().parse::<usize>().ok()?;
    Some(kb * 1024)
}
