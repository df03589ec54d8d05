//! Any bytes as a safetensors file: parsing returns Ok or Err (never panics or allocates
//! beyond the input's size), and a strict load into a model either succeeds or leaves the
//! model exactly as it was.
#![no_main]

use libfuzzer_sys::fuzz_target;
use nabla::nn::{self, Module, StateDict};

fuzz_target!(|data: &[u8]| {
    let Ok(state) = StateDict::from_bytes(data) else { return };
    let model: nn::Linear<f32> = nn::Linear::new(2, 2, &mut nabla::rng(0));
    let before: Vec<Vec<f32>> = model.parameters().iter().map(|p| p.tensor().to_vec()).collect();
    if nn::load_state_dict(&model.named_parameters(), &state).is_err() {
        let after: Vec<Vec<f32>> = model.parameters().iter().map(|p| p.tensor().to_vec()).collect();
        assert_eq!(before, after, "a failed load changed the model");
    }
});
