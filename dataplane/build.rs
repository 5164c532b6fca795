//! Compiles the XDP program `ebpf/relay.bpf.c` with the system's clang into `$OUT_DIR/relay.bpf.o`
//! (embedded into the daemon). A missing clang or libbpf-dev is a build error that says what to install.
use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};

fn main() -> anyhow::Result<()> {
    // srtp2-sys builds libsrtp with debug logging to stdout when this is set, and that logging
    // prints session keys: never build a Mediator that does.
    println!("cargo:rerun-if-env-changed=SRTP2_SYS_DEBUG_LOGGING");
    if std::env::var_os("SRTP2_SYS_DEBUG_LOGGING").is_some() {
        anyhow::bail!("SRTP2_SYS_DEBUG_LOGGING is set: libsrtp would log SRTP keys; unset it");
    }
    let ebpf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ebpf");
    for f in ["relay.bpf.c", "relay_abi.h"] {
        println!("cargo:rerun-if-changed={}", ebpf.join(f).display());
    }
    println!("cargo:rerun-if-env-changed=MEDIATOR_CLANG");
    let clang = std::env::var("MEDIATOR_CLANG").unwrap_or_else(|_| "clang".into());
    if !Path::new("/usr/include/bpf/bpf_helpers.h").exists() {
        bail!(
            "/usr/include/bpf/bpf_helpers.h is missing: install libbpf-dev (apt-get install -y libbpf-dev)"
        );
    }
    let arch = match std::env::var("CARGO_CFG_TARGET_ARCH").as_deref() {
        Ok("aarch64") => "aarch64-linux-gnu",
        _ => "x86_64-linux-gnu",
    };
    let out = PathBuf::from(std::env::var("OUT_DIR").context("OUT_DIR")?).join("relay.bpf.o");
    let status = Command::new(&clang)
        .args(["-target", "bpf", "-O2", "-g", "-Wall", "-Werror"])
        .arg(format!("-I/usr/include/{arch}"))
        .arg("-c")
        .arg(ebpf.join("relay.bpf.c"))
        .arg("-o")
        .arg(&out)
        .status();
    match status {
        Ok(s) if s.success() => Ok(()),
        Ok(s) => bail!("{clang} failed to compile ebpf/relay.bpf.c ({s}); see its messages above"),
        Err(e) => bail!(
            "cannot run `{clang}` ({e}): install clang and libbpf-dev (apt-get install -y clang libbpf-dev), \
             or point MEDIATOR_CLANG at a clang that has the BPF target"
        ),
    }
}
