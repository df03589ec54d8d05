//! Saving and loading parameters as safetensors under PyTorch's names.

use nabla::nn::{StateDict, load_state_dict, read_safetensors};
use nabla::prelude::*;

fn temp_path(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("nabla-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn model(seed: u64) -> nn::Sequential {
    let mut rng = nabla::rng(seed);
    nn::Sequential::new().push(nn::Linear::new(4, 3, &mut rng)).push(nn::Relu).push(nn::Linear::new(3, 2, &mut rng))
}

#[test]
fn save_then_load_restores_every_parameter() {
    let path = temp_path("roundtrip.safetensors");
    let (a, b) = (model(1), model(2));
    a.save(&path).unwrap();
    b.load(&path).unwrap();
    for ((na, pa), (nb, pb)) in a.named_parameters().iter().zip(b.named_parameters()) {
        assert_eq!((na, pa.tensor().to_vec()), (&nb, pb.tensor().to_vec()));
    }
    let file = read_safetensors(&path).unwrap();
    assert_eq!(file.tensors.keys().cloned().collect::<Vec<_>>(), ["0.bias", "0.weight", "2.bias", "2.weight"]);
    assert!(!path.with_extension("safetensors.tmp").exists(), "the temporary file was renamed into place");
}

#[test]
fn a_failed_load_reports_every_mismatch_and_changes_nothing() {
    let path = temp_path("mismatch.safetensors");
    let mut rng = nabla::rng(3);
    nn::Sequential::<f32>::new()
        .push(nn::Linear::new(4, 5, &mut rng))
        .push(nn::Relu)
        .push(nn::Linear::with_bias(5, 2, false, &mut rng))
        .save(&path)
        .unwrap();
    let target = model(4);
    let before: Vec<Vec<f32>> = target.parameters().iter().map(|p| p.tensor().to_vec()).collect();
    let err = target.load(&path).unwrap_err().to_string();
    assert_eq!(
        err,
        "load_state_dict: 0.weight has shape [5, 4] in the file, [3, 4] in the module; 0.bias has shape [5] in the file, [3] in the module; \
         2.weight has shape [2, 5] in the file, [2, 3] in the module; missing 2.bias"
    );
    let after: Vec<Vec<f32>> = target.parameters().iter().map(|p| p.tensor().to_vec()).collect();
    assert_eq!(before, after);
    assert_eq!(target.load(temp_path("absent.safetensors")).unwrap_err().to_string().split(':').next(), Some("load"));
}

#[test]
fn loading_an_f64_file_into_f32_parameters_is_refused() {
    let path = temp_path("dtype.safetensors");
    let mut rng = nabla::rng(5);
    let wide: nn::Linear<f64> = nn::Linear::<f64>::new(2, 2, &mut rng);
    wide.save(&path).unwrap();
    let narrow: nn::Linear = nn::Linear::new(2, 2, &mut rng);
    assert_eq!(
        narrow.load(&path).unwrap_err().to_string(),
        "load_state_dict: weight is F64 in the file, F32 in the module; bias is F64 in the file, F32 in the module"
    );
}

#[test]
fn a_file_written_by_pytorch_loads_by_name() {
    // The golden files are safetensors written by PyTorch; this one holds a Linear(3, 4)'s
    // parameters as param.weight and param.bias next to the case's other tensors.
    let file = read_safetensors(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/cases/module-Linear-00.safetensors")).unwrap();
    let mut state = StateDict::default();
    for (name, t) in &file.tensors {
        if let Some(short) = name.strip_prefix("param.") {
            state.tensors.insert(short.to_string(), t.clone());
        }
    }
    let layer: nn::Linear<f64> = nn::Linear::<f64>::new(3, 4, &mut nabla::rng(0));
    load_state_dict(&layer.named_parameters(), &state).unwrap();
    assert_eq!(layer.weight.tensor().to_vec(), file.tensors["param.weight"].values);
    // And the loaded layer reproduces PyTorch's output.
    let x = Tensor::<f64>::from_vec(file.tensors["input.0"].values.clone(), &file.tensors["input.0"].shape).unwrap();
    let y = layer.forward(&x).unwrap();
    for (a, b) in y.to_vec().iter().zip(&file.tensors["output.0"].values) {
        assert!((a - b).abs() < 1e-12);
    }
}
