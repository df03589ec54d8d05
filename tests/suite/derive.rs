//! `#[derive(Module)]`: PyTorch's state_dict names for a model of one's own, buffers saved
//! and loaded with the parameters, training mode reaching every child. The PyTorch twin of
//! the model is `scripts/derive_model_torch.py`, which wrote the expected keys below and
//! the files in `tests/data/derive_model*.safetensors`.

use nabla::nn::{Buffer, Conv1d, Dropout, Linear, Lstm, Param, RecurrentOptions, read_safetensors};
use nabla::prelude::*;

#[derive(Module)]
struct Encoder {
    conv: Conv1d,
    rnn: Lstm,
}

#[derive(Module)]
#[module(forward)]
struct Model {
    encoder: Encoder,
    layers: Vec<Linear>,
    head: Option<Linear>,
    dropout: Dropout,
    gate: Param,
    scale: Buffer,
    steps: Buffer,
    hidden: usize,
    #[module(skip)]
    _note: std::sync::Mutex<Vec<u8>>,
}

impl Model {
    fn new(seed: u64) -> Model {
        let mut rng = nabla::rng(seed);
        Model {
            encoder: Encoder {
                conv: Conv1d::new(3, 4, 3, Default::default(), true, &mut rng).unwrap(),
                rnn: Lstm::with_options(4, 5, RecurrentOptions::default().batch_first(true), &mut rng).unwrap(),
            },
            layers: vec![Linear::new(5, 6, &mut rng), Linear::new(6, 2, &mut rng)],
            head: Some(Linear::new(2, 2, &mut rng)),
            dropout: Dropout::new(0.5, &mut rng).unwrap(),
            gate: Param::new(Tensor::ones(&[2])),
            scale: Buffer::new(Tensor::ones(&[2])),
            steps: Buffer::integer(0),
            hidden: 5,
            _note: Default::default(),
        }
    }

    /// As the PyTorch twin's forward: x `(N, 3, L)` to `(N, 2)`.
    fn forward(&self, x: &Tensor) -> nabla::Result<Tensor> {
        let h = self.encoder.conv.forward(x)?.transpose(1, 2)?;
        let out = self.encoder.rnn.forward(&h)?;
        let steps = out.shape()[1];
        let mut y = out.narrow(1, steps - 1, 1)?.squeeze(1)?;
        for layer in &self.layers {
            y = layer.forward(&y)?.tanh();
        }
        let head = self.head.as_ref().expect("head");
        head.forward(&Module::<f32>::forward(&self.dropout, &y)?)?.mul(&self.gate.tensor())?.mul(&self.scale.tensor())
    }
}

/// `list(model.state_dict().keys())` of the PyTorch twin.
const TORCH_KEYS: [&str; 15] = [
    "gate",
    "scale",
    "steps",
    "encoder.conv.weight",
    "encoder.conv.bias",
    "encoder.rnn.weight_ih_l0",
    "encoder.rnn.weight_hh_l0",
    "encoder.rnn.bias_ih_l0",
    "encoder.rnn.bias_hh_l0",
    "layers.0.weight",
    "layers.0.bias",
    "layers.1.weight",
    "layers.1.bias",
    "head.weight",
    "head.bias",
];

