//! `synq doctor` end to end, on files whose answers are known: a synthetic kernel's kcore image (the live
//! path, through --kcore), a LiME snapshot of the same kernel (--core), a missing kcore, a file that is no
//! dump, and a kcore the caller may not read. The host's own checks (root, lockdown, kptr_restrict, the
//! running kernel's BTF and kallsyms) vary from host to host; what is asserted of them is what holds on any
//! host: none of them can fail once the kcore opened and the symbols and the layout resolved.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::physwriter::{PhysImage, START_KERNEL_MAP, uts_namespace, vmcoreinfo_note};
use common::*;

const BTF: &str = "cilium-ebpf-7.1-x86_64.btf.xz";
const RELEASE: &str = "6.99.0-synthetic";
const INIT_TOP_PGT: u64 = 0xffff_ffff_82a0_a000;
const INIT_UTS_NS: u64 = 0xffff_ffff_82c0_0000;
const OWN_NOTE: u64 = 0x3000_0000;
const PHYS_BASE: u64 = 0x0100_0000;

fn doctor(args: &[&dyn AsRef<std::ffi::OsStr>]) -> (i32, String, String) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_synq"));
    c.arg("doctor");
    for a in args {
        c.arg(a);
    }
    let out = c.output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The check named `name` of a JSON report.
fn check<'a>(v: &'a serde_json::Value, name: &str) -> &'a serde_json::Value {
    v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["check"] == name)
        .unwrap_or_else(|| panic!("no check {name:?} in {v}"))
}

/// Every check has the four fields, a known status, and `works` is true exactly when none failed.
fn assert_shape(v: &serde_json::Value) {
    let checks = v["checks"].as_array().unwrap();
    assert!(!checks.is_empty());
    for c in checks {
        assert!(c["check"].is_string(), "{c}");
        assert!(c["found"].is_string(), "{c}");
        assert!(c["fix"].is_string() || c["fix"].is_null(), "{c}");
        assert!(
            ["ok", "warn", "fail"].contains(&c["status"].as_str().unwrap()),
            "{c}"
        );
    }
    let failed = checks.iter().any(|c| c["status"] == "fail");
    assert_eq!(v["works"], !failed, "{v}");
    assert!(v["verdict"].is_string());
}

/// A synthetic kernel with one listener: its kcore image and kallsyms.
fn kernel(dir: &Path) -> (Kernel, PathBuf, PathBuf) {
    let mut k = Kernel::new(BTF, 8);
    k.add(1, Sock::listen("192.0.2.1", 80, 6, 2));
    let (core, ks) = write_kernel(dir, &k);
    (k, core, ks)
}

