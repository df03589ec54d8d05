//! The op API driven by fuzz bytes: two tensors of fuzzed shapes and values, then a fuzzed
//! sequence of ops with fuzzed arguments (dims, configs, indices, shapes), each applied to
//! the running result. Every call must return Ok or Err, never panic; at the end a backward
//! pass through whatever was built must run too.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nabla::ndarray::{ArrayD, IxDyn};
use nabla::nn::functional::{PadMode, batch_norm, group_norm, layer_norm, pad};
use nabla::ops::{Conv2dConfig, Pool1dConfig, Pool2dConfig};
use nabla::Tensor;

/// Reads the fuzz input as a stream of small numbers (0 once it runs out).
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn byte(&mut self) -> u8 {
        let Some((&b, rest)) = self.0.split_first() else { return 0 };
        self.0 = rest;
        b
    }
    fn small(&mut self, n: u8) -> usize {
        (self.byte() % n) as usize
    }
    fn dim(&mut self) -> isize {
        self.small(9) as isize - 4
    }
    fn shape(&mut self) -> Vec<usize> {
        let rank = self.small(5);
        (0..rank).map(|_| self.small(5)).collect()
    }
    fn tensor(&mut self) -> Tensor<f32> {
        let shape = self.shape();
        let n: usize = shape.iter().product();
        let values = (0..n).map(|_| (self.byte() as f32 - 128.0) / 16.0).collect();
        Tensor::from_vec(values, &shape).expect("n values").requires_grad_(true).expect("a fresh leaf")
    }
}

fuzz_target!(|data: &[u8]| {
    let mut b = Bytes(data);
    let (mut x, y) = (b.tensor(), b.tensor());
    for _ in 0..b.small(8) {
        let result = match b.small(29) {
            0 => x.add(&y),
            1 => x.mul(&y),
            2 => x.div(&y),
            3 => x.maximum(&y),
            4 => x.matmul(&y),
            5 => x.sum_dims(&[b.dim()], b.byte() & 1 == 1),
            6 => x.amax_dims(&[b.dim(), b.dim()], false),
            7 => x.logsumexp_dims(&[b.dim()], true),
            8 => x.softmax(b.dim()),
            9 => x.log_softmax(b.dim()),
            10 => x.reshape(&[b.small(5) as isize, -1]),
            11 => x.permute(&(0..b.small(5)).map(|_| b.dim()).collect::<Vec<_>>()),
            12 => x.transpose(b.dim(), b.dim()),
            13 => x.narrow(b.dim(), b.small(4), b.small(4)),
            14 => Tensor::cat(&[x.clone(), y.clone()], b.dim()),
            15 => Tensor::stack(&[x.clone(), y.clone()], b.dim()),
            16 => x.expand(&(0..b.small(5)).map(|_| b.small(5) as isize - 1).collect::<Vec<_>>()),
            17 => x.index_select(b.dim(), &(0..b.small(4)).map(|_| b.small(5)).collect::<Vec<_>>()),
            18 => {
                let index = ArrayD::from_shape_fn(IxDyn(x.shape()), |_| b.small(5));
                x.gather(b.dim(), &index)
            }
            19 => {
                let cfg = Conv2dConfig {
                    stride: [b.small(3), b.small(3)],
                    padding: [b.small(3), b.small(3)],
                    dilation: [b.small(3), b.small(3)],
                    groups: b.small(3),
                };
                x.conv2d(&y, None, cfg)
            }
            20 => {
                let cfg = Pool2dConfig {
                    kernel_size: [b.small(4), b.small(4)],
                    stride: [b.small(3), b.small(3)],
                    padding: [b.small(3), b.small(3)],
                    dilation: [b.small(3), b.small(3)],
                    ceil_mode: b.byte() & 1 == 1,
                };
                match b.small(4) {
                    0 => x.max_pool2d(cfg),
                    1 => x.avg_pool2d(cfg, b.byte() & 1 == 1, Some(b.small(3)).filter(|_| b.byte() & 1 == 1)),
                    2 => x.lp_pool2d(2.0, cfg),
                    _ => x.lse_pool2d(b.small(5) as f64 - 2.0, cfg),
                }
            }
            21 => {
                let cfg = Pool1dConfig {
                    kernel_size: b.small(4),
                    stride: b.small(3),
                    padding: b.small(3),
                    dilation: b.small(3),
                    ceil_mode: b.byte() & 1 == 1,
                };
                x.max_pool1d_with_indices(cfg).map(|(y, _)| y)
            }
            23 => x.adaptive_avg_pool2d([b.small(4), b.small(4)]),
            24 => x.adaptive_max_pool1d(b.small(4)).map(|(y, _)| y),
            25 => {
                let modes = [PadMode::Zeros, PadMode::Constant(1.5), PadMode::Reflect, PadMode::Replicate, PadMode::Circular];
                let pads: Vec<usize> = (0..b.small(7)).map(|_| b.small(4)).collect();
                pad(&x, &pads, modes[b.small(5)])
            }
            26 => {
                let trailing = b.small(3).min(x.ndim());
                layer_norm(&x, &x.shape()[x.ndim() - trailing..].to_vec(), None, None, 1e-5)
            }
            27 => batch_norm(&x, None, None, None, None, true, 0.1, 1e-5),
            28 => group_norm(&x, b.small(3), None, None, 1e-5),
            22 => x.flatten(b.dim(), b.dim()),
            _ => x.squeeze(b.dim()).and_then(|t| t.unsqueeze(b.dim())),
        };
        if let Ok(t) = result {
            x = t;
        }
    }
    // A backward pass through whatever graph was built.
    let _ = x.sum().backward();
});
