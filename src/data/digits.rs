//! The UCI handwritten digits, embedded in the crate.

use crate::error::{Error, Result};
use crate::tensor::Tensor;
use ndarray::{ArrayD, IxDyn};
use rand::Rng;
use rand::seq::SliceRandom;
use std::io::Read;

/// The compressed CSV, 57 KB: 1,797 rows of 64 pixel values (0..16) and a label.
const DIGITS_CSV_GZ: &[u8] = include_bytes!("../../data/digits.csv.gz");

/// The UCI "Optical Recognition of Handwritten Digits" data (test part, as distributed with
/// scikit-learn): 1,797 images of 8×8 pixels with values 0..16, labels 0..9.
///
/// Source: E. Alpaydin and C. Kaynak, UCI Machine Learning Repository, 1998
/// (doi:10.24432/C50P49), CC BY 4.0; redistributed by scikit-learn (BSD-3-Clause).
pub struct Digits {
    /// `[1797, 64]` pixel values, 0..16, row-major 8×8 images.
    pub images: Tensor,
    /// `[1797]` labels 0..9.
    pub labels: ArrayD<usize>,
}

/// Decodes the embedded digits.
///
/// ```
/// let d = nabla::data::digits()?;
/// assert_eq!(d.images.shape(), &[1797, 64]);
/// assert_eq!(d.labels.len(), 1797);
/// # Ok::<(), nabla::Error>(())
/// ```
pub fn digits() -> Result<Digits> {
    let fail = |msg: String| Error::Io { op: "digits", path: "data/digits.csv.gz (embedded)".into(), msg };
    let mut csv = String::new();
    flate2::read::GzDecoder::new(DIGITS_CSV_GZ).read_to_string(&mut csv).map_err(|e| fail(e.to_string()))?;
    let (mut pixels, mut labels) = (Vec::with_capacity(1797 * 64), Vec::with_capacity(1797));
    for (n, line) in csv.lines().enumerate() {
        let values: Vec<&str> = line.split(',').collect();
        if values.len() != 65 {
            return Err(fail(format!("line {} has {} values, not 65", n + 1, values.len())));
        }
        for v in &values[..64] {
            pixels.push(v.trim().parse::<f32>().map_err(|e| fail(format!("line {}: {e}", n + 1)))?);
        }
        labels.push(values[64].trim().parse::<usize>().map_err(|e| fail(format!("line {}: {e}", n + 1)))?);
    }
    let rows = labels.len();
    Ok(Digits {
        images: Tensor::from_vec(pixels, &[rows, 64])?,
        labels: ArrayD::from_shape_vec(IxDyn(&[rows]), labels).expect("one per row"),
    })
}

/// A train/test split of some samples.
pub struct Split {
    /// Training inputs.
    pub train_x: Tensor,
    /// Training labels.
    pub train_y: ArrayD<usize>,
    /// Test inputs.
    pub test_x: Tensor,
    /// Test labels.
    pub test_y: ArrayD<usize>,
    /// Which samples of the full set are the test samples, in order.
    pub test_indices: Vec<usize>,
}

impl Digits {
    /// A seeded random split with `test_fraction` of the samples held out, pixels scaled to
    /// `[0, 1]` (divided by 16).
    pub fn split(&self, test_fraction: f64, rng: &mut impl Rng) -> Result<Split> {
        use super::Rows;
        let n = self.labels.len();
        let mut order: Vec<usize> = (0..n).collect();
        order.shuffle(rng);
        let n_test = ((n as f64) * test_fraction).round() as usize;
        let (test, train) = order.split_at(n_test);
        let scaled = self.images.div_scalar(16.0);
        Ok(Split {
            train_x: scaled.select_rows(train),
            train_y: self.labels.select_rows(train),
            test_x: scaled.select_rows(test),
            test_y: self.labels.select_rows(test),
            test_indices: test.to_vec(),
        })
    }
}