/// A kcore that opens, with symbols and BTF given: synq works, whatever the host; the kcore, its
/// VMCOREINFO and the walk are checked through the library.
#[test]
fn a_readable_kcore_with_its_side_files_works() {
    let dir = scratch("doctor-live");
    let (_, core, ks) = kernel(&dir);
    let btf = fixture(BTF);
    let (code, out, err) = doctor(&[
        &"--json",
        &"--kcore",
        &core,
        &"--kallsyms",
        &ks,
        &"--btf",
        &btf,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_shape(&v);
    assert_eq!(v["works"], true, "{v}");
    assert_eq!(check(&v, "kcore")["status"], "ok");
    assert_eq!(
        check(&v, "kcore")["found"],
        format!("{} present and opens", core.display())
    );
    assert_eq!(
        check(&v, "VMCOREINFO in kcore")["found"],
        format!("present (OSRELEASE {RELEASE})")
    );
    // The given kallsyms answers; the synthetic VMCOREINFO does not locate in-memory tables.
    let im = check(&v, "in-memory kallsyms");
    assert_eq!(im["status"], "ok", "{im}");
    let found = im["found"].as_str().unwrap();
    assert!(
        found.starts_with(&format!("not used: --kallsyms {} given", ks.display())),
        "{found}"
    );
    assert!(found.contains("VMCOREINFO has no SYMBOL("), "{found}");
    // The --btf file is used; it may differ from the host's own BTF (a warning), never fail.
    let b = check(&v, "BTF");
    assert_ne!(b["status"], "fail", "{b}");
    assert!(
        b["found"]
            .as_str()
            .unwrap()
            .starts_with(&format!("--btf {} used", btf.display())),
        "{b}"
    );
    assert_eq!(
        check(&v, "listening hash walk")["found"],
        "1 listeners read"
    );
    assert_eq!(
        v["verdict"],
        format!(
            "synq will work here (symbols from {}, BTF from {})",
            ks.display(),
            btf.display()
        )
    );

    // The text: one line per check, "STATUS  NAME: FOUND[ — FIX]", then the verdict.
    let (code, text, _) = doctor(&[&"--kcore", &core, &"--kallsyms", &ks, &"--btf", &btf]);
    assert_eq!(code, 0);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.len(),
        v["checks"].as_array().unwrap().len() + 1,
        "{text}"
    );
    for (line, c) in lines.iter().zip(v["checks"].as_array().unwrap()) {
        let mut want = format!(
            "{:<4}  {}: {}",
            c["status"].as_str().unwrap(),
            c["check"].as_str().unwrap(),
            c["found"].as_str().unwrap()
        );
        if let Some(fix) = c["fix"].as_str() {
            want.push_str(&format!(" — {fix}"));
        }
        assert_eq!(*line, want);
    }
    assert_eq!(lines.last().unwrap(), &v["verdict"].as_str().unwrap());
}

/// A kcore that is not there: the kcore check fails, the verdict says so, exit 1.
#[test]
fn a_missing_kcore_fails() {
    let (code, out, _) = doctor(&[&"--json", &"--kcore", &"/nonexistent/kcore"]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_shape(&v);
    assert_eq!(v["works"], false);
    let k = check(&v, "kcore");
    assert_eq!(k["status"], "fail");
    assert_eq!(k["found"], "/nonexistent/kcore: no such file");
    assert_eq!(
        check(&v, "VMCOREINFO in kcore")["found"],
        "not checked: the kcore did not open"
    );
    assert!(
        v["verdict"]
            .as_str()
            .unwrap()
            .starts_with("synq will not work here: ")
    );
}

/// A kcore the caller may not read (0400 root, read as nobody): the first failure is the root check, with
/// "run as root"; the kcore check says "not root".
#[test]
fn an_unreadable_kcore_as_non_root_says_run_as_root() {
    let dir = scratch("doctor-notroot");
    let core = dir.join("kcore");
    std::fs::write(&core, b"\x7fELF").unwrap();
    std::fs::set_permissions(&core, std::fs::Permissions::from_mode(0o000)).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let mut c = Command::new(env!("CARGO_BIN_EXE_synq"));
    c.arg("doctor").arg("--json").arg("--kcore").arg(&core);
    if unsafe { libc::geteuid() } == 0 {
        c.uid(65534).gid(65534);
    }
    let out = c.output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_shape(&v);
    let root = check(&v, "root and capabilities");
    assert_eq!(root["status"], "fail");
    assert_eq!(root["fix"], "run as root (sudo synq, or as root)");
    let k = check(&v, "kcore");
    assert!(
        k["found"]
            .as_str()
            .unwrap()
            .contains("permission denied — not root (euid "),
        "{k}"
    );
    let verdict = v["verdict"].as_str().unwrap();
    assert!(
        verdict.starts_with("synq will not work here: root and capabilities: not root"),
        "{verdict}"
    );
    assert!(
        verdict.ends_with("— run as root (sudo synq, or as root)"),
        "{verdict}"
    );
}

/// A LiME snapshot of the synthetic kernel: the format, the VMCOREINFO found by scanning, the release from
/// init_uts_ns, the symbols, the BTF, the layout and the walk, each its own line; no host check.
#[test]
fn a_snapshot_is_checked_instead_of_the_host() {
    let dir = scratch("doctor-core");
    let (k, _, ks) = kernel(&dir);
    let mut mem = PhysImage::new(PHYS_BASE, INIT_TOP_PGT, 0x1000_0000);
    for (vaddr, bytes) in k.regions() {
        if vaddr >= START_KERNEL_MAP {
            mem.place_image(vaddr, &bytes);
        } else {
            mem.place(vaddr, &bytes);
        }
    }
    mem.place_image(INIT_UTS_NS, &uts_namespace(RELEASE));
    let info = format!(
        "OSRELEASE={RELEASE}\nPAGESIZE=4096\nSYMBOL(init_uts_ns)={INIT_UTS_NS:x}\n\
         SYMBOL(init_top_pgt)={INIT_TOP_PGT:x}\nNUMBER(phys_base)={PHYS_BASE}\nKERNELOFFSET=0\n\
         NUMBER(pgtable_l5_enabled)=0\n"
    );
    mem.write_phys(OWN_NOTE, &vmcoreinfo_note(&info));
    let lime = dir.join("mem.lime");
    std::fs::write(&lime, mem.to_lime()).unwrap();
    let btf = fixture(BTF);
    let (code, out, err) = doctor(&[
        &"--json",
        &"--core",
        &lime,
        &"--kallsyms",
        &ks,
        &"--btf",
        &btf,
    ]);
    assert_eq!(code, 0, "{out}{err}");
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_shape(&v);
    let names: Vec<&str> = v["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["check"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "dump file",
            "VMCOREINFO",
            "release",
            "symbols",
            "BTF",
            "layout",
            "listening hash walk"
        ]
    );
    for c in v["checks"].as_array().unwrap() {
        assert_eq!(c["status"], "ok", "{c}");
    }
    assert_eq!(
        check(&v, "dump file")["found"],
        format!("{}: lime", lime.display())
    );
    assert_eq!(
        check(&v, "VMCOREINFO")["found"],
        format!("found by scanning physical memory, at {OWN_NOTE:#x} (of 1 candidates)")
    );
    assert_eq!(check(&v, "release")["found"], RELEASE);
    assert_eq!(
        check(&v, "listening hash walk")["found"],
        "1 listeners read"
    );
}

/// A file that is no dump: the first check fails with the reader's message, the rest are not checked.
#[test]
fn a_file_that_is_no_dump_fails_on_the_first_check() {
    let dir = scratch("doctor-garbage");
    let f = dir.join("notes.txt");
    std::fs::write(&f, vec![b'x'; 8192]).unwrap();
    let (code, out, _) = doctor(&[&"--json", &"--core", &f]);
    assert_eq!(code, 1);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_shape(&v);
    let d = check(&v, "dump file");
    assert_eq!(d["status"], "fail");
    assert!(d["found"].as_str().unwrap().contains("notes.txt"), "{d}");
    assert_eq!(check(&v, "symbols")["status"], "warn");
    assert!(
        v["verdict"]
            .as_str()
            .unwrap()
            .starts_with("synq will not work here: dump file: ")
    );
}
