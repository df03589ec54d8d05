//! Each safe wrapper against a plain loop, on the sizes that take each branch (serial
//! and threaded, with and without a row, strided and transposed operands). Small enough
//! for Miri.
use super::*;
use ndarray::{Array, Array2, ArrayView2, IxDyn, ShapeBuilder};

fn naive(a: &ArrayView2<'_, f64>, b: &ArrayView2<'_, f64>) -> Array2<f64> {
    let (m, k) = a.dim();
    Array2::from_shape_fn((m, b.dim().1), |(i, j)| (0..k).map(|p| a[[i, p]] * b[[p, j]]).sum())
}

/// Values whose products and sums are exact in f64, so any order of summation agrees.
fn ints(shape: (usize, usize), seed: usize) -> Array2<f64> {
    Array2::from_shape_fn(shape, |(i, j)| ((i * 7 + j * 3 + seed) % 11) as f64 - 5.0)
}

fn two_threads<R: Send>(f: impl FnOnce() -> R + Send) -> R {
    rayon::ThreadPoolBuilder::new().num_threads(2).build().expect("a pool").install(f)
}

#[test]
fn map_and_zip2_cover_every_element_serial_and_threaded() {
    for len in [0, 1, 17, PARALLEL_MIN_LEN + 3] {
        let x = Array::from_shape_fn(IxDyn(&[len]), |i| i[0] as f64);
        let y = x.mapv(|v| 2.0 * v + 1.0);
        for out in [map(&x.view(), |v| v * v), two_threads(|| map(&x.view(), |v| v * v))] {
            assert_eq!(out, x.mapv(|v| v * v));
        }
        let sum = two_threads(|| zip2(&x.view(), &y.view(), |a, b| a + b));
        assert_eq!(sum, x.mapv(|v| 3.0 * v + 1.0));
    }
    // Non-contiguous operands take ndarray's path.
    let m = Array::from_shape_fn(IxDyn(&[3, 4]), |i| (i[0] * 4 + i[1]) as f64);
    let t = m.t();
    assert_eq!(map(&t, |v| -v), t.mapv(|v| -v));
    assert_eq!(zip2(&t, &t, |a, b| a * b), t.mapv(|v| v * v));
}

#[test]
fn every_transpose_kernel_equals_the_transposed_view() {
    // Full tiles, partial ones at either edge, no tiles, rows that are not contiguous
    // (ndarray's path) and destinations that are column blocks of a wider array.
    let shapes = [(0, 5), (1, 1), (16, 16), (17, 33), (48, 80), (5, 64)];
    let mut kernels = vec![TileKernel::None];
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("avx512f") {
            kernels.push(TileKernel::Avx512F32);
        }
        if std::is_x86_feature_detected!("avx2") {
            kernels.push(TileKernel::Avx2F32);
        }
    }
    for kernel in kernels {
        for (rows, cols) in shapes {
            let a = ints((rows, 2 * cols), rows + cols);
            let src = a.slice(ndarray::s![.., ..cols]);
            let stepped = a.slice(ndarray::s![.., ..;2]);
            for src in [src, stepped] {
                let mut wide = Array2::<f64>::from_elem((cols, rows + 3), f64::NAN);
                transpose_by(TileKernel::None, src, wide.slice_mut(ndarray::s![.., 2..rows + 2]));
                assert_eq!(wide.slice(ndarray::s![.., 2..rows + 2]), src.t(), "f64, {rows} x {cols}");
                assert!(wide.column(0).iter().chain(wide.column(1)).chain(wide.column(rows + 2)).all(|v| v.is_nan()));
                let src32 = src.mapv(|v| v as f32);
                let mut wide32 = Array2::<f32>::from_elem((cols, rows + 3), f32::NAN);
                transpose_by(kernel, src32.view(), wide32.slice_mut(ndarray::s![.., 2..rows + 2]));
                assert_eq!(wide32.slice(ndarray::s![.., 2..rows + 2]), src32.t(), "f32, {rows} x {cols}");
                assert!(wide32.column(0).iter().chain(wide32.column(1)).chain(wide32.column(rows + 2)).all(|v| v.is_nan()));
            }
        }
    }
}

#[test]
fn run_widest_runs_the_body_once() {
    struct Count(usize);
    impl Body for Count {
        #[inline(always)]
        fn run(&mut self) {
            self.0 += 1;
        }
    }
    let mut c = Count(0);
    run_widest(&mut c);
    assert_eq!(c.0, 1);
}

