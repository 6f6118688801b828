//! What tests/realkernel/mutate_dumps.py (issue 7, "Mutated real dumps end to end") found on real dumps,
//! reproduced on a synthetic kernel (its listening table laid out with a real kernel's BTF, its own page
//! tables and `init_uts_ns`, written as an ELF vmcore by the independent `common/physwriter.rs`).
//!
//! Seed 1 of mutate_dumps.py on the 6.12 guest's dumps: ids 45 (kdump_sub_header.offset_vmcoreinfo + 1, so
//! the text starts "SRELEASE="), 103/355/599 ("OSRELEASE" key in lower case), 473/523 (its value all 'f' /
//! all '0'), 620 (first character '-'), 851 (one character changed). Each time synq exits 0 with no warning,
//! the listeners right, but `kernel.release` is whatever the damaged line says ("unknown" when the key is
//! gone), although the same VMCOREINFO names `init_uts_ns`, which holds the real release (synq's own
//! `discover::validate` compared the two for notes found by scanning, not for a dump's header note).
//! Fixed in cf93d4b: the release comes from `init_uts_ns`, and a note that disagrees is a warning.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::path::Path;
use std::process::Command;

use common::physwriter::{PhysImage, START_KERNEL_MAP, uts_namespace};
use common::*;

const BTF: &str = "cilium-ebpf-7.1-x86_64.btf.xz";
const RELEASE: &str = "6.99.0-synthetic";
const INIT_TOP_PGT: u64 = 0xffff_ffff_82a0_a000;
const INIT_UTS_NS: u64 = 0xffff_ffff_82c0_0000;
const PHYS_BASE: u64 = 0x0100_0000;

/// VMCOREINFO with `osrelease_line` as its first line.
fn vmcoreinfo(osrelease_line: &str) -> String {
    format!(
        "{osrelease_line}\nPAGESIZE=4096\nSYMBOL(init_uts_ns)={INIT_UTS_NS:x}\n\
         SYMBOL(init_top_pgt)={INIT_TOP_PGT:x}\nNUMBER(phys_base)={PHYS_BASE}\nKERNELOFFSET=0\n\
         NUMBER(pgtable_l5_enabled)=0\n"
    )
}

/// `synq --core FILE --json` with the kernel's side files: (exit code, JSON, stderr).
fn run(file: &Path, kallsyms: &Path) -> (i32, serde_json::Value, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_synq"))
        .arg("--json")
        .arg("--core")
        .arg(file)
        .arg("--kallsyms")
        .arg(kallsyms)
        .arg("--btf")
        .arg(fixture(BTF))
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A damaged OSRELEASE line in a dump's own VMCOREINFO: synq may refuse (exit 1), warn (exit 2), or take
/// the release from `init_uts_ns`; it may not exit 0 naming a release the kernel's memory contradicts.
#[test]
fn dump_release_is_checked_against_init_uts_ns() {
    let dir = scratch("mutated-release");
    let mut k = Kernel::new(BTF, 16);
    k.add(1, Sock::listen("192.0.2.1", 80, 6, 2));
    k.add(3, Sock::listen("10.0.0.1", 22, 0, 1));
    let (code, v, err) = run_json(&dir, &k, BTF);
    assert_eq!(code, 0, "{err}");
    let reference = rows(&v);
    let (_, kallsyms) = write_kernel(&dir, &k);
    let mut mem = PhysImage::new(PHYS_BASE, INIT_TOP_PGT, 0x1000_0000);
    for (vaddr, bytes) in k.regions() {
        if vaddr >= START_KERNEL_MAP {
            mem.place_image(vaddr, &bytes);
        } else {
            mem.place(vaddr, &bytes);
        }
    }
    mem.place_image(INIT_UTS_NS, &uts_namespace(RELEASE));

    // The intact dump: the release of the note, which init_uts_ns confirms.
    let intact = dir.join("intact.elf");
    std::fs::write(
        &intact,
        mem.to_elf(Some(&vmcoreinfo(&format!("OSRELEASE={RELEASE}")))),
    )
    .unwrap();
    let (code, v, err) = run(&intact, &kallsyms);
    assert_eq!(code, 0, "{err}");
    assert_eq!(rows(&v), reference);
    assert_eq!(v["kernel"]["release"], RELEASE);

    let mut wrong = Vec::new();
    for (name, line) in [
        (
            "one character changed",
            "OSRELEASE=6.99.0-synthetiX".to_string(),
        ),
        (
            "value all f",
            format!("OSRELEASE={}", "f".repeat(RELEASE.len())),
        ),
        ("key in lower case", format!("osrelease={RELEASE}")),
        ("first byte lost", format!("SRELEASE={RELEASE}")),
    ] {
        let f = dir.join(format!("{}.elf", name.replace(' ', "-")));
        std::fs::write(&f, mem.to_elf(Some(&vmcoreinfo(&line)))).unwrap();
        let (code, v, err) = run(&f, &kallsyms);
        if code == 0 && v["kernel"]["release"] != RELEASE {
            wrong.push(format!(
                "{name} ({line:?}): exit 0, kernel.release {}, warnings {}, stderr {err:?}",
                v["kernel"]["release"], v["warnings"]
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "exit 0 with a release init_uts_ns ({RELEASE}) contradicts:\n{}",
        wrong.join("\n")
    );
}
