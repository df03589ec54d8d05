//! Gradient hooks: called once with the summed gradient, able to replace it, removable.

use nabla::prelude::*;
use std::sync::{Arc, Mutex};

#[test]
fn a_hook_sees_the_summed_gradient_once_and_can_replace_it() {
    // y = h·h + 3h with h = 2x: dL/dh = 2h + 3, seen once although h is used three times.
    let x = Tensor::<f64>::from_vec(vec![1.0, -1.0], &[2]).unwrap().requires_grad_(true).unwrap();
    let h = &x * 2.0;
    let calls = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&calls);
    let handle = h.register_hook(move |g| {
        log.lock().unwrap().push(g.to_vec());
        Some(g * 10.0)
    });
    let loss = (&(&h * &h) + &(&h * 3.0)).sum();
    let g = loss.backward().unwrap();
    assert_eq!(*calls.lock().unwrap(), vec![vec![7.0, -1.0]]);
    // dL/dx = 2 · (10 · dL/dh): the replaced gradient flows on.
    assert_eq!(g.get(&x).unwrap().to_vec(), vec![140.0, -20.0]);

    handle.remove();
    let g = loss.backward().unwrap();
    assert_eq!(calls.lock().unwrap().len(), 1, "a removed hook is not called");
    assert_eq!(g.get(&x).unwrap().to_vec(), vec![14.0, -2.0]);
}

#[test]
fn hooks_on_a_leaf_change_its_gradient_and_run_in_order() {
    let w = Tensor::<f64>::from_vec(vec![3.0], &[1]).unwrap().requires_grad_(true).unwrap();
    let _a = w.register_hook(|g| Some(g + 1.0));
    let _b = w.register_hook(|g| Some(g * 2.0));
    let g = (&w * &w).sum().backward().unwrap();
    assert_eq!(g.get(&w).unwrap().to_vec(), vec![14.0], "(2w + 1) · 2");
}