#[test]
fn shifted_products_equal_a_loop() {
    // Rows of b at scattered offsets into one buffer; rows of a from the first panel or
    // from the second on; widths through every block and tail; k summed in one call or
    // in chunks. dst starts non-zero: the first call overwrites it.
    for (m, k, n) in [(1, 1, 8), (5, 3, 16), (13, 7, 24), (13, 700, 33), (7, 300, 40), (9, 5, 3), (6, 4, 1), (25, 50, 70)] {
        let a = ints((m, k), 1);
        let src: Vec<f32> = (0..3 * k + n + 5).map(|i| ((i * 5 % 13) as f32) - 6.0).collect();
        let offsets: Vec<usize> = (0..k).map(|kk| (kk * 7) % (3 * k + 5)).collect();
        for thin in each_kernel(|| ThinLhs::rows_of(a.mapv(|v| v as f32).view(), &(0..m).collect::<Vec<_>>())) {
            for rows in std::iter::once(0..m).chain((m > PANEL).then_some(PANEL..m)) {
                let expect = Array2::from_shape_fn((rows.len(), n), |(r, x)| {
                    (0..k).map(|kk| a[[rows.start + r, kk]] * f64::from(src[offsets[kk] + x])).sum::<f64>()
                });
                // Written by the first chunk, added to by the others.
                let mut out = Array2::<f32>::ones((rows.len(), n));
                let chunk = ThinLhs::<f32>::shifted_chunk(rows.len()).min(k.div_ceil(2));
                for ks in (0..k).step_by(chunk).map(|s| s..(s + chunk).min(k)) {
                    let ran = thin.shifted(&mut out.view_mut(), rows.clone(), ks.clone(), &src, &offsets[ks.clone()], ks.start > 0);
                    assert_eq!(ran, thin_kernel_available::<f32>(), "the kernel runs where ThinLhs packs");
                }
                if thin_kernel_available::<f32>() {
                    assert_eq!(out.mapv(f64::from), expect, "{:?} {m}x{k}x{n}, rows {rows:?}", thin.isa);
                }
            }
        }
    }
}

/// `make()` read by each kernel this CPU runs (once, unpacked, where it runs none); says
/// which kernels go untested here.
fn each_kernel(make: impl Fn() -> ThinLhs<f32>) -> Vec<ThinLhs<f32>> {
    let isas = ThinIsa::available();
    if !isas.contains(&ThinIsa::Avx512) {
        eprintln!("thin kernel: no AVX-512 on this CPU, its kernel is not tested here");
    }
    if isas.is_empty() {
        eprintln!("thin kernel: no AVX2 and FMA on this CPU, the gemm crate's path is tested alone");
        return vec![make()];
    }
    isas.into_iter().map(|isa| make().with_isa(isa)).collect()
}

