//! Builds the XDP program (`ips-ebpf`) for the BPF target with the nightly toolchain and puts
//! the object in `OUT_DIR`, where `enforcer::loader` embeds it.
use std::path::Path;

fn main() -> anyhow::Result<()> {
    let manifest_dir = env!("CARGO_MANIFEST_DIR");
    let root = Path::new(manifest_dir)
        .parent()
        .ok_or_else(|| anyhow::anyhow!("{manifest_dir} has no parent"))?
        .join("ips-ebpf");
    let root = root
        .to_str()
        .ok_or_else(|| anyhow::anyhow!("non-UTF-8 path {}", root.display()))?;
    let package = aya_build::Package {
        name: "ips-ebpf",
        root_dir: root,
        ..Default::default()
    };
    aya_build::build_ebpf([package], aya_build::Toolchain::default())
}
