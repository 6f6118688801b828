//! Prints how long loading a BTF file takes: btf-rs's own pass (mmap backend) and synq's struct index.
//! `cargo run --release --example btf_cost [FILE]` (default /sys/kernel/btf/vmlinux). Bench aid.
use std::time::Instant;

fn main() {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "/sys/kernel/btf/vmlinux".into());
    let bytes = std::fs::read(&path).unwrap_or_default();
    let copy = std::env::temp_dir().join("synq-btf-cost");
    let _ = std::fs::write(&copy, &bytes);
    for i in 0..3 {
        let t = Instant::now();
        let r = btf_rs::Btf::from_file_with_backend(&copy, btf_rs::Backend::Mmap);
        let a = t.elapsed();
        let t = Instant::now();
        let idx = synq::btf::index::StructIndex::scan(&bytes);
        let b = t.elapsed();
        let t = Instant::now();
        let whole = synq::btf::parse_bytes(&bytes, std::path::Path::new(&path));
        let c = t.elapsed();
        println!(
            "run {i}: {} bytes; btf-rs mmap pass {:.2} ms ({}), index pass {:.2} ms (tcp_hashinfo struct ids: {:?}), parse_bytes {:.2} ms ({})",
            bytes.len(),
            a.as_secs_f64() * 1e3,
            if r.is_ok() { "ok" } else { "failed" },
            b.as_secs_f64() * 1e3,
            idx.ids("inet_hashinfo"),
            c.as_secs_f64() * 1e3,
            if whole.is_ok() { "ok" } else { "failed" },
        );
    }
    let _ = std::fs::remove_file(&copy);
}