#[test]
fn thin_products_equal_a_loop() {
    // Rows not a multiple of the panel, widths that end in a 16- or 8-column block or in
    // a masked tail, column ranges that start inside `a`, a dst whose rows are strided
    // (gemm on the unpacked matrix), reversed rows (gemm too), split across two threads,
    // in f32 (the packed kernel where the CPU has it) and f64, `a` gathered by rows and
    // by transposed rows. Small integers, so that every sum is exact in either order.
    for (m, k, n) in
        [(1, 1, 8), (5, 3, 16), (13, 7, 24), (64, 33, 32), (7, 300, 40), (6, 4, 12), (9, 5, 3), (600, 450, 1), (25, 9, 48), (12, 10, 17)]
    {
        let a = ints((m, k), 1);
        // `a` as rows of a taller matrix, picked out of order.
        let rows: Vec<usize> = (0..m).map(|i| 2 * (m - 1 - i) + 1).collect();
        let mut tall = ints((2 * m + 1, k), 9);
        for (i, &r) in rows.iter().enumerate() {
            tall.row_mut(r).assign(&a.row(i));
        }
        // `a` as the transpose of some rows and columns of a wider matrix: runs of
        // consecutive picks, then single ones.
        let picks: Vec<usize> = (0..k).map(|kk| if kk < k / 2 { kk + 2 } else { 3 * kk + 1 }).collect();
        let mut wide = ints((3 * k + 2, m + 4), 10);
        for (kk, &r) in picks.iter().enumerate() {
            wide.slice_mut(ndarray::s![r, 2..m + 2]).assign(&a.column(kk));
        }
        let (tall32, wide32) = (tall.mapv(|v| v as f32), wide.mapv(|v| v as f32));
        let by_rows = each_kernel(|| ThinLhs::rows_of(tall32.view(), &rows));
        let by_picks = each_kernel(|| ThinLhs::transposed_rows_of(wide32.view(), &picks, 2..m + 2));
        let gathered32 = by_rows.into_iter().zip(by_picks).flat_map(<[_; 2]>::from);
        let gathered64 = [ThinLhs::rows_of(tall.view(), &rows), ThinLhs::transposed_rows_of(wide.view(), &picks, 2..m + 2)];
        // The same from a column-major `w`, whose rows are not contiguous.
        let wide32_by_columns = wide32.t().as_standard_layout().into_owned().reversed_axes();
        let by_columns = ThinLhs::transposed_rows_of(wide32_by_columns.view(), &picks, 2..m + 2);
        assert_eq!(by_columns.plain(), &a.mapv(|v| v as f32), "{m}x{k} gathered from columns");
        for (thin, thin64) in gathered32.zip(gathered64.iter().cycle()) {
            let thin = &thin;
            assert_eq!(thin.packed.is_some(), thin_kernel_available::<f32>(), "which path the f32 cases take");
            assert_eq!(thin64.plain().view(), a.view(), "{m}x{k} gathered");
            for ks in [0..k, k / 3..k] {
                let b = ints((ks.len(), n), 2);
                let start = ints((m, n), 3);
                let expect = &start + &naive(&a.slice(ndarray::s![.., ks.clone()]), &b.view());
                let b32 = b.mapv(|v| v as f32);
                for threads in [false, true] {
                    let mut out = start.mapv(|v| v as f32);
                    two_threads(|| thin.acc(&mut out.view_mut(), ks.clone(), &b32.view(), threads));
                    assert_eq!(out.mapv(f64::from), expect, "f32 {m}x{k}x{n}, columns {ks:?}, threads {threads}");
                }
                // Onto the rows of `start` as rows of a taller matrix, picked out of
                // order, into a dst of NaN (whatever it held must not show).
                let mut from = ints((2 * m + 1, n), 11);
                for (i, &r) in rows.iter().enumerate() {
                    from.row_mut(r).assign(&start.row(i));
                }
                let from32 = from.mapv(|v| v as f32);
                for threads in [false, true] {
                    let mut out = Array2::from_elem((m, n), f32::NAN);
                    two_threads(|| thin.acc_onto(&mut out.view_mut(), &from32.view(), &rows, ks.clone(), &b32.view(), threads));
                    assert_eq!(out.mapv(f64::from), expect, "f32 {m}x{k}x{n} onto picked rows, columns {ks:?}, threads {threads}");
                }
                let mut out = Array2::from_elem((m, n), f64::NAN);
                thin64.acc_onto(&mut out.view_mut(), &from.view(), &rows, ks.clone(), &b.view(), false);
                assert_eq!(out, expect, "f64 {m}x{k}x{n} onto picked rows, columns {ks:?}");
                let mut wide_out = ints((m, 2 * n), 3);
                let mut every_other = wide_out.slice_mut(ndarray::s![.., ..;2]);
                every_other.assign(&start);
                thin64.acc(&mut every_other, ks.clone(), &b.view(), false);
                assert_eq!(every_other, expect, "f64 {m}x{k}x{n} into strided rows, columns {ks:?}");
                let mut every_other = wide_out.mapv(|v| v as f32);
                let mut every_other = every_other.slice_mut(ndarray::s![.., ..;2]);
                every_other.assign(&start.mapv(|v| v as f32));
                thin.acc(&mut every_other, ks.clone(), &b32.view(), false);
                assert_eq!(every_other.mapv(f64::from), expect, "f32 {m}x{k}x{n} into strided rows, columns {ks:?}");
                // Rows in reverse order (a negative row stride) in both b and dst, in f32.
                let mut reversed = start.slice(ndarray::s![..;-1, ..]).mapv(|v| v as f32);
                let b_reversed = b.slice(ndarray::s![..;-1, ..]).mapv(|v| v as f32);
                let mut dst = reversed.slice_mut(ndarray::s![..;-1, ..]);
                thin.acc(&mut dst, ks.clone(), &b_reversed.slice(ndarray::s![..;-1, ..]), false);
                assert_eq!(dst.mapv(f64::from), expect, "f32 {m}x{k}x{n} through reversed rows, columns {ks:?}");
            }
        }
    }
}

