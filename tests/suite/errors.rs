//! Bad input gets an `Err` that names the op and the values, one test per class.

use nabla::prelude::*;
use ndarray::arr2;

fn message<T>(r: Result<T>) -> String {
    match r {
        Ok(_) => panic!("expected an error"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn shape_mismatch() {
    let (a, b) = (Tensor::zeros(&[2, 3]), Tensor::zeros(&[4, 5]));
    assert_eq!(message(a.matmul(&b)), "matmul: [2, 3] @ [4, 5]: inner dims 3 and 4 differ");
    assert_eq!(message(a.mul(&b)), "mul: [2, 3] and [4, 5] cannot be broadcast: sizes 2 and 4 at dim 0 differ");
    assert_eq!(
        message(Tensor::zeros(&[2, 3, 4]).matmul(&Tensor::zeros(&[5, 4, 2]))),
        "matmul: [2, 3, 4] @ [5, 4, 2]: batch dims [2] and [5] cannot be broadcast"
    );
    assert_eq!(message(Tensor::zeros(&[2]).matmul(&Tensor::zeros(&[]))), "matmul: [2] @ []: both operands need at least 1 dim");
    assert_eq!(message(Tensor::zeros(&[3, 2]).expand(&[3, 4])), "expand: cannot expand [3, 2] to [3, 4]");
    assert_eq!(
        message(Tensor::zeros(&[4, 3]).linear(&Tensor::zeros(&[5, 2]), None)),
        "linear: input [4, 3] does not end in in_features 2 of weight [5, 2]"
    );
    assert_eq!(message(Tensor::cat(&[Tensor::zeros(&[2, 3]), Tensor::zeros(&[2, 4])], 0)), "cat: [2, 3] and [2, 4] differ outside dim 0");
    assert_eq!(message(Tensor::from_vec(vec![1.0; 5], &[2, 3])), "from_vec: 5 values cannot fill shape [2, 3] (6 elements)");
}

#[test]
fn dim_out_of_range() {
    let x = Tensor::zeros(&[2, 3]);
    assert_eq!(message(x.sum_dims(&[2], false)), "sum: dim 2 is out of range for a tensor of 2 dims");
    assert_eq!(message(x.softmax(-3)), "softmax: dim -3 is out of range for a tensor of 2 dims");
    assert_eq!(message(x.transpose(0, 5)), "transpose: dim 5 is out of range for a tensor of 2 dims");
    assert_eq!(message(x.sum_dims(&[1, -1], false)), "sum: dim 1 appears more than once in [1, -1]");
    assert_eq!(message(x.permute(&[0, 0])), "permute: [0, 0] is not a permutation of 0..2");
}

#[test]
fn index_out_of_range() {
    let x = Tensor::zeros(&[2, 3]);
    assert_eq!(message(x.index_select(1, &[0, 3])), "index_select: index 3 is out of range for dim 1 of size 3");
    assert_eq!(message(x.gather(0, &arr2(&[[0usize, 2, 1]]).into_dyn())), "gather: index 2 is out of range for dim 0 of size 2");
    assert_eq!(message(x.narrow(1, 2, 2)), "narrow: start 2 + length 2 exceeds size 3 of dim 1");
}

#[test]
fn empty_cat_and_stack() {
    assert_eq!(message(Tensor::<f32>::cat(&[], 0)), "cat: needs at least one tensor, got an empty list");
    assert_eq!(message(Tensor::<f32>::stack(&[], 0)), "stack: needs at least one tensor, got an empty list");
}

#[test]
fn reshape_size() {
    let x = Tensor::zeros(&[2, 6]);
    assert_eq!(message(x.reshape(&[5, 2])), "reshape: cannot reshape [2, 6] (12 elements) to [5, 2]");
    assert_eq!(message(x.reshape(&[-1, -1])), "reshape: cannot reshape [2, 6] (12 elements) to [-1, -1]");
    assert_eq!(message(x.reshape(&[5, -1])), "reshape: cannot reshape [2, 6] (12 elements) to [5, -1]");
}

#[test]
fn backward_of_a_non_scalar_without_a_cotangent() {
    let x = Tensor::ones(&[2, 3]).requires_grad_(true).unwrap();
    let y = x.exp();
    assert_eq!(
        message(y.backward()),
        "backward: the output has shape [2, 3]; backward() without a cotangent needs a one-element output (use backward_with)"
    );
    assert_eq!(message(y.backward_with(&Tensor::ones(&[3]))), "backward: cotangent of shape [3] for an output of shape [2, 3]");
    assert_eq!(message(nabla::grad(&[&y], &[&x], None, false)), "grad: an output of shape [2, 3] needs a cotangent; pass cotangents");
    assert_eq!(
        message(Tensor::ones(&[1]).exp().backward()),
        "backward: the output does not require grad: no input it depends on requires grad"
    );
}

#[test]
fn item_of_many_and_bad_arange() {
    assert_eq!(message(Tensor::zeros(&[2]).item()), "item: a tensor of shape [2] has 2 elements, not 1");
    assert_eq!(message(Tensor::arange(0.0, 1.0, 0.0)), "arange: start 0, end 1, step 0: step must be finite and non-zero");
}

#[test]
#[should_panic(expected = "add: [2] and [3] cannot be broadcast: sizes 2 and 3 at dim 0 differ")]
fn operators_panic_with_the_same_message_documented() {
    let _ = &Tensor::zeros(&[2]) + &Tensor::zeros(&[3]);
}

/// conv1d runs as a 2-D convolution of height 1; its errors show the shapes the user gave.
#[test]
fn conv1d_errors_speak_in_the_users_shapes() {
    use nabla::ops::Conv1dConfig;
    let (x, w) = (Tensor::zeros(&[2, 3, 10]), Tensor::zeros(&[4, 1, 3]));
    assert_eq!(
        message(x.conv1d(&w, None, Conv1dConfig::default())),
        "conv1d: weight [4, 1, 3] expects 1 input channels, the input [2, 3, 10] has 3"
    );
    let w = Tensor::zeros(&[4, 3, 12]);
    assert_eq!(
        message(x.conv1d(&w, None, Conv1dConfig { padding: 0, ..Default::default() })),
        "conv1d: kernel [12] with dilation [1] does not fit the padded input [10] (padding [0])"
    );
    let w = Tensor::zeros(&[4, 3, 3]);
    assert_eq!(
        message(x.conv1d(&w, None, Conv1dConfig { stride: 0, ..Default::default() })),
        "conv1d: stride [0] and dilation [1] must be positive"
    );
}
