//! Mini-batching and the embedded digits.

use nabla::data::{Batches, Rows};
use nabla::prelude::*;

#[test]
fn batches_cover_every_sample_once_in_a_seeded_order() {
    let x = Tensor::arange(0.0, 10.0, 1.0).unwrap().reshape(&[10, 1]).unwrap();
    let y = ndarray::Array1::from((0..10).collect::<Vec<usize>>()).into_dyn();
    let order = |seed| -> Vec<usize> {
        Batches::new(&x, &y, 3, &mut nabla::rng(seed))
            .flat_map(|(bx, by)| {
                // inputs and labels stay paired
                assert_eq!(bx.to_vec().iter().map(|&v| v as usize).collect::<Vec<_>>(), by.iter().copied().collect::<Vec<_>>());
                by.into_iter().collect::<Vec<_>>()
            })
            .collect()
    };
    let first = order(1);
    let mut sorted = first.clone();
    sorted.sort();
    assert_eq!(sorted, (0..10).collect::<Vec<_>>());
    assert_eq!(first, order(1), "same seed, same order");
    assert_ne!(first, order(2), "another seed, another order");
    let sizes: Vec<usize> = Batches::new(&x, &y, 3, &mut nabla::rng(1)).drop_last(true).map(|(bx, _)| bx.shape()[0]).collect();
    assert_eq!(sizes, vec![3, 3, 3]);
    let sgd: Vec<_> = Batches::sequential(&x, &y, 1).collect();
    assert_eq!(sgd.len(), 10);
}

#[test]
fn digits_are_the_uci_set_and_split_without_overlap() {
    let d = data::digits().unwrap();
    assert_eq!(d.images.shape(), &[1797, 64]);
    assert!(d.images.amax().item().unwrap() == 16.0 && d.images.amin().item().unwrap() == 0.0);
    let mut counts = [0usize; 10];
    d.labels.iter().for_each(|&l| counts[l] += 1);
    // Class sizes of the UCI test set (scikit-learn's load_digits).
    assert_eq!(counts, [178, 182, 177, 183, 181, 182, 181, 179, 174, 180]);
    let split = d.split(0.25, &mut nabla::rng(0)).unwrap();
    assert_eq!((split.train_y.len(), split.test_y.len()), (1348, 449));
    assert_eq!(split.test_x.rows(), 449);
    assert!(split.train_x.amax().item().unwrap() <= 1.0);
    let mut all: Vec<usize> = split.test_indices.clone();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 449);
}