/// The layouts a small product may meet: stored as is, stored transposed, every other
/// column of a wider matrix, and rows in reverse order.
fn layouts(x: &Array2<f64>) -> Vec<(&'static str, Array2<f64>, usize)> {
    let (r, c) = x.dim();
    let mut wide = Array2::zeros((r, 2 * c));
    wide.slice_mut(ndarray::s![.., ..;2]).assign(x);
    let mut reversed = Array2::zeros((r, c));
    reversed.slice_mut(ndarray::s![..;-1, ..]).assign(x);
    vec![
        ("as is", x.clone(), 0),
        ("transposed", x.t().as_standard_layout().into_owned(), 1),
        ("every other column", wide, 2),
        ("rows reversed", reversed, 3),
    ]
}

fn view(stored: &Array2<f64>, how: usize) -> ArrayView2<'_, f64> {
    match how {
        0 => stored.view(),
        1 => stored.t(),
        2 => stored.slice(ndarray::s![.., ..;2]),
        _ => stored.slice(ndarray::s![..;-1, ..]),
    }
}

#[test]
fn small_products_equal_a_loop_in_every_layout() {
    for (m, k, n) in [(1, 1, 1), (8, 2, 16), (8, 16, 1), (3, 17, 5), (16, 16, 17)] {
        let (a, b) = (ints((m, k), 1), ints((k, n), 2));
        let expect = naive(&a.view(), &b.view());
        for (a_name, a_stored, a_how) in layouts(&a) {
            for (b_name, b_stored, b_how) in layouts(&b) {
                let (av, bv) = (view(&a_stored, a_how), view(&b_stored, b_how));
                let case = format!("{m}x{k}x{n}, a {a_name}, b {b_name}");
                assert_eq!(gemm(&av, &bv), expect, "{case}");
                let as_f32 = gemm(&av.mapv(|v| v as f32).view(), &bv.mapv(|v| v as f32).view());
                assert_eq!(as_f32.mapv(f64::from), expect, "{case}, f32");
                // Accumulated into a column slice, into a transposed block, into reversed rows.
                let start = ints((m, n + 2), 3);
                let mut into = start.clone();
                gemm_acc(&mut into.slice_mut(ndarray::s![.., 1..n + 1]), &av, &bv, false);
                assert_eq!(into.slice(ndarray::s![.., 1..n + 1]), &start.slice(ndarray::s![.., 1..n + 1]) + &expect, "{case}, accumulated");
                assert_eq!((into.column(0), into.column(n + 1)), (start.column(0), start.column(n + 1)), "{case}: outside untouched");
                let mut by_columns = Array2::<f64>::zeros((n, m));
                gemm_set(&mut by_columns.view_mut().reversed_axes(), &av, &bv, false);
                assert_eq!(by_columns.t(), expect, "{case}, set into a transposed block");
                let mut reversed = Array2::<f64>::ones((m, n));
                gemm_acc(&mut reversed.slice_mut(ndarray::s![..;-1, ..]), &av, &bv, false);
                assert_eq!(reversed.slice(ndarray::s![..;-1, ..]), &expect + 1.0, "{case}, into reversed rows");
            }
        }
    }
}