fn data(name: &str) -> String {
    format!("{}/tests/data/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn temp_path(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("nabla-derive-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

#[test]
fn names_are_pytorchs_state_dict_keys_in_pytorchs_order() {
    let model = Model::new(0);
    let params: Vec<String> = model.named_parameters().into_iter().map(|(n, _)| n).collect();
    let buffers: Vec<String> = model.named_buffers().into_iter().map(|(n, _)| n).collect();
    // PyTorch's named_parameters: the module's own first, then each child's in order.
    let torch_params: Vec<&str> = TORCH_KEYS.iter().copied().filter(|k| !["scale", "steps"].contains(k)).collect();
    assert_eq!(params, torch_params);
    assert_eq!(buffers, ["scale", "steps"]);
    let children: Vec<String> = model.named_children().into_iter().map(|(n, _)| n).collect();
    assert_eq!(children, ["encoder", "layers.0", "layers.1", "head", "dropout"]);
    // conv 4·3·3 + 4, LSTM 4·20 + 5·20 + 2·20, linears 5·6 + 6 + 6·2 + 2 + 2·2 + 2, gate 2
    assert_eq!(model.num_parameters(), 40 + 220 + 36 + 14 + 6 + 2);
}

#[test]
fn a_pytorch_saved_model_loads_by_name_and_computes_pytorchs_output() {
    let model = Model::new(1);
    model.load(data("derive_model.safetensors")).unwrap();
    assert_eq!(model.steps.tensor().to_vec(), vec![7.0], "the int64 buffer");
    assert_eq!(model.scale.tensor().to_vec(), vec![0.25, 0.25]);
    model.eval();
    let io = read_safetensors(data("derive_model_io.safetensors")).unwrap();
    let x = &io.tensors["x"];
    let x = Tensor::from_vec(x.values.iter().map(|&v| v as f32).collect(), &x.shape).unwrap();
    let y = model.forward(&x).unwrap();
    let expected = &io.tensors["y"];
    assert_eq!(y.shape(), expected.shape.as_slice());
    for (a, b) in y.to_vec().iter().zip(&expected.values) {
        assert!((*a as f64 - b).abs() < 1e-6, "nabla {a} against PyTorch {b}");
    }
}

#[test]
fn saved_files_hold_parameters_and_buffers_and_load_back() {
    let path = temp_path("model.safetensors");
    let (a, b) = (Model::new(2), Model::new(3));
    a.steps.set(ndarray::arr0(12.0f32).into_dyn()).unwrap();
    a.scale.update(|s| s.fill(0.5));
    a.save(&path).unwrap();
    let file = read_safetensors(&path).unwrap();
    let mut keys: Vec<&str> = file.tensors.keys().map(String::as_str).collect();
    let mut expected = TORCH_KEYS.to_vec();
    keys.sort();
    expected.sort();
    assert_eq!(keys, expected);
    assert_eq!(file.tensors["steps"].dtype, "I64", "PyTorch's num_batches_tracked dtype");
    assert_eq!(file.tensors["scale"].dtype, "F32");
    b.load(&path).unwrap();
    for ((na, pa), (nb, pb)) in a.named_parameters().iter().zip(b.named_parameters()) {
        assert_eq!((na, pa.tensor().to_vec()), (&nb, pb.tensor().to_vec()));
    }
    assert_eq!(b.steps.tensor().to_vec(), vec![12.0]);
    assert_eq!(b.scale.tensor().to_vec(), vec![0.5, 0.5]);
}

#[test]
fn buffers_are_not_parameters_and_optimisers_leave_them_alone() {
    let model = Model::new(4);
    assert_eq!(model.parameters().len(), 13);
    assert_eq!(model.buffers().len(), 2);
    assert_eq!(model.hidden, 5, "a plain field, left out of the names");
    assert!(!model.scale.tensor().requires_grad());
    let loss = model.forward(&Tensor::ones(&[1, 3, 5])).unwrap().sum();
    let grads = loss.backward().unwrap();
    let mut opt = optim::Sgd::new(model.parameters(), 0.5);
    opt.step(&grads).unwrap();
    assert_eq!(model.scale.tensor().to_vec(), vec![1.0, 1.0]);
    assert_ne!(model.gate.tensor().to_vec(), vec![1.0, 1.0]);
}

#[test]
fn eval_and_train_reach_children_in_vecs_and_options() {
    #[derive(Module)]
    #[module(forward)]
    struct Drops {
        inner: Vec<Option<Dropout>>,
    }
    impl Drops {
        fn forward(&self, x: &Tensor) -> nabla::Result<Tensor> {
            let mut x = x.clone();
            for d in self.inner.iter().flatten() {
                x = Module::<f32>::forward(d, &x)?;
            }
            Ok(x)
        }
    }
    let mut rng = nabla::rng(5);
    let model = Drops { inner: vec![None, Some(Dropout::new(0.5, &mut rng).unwrap())] };
    let x = Tensor::ones(&[64]);
    assert_ne!(model.forward(&x).unwrap().to_vec(), x.to_vec(), "training by default: some zeroed");
    model.eval();
    assert_eq!(model.forward(&x).unwrap().to_vec(), x.to_vec(), "eval: the identity");
    model.train();
    assert_ne!(model.forward(&x).unwrap().to_vec(), x.to_vec());
    // The derived model's own dropout, one level down.
    let model = Model::new(6);
    model.eval();
    let y = Module::<f32>::forward(&model.dropout, &x).unwrap();
    assert_eq!(y.to_vec(), x.to_vec());
}

#[test]
fn a_hand_written_container_lists_its_children_and_gets_the_rest() {
    struct Pair {
        first: Linear,
        drop: Dropout,
    }
    impl Module for Pair {
        fn forward(&self, x: &Tensor) -> nabla::Result<Tensor> {
            self.drop.forward(&self.first.forward(x)?)
        }
        fn named_children(&self) -> Vec<(String, &dyn Module)> {
            vec![("first".into(), &self.first), ("drop".into(), &self.drop)]
        }
    }
    let mut rng = nabla::rng(7);
    let pair = Pair { first: Linear::new(8, 64, &mut rng), drop: Dropout::new(0.5, &mut rng).unwrap() };
    let names: Vec<String> = pair.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["first.weight", "first.bias"]);
    let x = Tensor::ones(&[1, 8]);
    let plain = pair.first.forward(&x).unwrap().to_vec();
    pair.eval();
    assert_eq!(pair.forward(&x).unwrap().to_vec(), plain, "eval() reached the dropout");
}

#[test]
fn a_model_without_forward_says_so_by_name() {
    #[derive(Module)]
    struct Heads {
        a: Linear,
        b: Linear,
    }
    let mut rng = nabla::rng(8);
    let heads = Heads { a: Linear::new(2, 2, &mut rng), b: Linear::new(2, 3, &mut rng) };
    let err = heads.forward(&Tensor::zeros(&[1, 2])).unwrap_err().to_string();
    assert!(err.starts_with("forward: ") && err.contains("Heads has no Module::forward"), "{err}");
    assert_eq!(heads.parameters().len(), 4);
}

#[test]
fn generic_models_use_their_element_type() {
    #[derive(Module)]
    struct Twin<T: Element> {
        layer: nn::Linear<T>,
        tuple: (usize, usize),
        #[module(skip)]
        _extra: std::marker::PhantomData<T>,
    }
    #[derive(Module)]
    #[module(element = f64)]
    struct Wide(nn::Linear<f64>, Param<f64>);
    let mut rng = nabla::rng(9);
    let twin: Twin<f64> = Twin { layer: nn::Linear::<f64>::new(2, 2, &mut rng), tuple: (1, 2), _extra: std::marker::PhantomData };
    assert_eq!(twin.named_parameters().len(), 2);
    assert_eq!(twin.tuple, (1, 2));
    let wide = Wide(nn::Linear::<f64>::new(2, 2, &mut rng), Param::new(Tensor::<f64>::zeros(&[1])));
    let names: Vec<String> = wide.named_parameters().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["1", "0.weight", "0.bias"]);
}

#[test]
fn an_integer_buffer_refuses_fractions() {
    let steps: Buffer = Buffer::integer(3);
    let err = steps.set(ndarray::arr0(1.5f32).into_dyn()).unwrap_err().to_string();
    assert_eq!(err, "Buffer::set: 1.5 for an integer buffer");
    assert_eq!(steps.tensor().to_vec(), vec![3.0]);
}
