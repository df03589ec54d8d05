//! Choosing the widest vector extension at run time, and cache hints.

use ndarray::ArrayView2;

/// A loop body compiled inside [`run_widest`]'s `target_feature` functions: its `run` must
/// be `#[inline(always)]` for that to happen.
pub(crate) trait Body {
    fn run(&mut self);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx512dq,avx2,fma")]
unsafe fn body_avx512(b: &mut impl Body) {
    b.run()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn body_avx2(b: &mut impl Body) {
    b.run()
}

/// Runs `b` compiled for the widest vector extension the CPU has (see [`fill_widest`]).
pub(crate) fn run_widest(b: &mut impl Body) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            // SAFETY: the CPU has the features the function is compiled for.
            return unsafe { body_avx512(b) };
        }
        if std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma") {
            // SAFETY: as above.
            return unsafe { body_avx2(b) };
        }
    }
    b.run()
}

/// Asks the CPU to bring rows `rows` of `a` into its L2 cache, one request per 64-byte line,
/// without waiting for them: for rows far apart in memory that a later pass will read or
/// overwrite, so their cache misses overlap with the work in between instead of stalling
/// that pass. Only a hint: it changes no value, and does nothing off x86-64.
pub(crate) fn prefetch_rows<T>(a: &ArrayView2<'_, T>, rows: impl Iterator<Item = usize>) {
    #[cfg(target_arch = "x86_64")]
    {
        const LINE: usize = 64;
        let bytes = a.ncols() * std::mem::size_of::<T>();
        let row_bytes = a.strides()[0] * std::mem::size_of::<T>() as isize;
        let base = a.as_ptr().cast::<i8>();
        if bytes == 0 || a.strides()[1] != 1 {
            return;
        }
        for r in rows.filter(|&r| r < a.nrows()) {
            // wrapping_offset: the address is only handed to the prefetch, never read
            // through, and stays inside `a`'s allocation for rows in range.
            let row = base.wrapping_offset(r as isize * row_bytes);
            // The row's last byte too: a row that starts mid-line ends in one more line.
            for at in (0..bytes).step_by(LINE).chain([bytes - 1]) {
                // SAFETY: a prefetch never faults nor changes memory, whatever the address.
                unsafe { std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T1 }>(row.wrapping_add(at)) };
            }
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = (a, rows);
}