#[test]
fn gemm_equals_a_loop_on_every_branch() {
    // (m, k, n): empty dims, k = 0, small serial, threaded by rows, threaded by columns.
    let big = PARALLEL_MIN_FLOPS;
    // Both splits end in a partial block.
    let (tall, wide) = (3 * ROW_BLOCK + 5, 2 * COLUMN_BLOCK + 5);
    let by_rows = (tall, big.div_ceil(tall * (ROW_BLOCK + 3)), ROW_BLOCK + 3);
    let by_columns = (2, big.div_ceil(2 * wide), wide);
    for (m, k, n) in [(0, 3, 4), (3, 0, 4), (3, 5, 0), (3, 5, 4), by_rows, by_columns] {
        assert!(m * k * n <= 60 || m * k * n >= big, "each case is serial or threaded");
        let a = ints((m, k), 1);
        let b = ints((k, n), 2);
        let expect = naive(&a.view(), &b.view());
        assert_eq!(gemm(&a.view(), &b.view()), expect, "{m}x{k}x{n}");
        assert_eq!(two_threads(|| gemm(&a.view(), &b.view())), expect, "{m}x{k}x{n}, 2 threads");
        let row: Vec<f64> = (0..n).map(|j| j as f64).collect();
        let with_row = two_threads(|| gemm_plus_row(&a.view(), &b.view(), Some(&row)));
        assert_eq!(with_row, &expect + &Array::from(row.clone()), "{m}x{k}x{n} + row");
    }
    // Accumulated in place into a strided block (a column slice of a wider matrix),
    // serial and threaded; the columns outside the block are left alone.
    for (m, k, n) in [(3, 5, 4), by_rows, by_columns] {
        let (a, b) = (ints((m, k), 6), ints((k, n), 7));
        let start = ints((m, n + 3), 8);
        let mut expect = start.clone();
        expect.slice_mut(ndarray::s![.., 1..n + 1]).zip_mut_with(&naive(&a.view(), &b.view()), |e, &p| *e += p);
        let mut serial = start.clone();
        gemm_acc(&mut serial.slice_mut(ndarray::s![.., 1..n + 1]), &a.view(), &b.view(), false);
        assert_eq!(serial, expect, "{m}x{k}x{n} accumulated");
        let threaded = two_threads(|| {
            let mut out = start.clone();
            gemm_acc(&mut out.slice_mut(ndarray::s![.., 1..n + 1]), &a.view(), &b.view(), true);
            out
        });
        assert_eq!(threaded, expect, "{m}x{k}x{n} accumulated, 2 threads");
    }
    // An f32 `b` stored by columns, `a` by rows (`x Wᵀ`): with few rows, `a` copied by
    // columns and the product asked for as given (`Ask`), through a scratch where dst's
    // rows are 1 KiB apart; else the transpose, with `b` copied by rows first where its
    // columns are 2 or 4 KiB apart, the last copy large enough to be split across the
    // threads. Serial and threaded, set and accumulated, against the loop.
    for (m, k, n) in [(16, 1024, 256), (32, 1024, 300), (16, 512, 5), (264, 512, 128)] {
        let (a, b_rows) = (ints((m, k), 12), ints((n, k), 13));
        let expect = naive(&a.view(), &b_rows.t());
        let (a32, b32) = (a.mapv(|v| v as f32), b_rows.mapv(|v| v as f32));
        let b_by_columns = b32.t();
        assert_eq!(b_by_columns.strides(), &[1, k as isize], "columns {} KiB apart", k / 256);
        assert_eq!(gemm(&a32.view(), &b_by_columns).mapv(f64::from), expect, "f32 {m}x{k}x{n} with b by columns");
        let mut out = Array2::<f32>::ones((m, n));
        two_threads(|| gemm_acc(&mut out.view_mut(), &a32.view(), &b_by_columns, true));
        assert_eq!(out.mapv(f64::from), &expect + 1.0, "f32 {m}x{k}x{n} with b by columns, accumulated on 2 threads");
    }
    // Both f32 operands stored by columns: asked for as given with few rows (split by
    // columns or rows across two threads; through the scratch where dst's rows are 1 KiB
    // apart); transposed with many rows or a short side under 32 (then `b` copied by rows
    // where its columns are 2 KiB apart). Set and accumulated.
    for (m, k, n) in
        [(32, 64, 300), (128, 64, 40), (64, 64, 256), (64, 512, 256), (16, 1024, 5), (20, 7, 3), (256, 8, 7), (256, 512, 3), (300, 64, 40)]
    {
        let (a_rows, b_rows) = (ints((k, m), 14), ints((n, k), 15));
        let expect = naive(&a_rows.t(), &b_rows.t());
        let (a32, b32) = (a_rows.mapv(|v| v as f32), b_rows.mapv(|v| v as f32));
        let (a_by_columns, b_by_columns) = (a32.t(), b32.t());
        assert_eq!(gemm(&a_by_columns, &b_by_columns).mapv(f64::from), expect, "f32 {m}x{k}x{n}, both by columns");
        let threaded = two_threads(|| gemm(&a_by_columns, &b_by_columns));
        assert_eq!(threaded.mapv(f64::from), expect, "f32 {m}x{k}x{n}, both by columns, 2 threads");
        let mut out = Array2::<f32>::ones((m, n));
        two_threads(|| gemm_acc(&mut out.view_mut(), &a_by_columns, &b_by_columns, true));
        assert_eq!(out.mapv(f64::from), &expect + 1.0, "f32 {m}x{k}x{n}, both by columns, accumulated on 2 threads");
    }
    // Transposed and column-major operands are read through their strides.
    let a = ints((6, 5), 3);
    let b_cols = Array2::from_shape_vec((5, 7).f(), ints((5, 7), 4).t().iter().copied().collect()).unwrap();
    assert_eq!(gemm(&a.t(), &a.view()), naive(&a.t(), &a.view()));
    assert_eq!(gemm(&a.view(), &b_cols.view()), naive(&a.view(), &b_cols.view()));
    // A strided slice (every other column) too.
    let wide = ints((5, 14), 5);
    let every_other = wide.slice(ndarray::s![.., ..;2]);
    assert_eq!(gemm(&a.view(), &every_other), naive(&a.view(), &every_other));
}

