//! Damaged and hostile safetensors files: each gives an `Err` naming what is wrong (never a
//! panic), allocates no more than the file's size justifies, and leaves the model it was
//! loaded into unchanged. Odd but valid names load as names.
//!
//! One test function, because the allocation check reads a process-wide counter.

use nabla::nn::{self, Module, StateDict};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The system allocator, counting live bytes and their peak.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call forwards to `System` with the caller's layout; the counters only
// observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        unsafe {
            let live = LIVE.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(live, Ordering::Relaxed);
            System.alloc(layout)
        }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe {
            LIVE.fetch_sub(layout.size(), Ordering::Relaxed);
            System.dealloc(ptr, layout)
        }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// A safetensors file from a JSON header and a data section.
fn file(header: &str, data: &[u8]) -> Vec<u8> {
    let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
    bytes.extend_from_slice(header.as_bytes());
    bytes.extend_from_slice(data);
    bytes
}

fn model() -> nn::Linear<f32> {
    nn::Linear::new(2, 2, &mut nabla::rng(7))
}

fn values(m: &nn::Linear<f32>) -> Vec<Vec<f32>> {
    m.parameters().iter().map(|p| p.tensor().to_vec()).collect()
}

#[test]
fn hostile_files_are_refused_within_their_size_and_change_nothing() {
    let f32s = |n: usize| vec![0u8; 4 * n];
    let valid_header =
        r#"{"weight":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"bias":{"dtype":"F32","shape":[2],"data_offsets":[16,24]}}"#;
    let mut huge_header = file("{}", &[]);
    huge_header[..8].copy_from_slice(&u64::MAX.to_le_bytes());
    let mut header_past_end = file(valid_header, &f32s(6));
    header_past_end[..8].copy_from_slice(&10_000u64.to_le_bytes());
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("empty file", vec![], "fewer than"),
        ("shorter than the size prefix", vec![1, 2, 3], "fewer than"),
        (
            "declared header of 2^64 - 1 bytes",
            huge_header,
            "not a safetensors file: its first 8 bytes declare a header of 18446744073709551615 bytes",
        ),
        ("header running past the end", header_past_end, "a header of 10000 bytes in a file of"),
        // The size prefix of a text file is its first 8 characters read as a little-endian
        // u64: "weight,b" is 7074157106452587895.
        (
            "a text file",
            b"weight,bias\n0.5,1.0\n".to_vec(),
            "not a safetensors file: its first 8 bytes declare a header of 7074157106452587895 bytes in a file of 20 (it begins with text: \"weight,bias\\n0.5,\")",
        ),
        ("truncated data", file(valid_header, &f32s(5)), "shorter or longer"),
        ("header that is not JSON", file("{\"weight\": [", &[]), "JSON"),
        ("header that is not UTF-8", [&1u64.to_le_bytes()[..], &[0xff]].concat(), "UTF-8"),
        (
            "declared shape of 2^40 x 2^40 over 16 bytes",
            file(r#"{"weight":{"dtype":"F32","shape":[1099511627776,1099511627776],"data_offsets":[0,16]}}"#, &f32s(4)),
            "overflows",
        ),
        (
            "shape whose element count overflows",
            file(r#"{"weight":{"dtype":"F32","shape":[18446744073709551615,2],"data_offsets":[0,8]}}"#, &f32s(2)),
            "overflows",
        ),
        (
            "overlapping offsets",
            file(
                r#"{"weight":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"bias":{"dtype":"F32","shape":[2],"data_offsets":[8,16]}}"#,
                &f32s(4),
            ),
            "\"bias\": its offsets overlap",
        ),
        ("offsets beyond the data", file(r#"{"weight":{"dtype":"F32","shape":[2,2],"data_offsets":[0,4096]}}"#, &f32s(4)), "byte range"),
        ("offsets reversed", file(r#"{"weight":{"dtype":"F32","shape":[1],"data_offsets":[4,0]}}"#, &f32s(1)), "run backwards"),
        (
            "shape that disagrees with the byte count",
            file(r#"{"weight":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, &f32s(2)),
            "byte range",
        ),
        (
            "unsupported dtype (bf16)",
            file(
                r#"{"weight":{"dtype":"BF16","shape":[2,2],"data_offsets":[0,8]},"bias":{"dtype":"BF16","shape":[2],"data_offsets":[8,12]}}"#,
                &[0; 12],
            ),
            "BF16",
        ),
        ("unsupported dtype (bool)", file(r#"{"weight":{"dtype":"BOOL","shape":[4],"data_offsets":[0,4]}}"#, &[0; 4]), "BOOL"),
        ("an unknown dtype", file(r#"{"weight":{"dtype":"F31","shape":[1],"data_offsets":[0,4]}}"#, &f32s(1)), "dtype name"),
    ];
    let target = model();
    let before = values(&target);
    let dir = std::env::temp_dir().join(format!("nabla-hostile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (what, bytes, mentions) in &cases {
        let start = LIVE.load(Ordering::Relaxed);
        PEAK.store(start, Ordering::Relaxed);
        let result = StateDict::from_bytes(bytes);
        let grew = PEAK.load(Ordering::Relaxed) - start;
        let err = match result {
            Ok(state) => panic!("{what}: accepted as {state:?}"),
            Err(e) => e.to_string(),
        };
        assert!(err.starts_with("load: <bytes>: "), "{what}: {err}");
        assert!(err.contains(mentions), "{what}: {err} does not mention {mentions}");
        // The parser may copy the header and build a small map; nothing near the declared sizes.
        assert!(grew <= 64 * 1024 + 4 * bytes.len(), "{what}: {grew} bytes allocated for a {}-byte file", bytes.len());
        // Through a file and into a model: the same error, the model untouched.
        let path = dir.join("hostile.safetensors");
        std::fs::write(&path, bytes).unwrap();
        let err = target.load(&path).unwrap_err().to_string();
        assert!(err.starts_with("load: "), "{what}: {err}");
        assert_eq!(values(&target), before, "{what}: the model changed");
    }

    // Names with odd characters are names: they parse, and a strict load reports them.
    let odd = ["", "../../etc/passwd", "名前", "a\u{0}b", "weight ", "\u{202e}tfel", &"x".repeat(10_000)];
    let header = format!(
        "{{{}}}",
        odd.iter()
            .enumerate()
            .map(|(i, n)| format!(
                "{}:{{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[{},{}]}}",
                serde_json::to_string(n).unwrap(),
                4 * i,
                4 * i + 4
            ))
            .collect::<Vec<_>>()
            .join(",")
    );
    let state = StateDict::from_bytes(&file(&header, &f32s(odd.len()))).unwrap();
    let mut names: Vec<&str> = state.tensors.keys().map(String::as_str).collect();
    let mut expect = odd.to_vec();
    names.sort_unstable();
    expect.sort_unstable();
    assert_eq!(names, expect);
    let err = nn::load_state_dict(&target.named_parameters(), &state).unwrap_err().to_string();
    assert!(err.contains("missing weight") && err.contains("unexpected ../../etc/passwd"), "{err}");
    assert_eq!(values(&target), before);

    // A state dict built by hand whose values do not fill its shape: refused, nothing set.
    let mut state = StateDict::from_bytes(&file(valid_header, &f32s(6))).unwrap();
    state.tensors.get_mut("bias").unwrap().values.pop();
    let err = nn::load_state_dict(&target.named_parameters(), &state).unwrap_err().to_string();
    assert_eq!(err, "load_state_dict: bias has 1 values for shape [2]");
    assert_eq!(values(&target), before);
    // And the valid file loads.
    nn::load_state_dict(&target.named_parameters(), &StateDict::from_bytes(&file(valid_header, &f32s(6))).unwrap()).unwrap();
    assert_eq!(values(&target), vec![vec![0.0; 4], vec![0.0; 2]]);
    std::fs::remove_dir_all(&dir).unwrap();
}
