//! Encoding with `Device::Cuda` against the CPU (cosine >= 1 - 1e-4 per text). Runs only on a
//! machine whose `nvidia-smi` lists a GPU and with `--features cuda` (after `scripts/setup.sh`
//! and `source scripts/env-gpu.sh`); elsewhere it prints why it skipped and passes.
use std::process::Command;

use ltre::core::encoder::{Device, EncoderOptions};
use ltre::core::export::ExportOptions;
use ltre::core::manifest::Pooling;
use ltre::core::testing::{export_tiny_model_with, TinyBertSpec};
use ltre::core::Encoder;

/// Why this machine cannot run the test, if it cannot.
fn no_gpu() -> Option<String> {
    match Command::new("nvidia-smi").arg("-L").output() {
        Err(e) => Some(format!("nvidia-smi not runnable ({e})")),
        Ok(out) if !out.status.success() => Some(format!("nvidia-smi failed ({})", out.status)),
        Ok(out) if !String::from_utf8_lossy(&out.stdout).contains("GPU") => {
            Some("nvidia-smi lists no GPU".into())
        }
        Ok(_) if !cfg!(feature = "cuda") => {
            Some("a GPU is present but this build lacks `--features cuda`".into())
        }
        Ok(_) => None,
    }
}

#[test]
fn cuda_encodes_like_the_cpu() {
    if let Some(why) = no_gpu() {
        eprintln!("skipping cuda_encodes_like_the_cpu: {why}");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let opts = ExportOptions {
        pooling: Some(Pooling::Mean),
        normalize: Some(true),
        ..Default::default()
    };
    let dir = export_tiny_model_with(tmp.path(), &TinyBertSpec::default(), &opts).unwrap();
    let load = |device| {
        Encoder::load_with(
            &dir,
            EncoderOptions {
                device,
                ..Default::default()
            },
        )
        .unwrap()
    };
    let (cpu, gpu) = (load(Device::Cpu), load(Device::Cuda));
    assert_eq!(
        gpu.device(),
        Device::Cuda,
        "a GPU is present but the CUDA provider did not load: run scripts/setup.sh, then \
         `source scripts/env-gpu.sh`"
    );
    let texts = [
        "what causes scurvy",
        "vitamin c deficiency and collagen synthesis",
        "a longer text about proteins, cells and the immune response in patients",
    ];
    let (a, b) = (
        cpu.encode_queries(&texts).unwrap(),
        gpu.encode_queries(&texts).unwrap(),
    );
    for (x, y) in a.rows().into_iter().zip(b.rows()) {
        let cos = x.dot(&y) / (x.dot(&x).sqrt() * y.dot(&y).sqrt());
        assert!(cos >= 1.0 - 1e-4, "cosine {cos}");
    }
}