#[test]
fn packed_products_equal_a_loop_in_every_layout() {
    use super::packed::{Operand, packed_product};
    if ThinIsa::detect::<f32>() != Some(ThinIsa::Avx512) {
        eprintln!("packed product: no AVX-512 on this CPU, its kernel is not tested here");
        return;
    }
    // Rows short of a panel and past one; widths ending in 16 whole lanes, fewer, or
    // between 16 and 32; k short of the unrolled four, past a block of KC, and columns past
    // a block of NC. Each operand by rows, by columns, or every other element.
    for (m, k, n) in [(1, 1, 1), (12, 16, 32), (13, 5, 17), (25, 259, 48), (7, 530, 33), (30, 37, 1030), (26, 300, 65)] {
        let (a, b) = (ints((m, k), 1), ints((k, n), 2));
        let expect = naive(&a.view(), &b.view());
        let stored = |x: &Array2<f64>, how: usize| -> (Vec<f32>, isize, isize) {
            let (r, c) = x.dim();
            match how {
                0 => (x.iter().map(|&v| v as f32).collect(), c as isize, 1),
                1 => (x.t().iter().map(|&v| v as f32).collect(), 1, r as isize),
                _ => (x.iter().flat_map(|&v| [v as f32, f32::NAN]).collect(), 2 * c as isize, 2),
            }
        };
        for (a_how, b_how) in (0..3).flat_map(|i| (0..3).map(move |j| (i, j))) {
            let ((av, ars, acs), (bv, brs, bcs)) = (stored(&a, a_how), stored(&b, b_how));
            let (a_op, b_op) = (Operand { at: av.as_ptr(), rs: ars, cs: acs }, Operand { at: bv.as_ptr(), rs: brs, cs: bcs });
            for read_dst in [false, true] {
                // Rows three further apart than the width: the gap must stay untouched.
                let width = n + 3;
                let start: Vec<f32> = (0..m * width)
                    .map(|i| {
                        if i % width >= n {
                            f32::NAN
                        } else if read_dst {
                            (i % 5) as f32
                        } else {
                            f32::NAN
                        }
                    })
                    .collect();
                let mut out = start.clone();
                // SAFETY: AVX-512F (packed_product_runs); a, b and out hold the matrices
                // at the strides given, out disjoint and initialised.
                unsafe { packed_product(m, n, k, out.as_mut_ptr(), width, read_dst, a_op, b_op) };
                let case = format!("{m}x{k}x{n}, a layout {a_how}, b layout {b_how}, accumulate {read_dst}");
                for i in 0..m {
                    for j in 0..width {
                        let (got, at) = (out[i * width + j], start[i * width + j]);
                        if j >= n {
                            assert!(got.is_nan(), "{case}: ({i}, {j}) outside written");
                        } else {
                            let want = expect[[i, j]] + if read_dst { f64::from(at) } else { 0.0 };
                            assert_eq!(f64::from(got), want, "{case}: ({i}, {j})");
                        }
                    }
                }
            }
        }
    }
    // Through `gemm`, which runs it on sides of 256 or more on an Intel CPU: whole, and
    // split by rows across two threads into blocks of 320 and 280 rows.
    let (a, b) = (ints((600, 270), 3), ints((270, 520), 4));
    let expect = naive(&a.view(), &b.view());
    let (a32, b32) = (a.mapv(|v| v as f32), b.mapv(|v| v as f32));
    assert_eq!(gemm(&a32.view(), &b32.view()).mapv(f64::from), expect, "600x270x520");
    assert_eq!(two_threads(|| gemm(&a32.view(), &b32.view())).mapv(f64::from), expect, "600x270x520, 2 threads");
    let mut by_columns = Array2::<f32>::zeros((520, 600));
    gemm_set(&mut by_columns.view_mut().reversed_axes(), &a32.view(), &b32.view(), true);
    assert_eq!(by_columns.t().mapv(f64::from), expect, "600x270x520 into a transposed block");
}
