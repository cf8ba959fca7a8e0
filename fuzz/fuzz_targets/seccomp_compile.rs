//! seccomp profiles (Localhost profiles are files on the node; RuntimeDefault is berth's) compiled
//! to BPF for every ABI: an error or a program, never a panic.
#![no_main]

use berth_shim::executor::seccomp::{Abi, Filter};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(profile) = serde_json::from_slice::<oci_spec::runtime::LinuxSeccomp>(data) else {
        return;
    };
    for abi in [Abi::X86_64, Abi::X86, Abi::X32, Abi::Aarch64, Abi::Arm] {
        if let Ok(f) = Filter::compile_for(&profile, abi) {
            let _ = f.program();
        }
    }
});
