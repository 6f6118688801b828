//! Test support: build small /proc/kcore-shaped ELF images whose sockets are laid out with a real kernel's
//! BTF layout, and run synq on them.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    dead_code
)]

pub mod dumpwriter;
pub mod physwriter;

use std::cell::Cell;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use synq::btf::{Field, LISTENING_NULLS_BASE, Layout, Queue, Table};
use synq::memory::{Memory, ReadError};

pub fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

pub fn layout_of(btf: &str) -> Layout {
    let loaded = synq::btf::load_file(&fixture(btf)).unwrap();
    synq::btf::resolve(&loaded.btf).unwrap()
}

/// A fresh scratch directory per test, removed when the test is done with it (some hold dumps of
/// hundreds of MiB: left behind, every run of the suite would cost a gigabyte of /tmp).
pub fn scratch(name: &str) -> Scratch {
    let dir = std::env::temp_dir().join(format!("synq-test-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    Scratch(dir)
}

/// A scratch directory; removed on drop.
pub struct Scratch(PathBuf);

impl std::ops::Deref for Scratch {
    type Target = PathBuf;
    fn deref(&self) -> &PathBuf {
        &self.0
    }
}

impl AsRef<std::path::Path> for Scratch {
    fn as_ref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes `value` into the bit range of `f` (little-endian), as the kernel would have stored it.
pub fn put(buf: &mut [u8], f: Field, value: u64) {
    for bit in 0..u64::from(f.bits) {
        let pos = f.bit_offset + bit;
        let byte = &mut buf[(pos / 8) as usize];
        let mask = 1u8 << (pos % 8);
        if (value >> bit) & 1 == 1 {
            *byte |= mask;
        } else {
            *byte &= !mask;
        }
    }
}

pub fn put_ptr(buf: &mut [u8], off: u64, ptr: u64, size: u64) {
    put(buf, Field::bytes(off, size), ptr);
}

/// The nulls value that ends bucket `i` of a listening table.
pub fn nulls(i: u64) -> u64 {
    ((i + LISTENING_NULLS_BASE) << 1) | 1
}

/// Addresses used by the synthetic kernels.
pub const HASHINFO: u64 = 0xffff_ffff_8260_0000;
pub const BUCKETS: u64 = 0xffff_8880_0010_0000;
pub const SOCKS: u64 = 0xffff_8880_0100_0000;
pub const NETS: u64 = 0xffff_8880_0200_0000;
pub const LISTEN_SOCKS: u64 = 0xffff_8880_0300_0000;
pub const UNMAPPED: u64 = 0xffff_8880_7fff_0000;
pub const INIT_NET_INUM: u64 = 4026531840;

/// What a synthetic socket holds.
#[derive(Clone, Debug)]
pub struct Sock {
    pub addr: IpAddr,
    pub port: u16,
    pub state: u64,
    pub syn: u64,
    pub young: u64,
    pub accept: u64,
    pub max: u64,
    /// Index into the image's namespaces.
    pub netns: usize,
    /// For listen_opt eras: whether listen_opt is NULL.
    pub no_listen_opt: bool,
    /// tcp_sock.is_mptcp and sk_kern_sock.
    pub mptcp: bool,
    pub kern: bool,
}

impl Sock {
    pub fn listen(addr: &str, port: u16, syn: u64, accept: u64) -> Sock {
        Sock {
            addr: addr.parse().unwrap(),
            port,
            state: 10,
            syn,
            young: syn / 2,
            accept,
            max: 128,
            netns: 0,
            no_listen_opt: false,
            mptcp: false,
            kern: false,
        }
    }
}

/// A kernel image under construction: a listening table, sockets in chains, namespaces.
pub struct Kernel {
    pub layout: Layout,
    pub nbuckets: u64,
    pub socks: Vec<Sock>,
    /// Chains per bucket, as indexes into `socks`.
    pub chains: Vec<Vec<usize>>,
    /// Overrides of a socket's `next` pointer (index → raw value).
    pub next_override: Vec<(usize, u64)>,
    /// Overrides of a bucket's head (bucket → raw value).
    pub head_override: Vec<(u64, u64)>,
    pub netns_inums: Vec<u64>,
    pub stride: u64,
    /// Where things live: 64-bit kernel addresses, or 32-bit ones for 4-byte pointers.
    pub hashinfo: u64,
    pub bucket_base: u64,
    pub sock_base: u64,
    pub net_base: u64,
    pub ls_base: u64,
    pub unmapped: u64,
    /// Keep only this many buckets of an lhash2 bucket array mapped.
    pub mapped_buckets: Option<u64>,
}

impl Kernel {
    pub fn new(btf: &str, nbuckets: u64) -> Kernel {
        let layout = layout_of(btf);
        let nbuckets = match layout.table {
            Table::ListeningHash { buckets, .. } => buckets,
            Table::Lhash2 { .. } => nbuckets,
        };
        let span = layout.sock_span.max(layout.is_mptcp.map_or(0, |f| f.end()));
        let stride = span.div_ceil(64) * 64;
        // 32-bit kernels: keep every address below 4 GiB (0xc... like i386's PAGE_OFFSET).
        let mask = if layout.pointer_size == 4 {
            0xcfff_ffff
        } else {
            u64::MAX
        };
        Kernel {
            layout,
            nbuckets,
            socks: Vec::new(),
            chains: vec![Vec::new(); nbuckets as usize],
            next_override: Vec::new(),
            head_override: Vec::new(),
            netns_inums: vec![INIT_NET_INUM, 4026532281],
            stride,
            hashinfo: HASHINFO & mask,
            bucket_base: BUCKETS & mask,
            sock_base: SOCKS & mask,
            net_base: NETS & mask,
            ls_base: LISTEN_SOCKS & mask,
            unmapped: UNMAPPED & mask,
            mapped_buckets: None,
        }
    }

    /// Adds a socket at the end of bucket `b`'s chain; returns its index.
    pub fn add(&mut self, b: u64, s: Sock) -> usize {
        self.socks.push(s);
        let i = self.socks.len() - 1;
        self.chains[b as usize].push(i);
        i
    }

    pub fn sock_addr(&self, i: usize) -> u64 {
        self.sock_base + i as u64 * self.stride
    }

    fn node_of(&self, i: usize) -> u64 {
        self.sock_addr(i) + self.layout.link_offset
    }

    fn end_of(&self, b: u64) -> u64 {
        if self.layout.nulls { nulls(b) } else { 0 }
    }

    /// The memory regions (vaddr, bytes) of this kernel.
    pub fn regions(&self) -> Vec<(u64, Vec<u8>)> {
        let l = &self.layout;
        let p = l.pointer_size;
        let mut hashinfo = vec![0u8; l.hashinfo_size as usize];
        let mut buckets = vec![0u8; (self.nbuckets * l.bucket_size) as usize];
        let table_base = match l.table {
            Table::ListeningHash { offset, .. } => self.hashinfo + offset,
            Table::Lhash2 { ptr_offset, mask } => {
                put_ptr(&mut hashinfo, ptr_offset, self.bucket_base, p);
                put(&mut hashinfo, mask, self.nbuckets - 1);
                self.bucket_base
            }
        };
        let mut socks = vec![0u8; (self.socks.len().max(1) as u64 * self.stride) as usize];
        let mut listen_socks = vec![0u8; self.socks.len().max(1) * 64];
        for (b, chain) in self.chains.iter().enumerate() {
            let b = b as u64;
            let head = self
                .head_override
                .iter()
                .find(|(hb, _)| *hb == b)
                .map(|(_, v)| *v)
                .unwrap_or_else(|| {
                    chain
                        .first()
                        .map(|&i| self.node_of(i))
                        .unwrap_or(self.end_of(b))
                });
            let bucket_addr = table_base + b * l.bucket_size;
            let head_off = bucket_addr + l.bucket_head_offset;
            match l.table {
                Table::ListeningHash { .. } => {
                    put_ptr(&mut hashinfo, head_off - self.hashinfo, head, p)
                }
                Table::Lhash2 { .. } => put_ptr(&mut buckets, head_off - self.bucket_base, head, p),
            }
            for (pos, &i) in chain.iter().enumerate() {
                let next = chain
                    .get(pos + 1)
                    .map(|&n| self.node_of(n))
                    .unwrap_or(self.end_of(b));
                let next = self
                    .next_override
                    .iter()
                    .find(|(oi, _)| *oi == i)
                    .map(|(_, v)| *v)
                    .unwrap_or(next);
                let off = (i as u64 * self.stride) as usize;
                let buf = &mut socks[off..off + self.stride as usize];
                put_ptr(buf, l.link_offset + l.next_offset, next, p);
            }
        }
        for (i, s) in self.socks.iter().enumerate() {
            let off = (i as u64 * self.stride) as usize;
            let buf = &mut socks[off..off + self.stride as usize];
            put(buf, l.state, s.state);
            match s.addr {
                IpAddr::V4(a) => {
                    put(buf, l.family, 2);
                    put(buf, l.rcv_saddr, u64::from(u32::from_le_bytes(a.octets())));
                }
                IpAddr::V6(a) => {
                    put(buf, l.family, 10);
                    let f = l.v6_rcv_saddr.unwrap();
                    let o = f.offset() as usize;
                    buf[o..o + 16].copy_from_slice(&a.octets());
                }
            }
            put(buf, l.num, u64::from(s.port));
            if let Some(pr) = l.protocol {
                put(buf, pr, 6);
            }
            if let Some(f) = l.is_mptcp {
                put(buf, f, u64::from(s.mptcp));
            }
            if let (Some(f), true) = (l.ulp_ops, s.mptcp) {
                put(buf, f, 0xffff_ffff_8300_0000); // &subflow_ulp_ops
            }
            if let Some(f) = l.kern_sock {
                put(buf, f, u64::from(s.kern));
            }
            put(buf, l.ack_backlog, s.accept);
            put(buf, l.max_ack_backlog, s.max);
            if let Some(np) = l.net_ptr {
                put(buf, np, self.net_base + s.netns as u64 * 0x1000);
            }
            match l.queue {
                Queue::Atomic { qlen, young } => {
                    put(buf, qlen, s.syn);
                    put(buf, young, s.young);
                }
                Queue::ListenSock {
                    listen_opt,
                    qlen,
                    young,
                } => {
                    if !s.no_listen_opt {
                        let ls = self.ls_base + i as u64 * 64;
                        put(buf, listen_opt, ls);
                        let lb = &mut listen_socks[i * 64..i * 64 + 64];
                        put(lb, qlen, s.syn);
                        put(lb, young, s.young);
                    }
                }
                Queue::ListenSockInc { .. } => unimplemented!("no 4.1–4.3 BTF in the corpus"),
            }
        }
        let mut nets = vec![0u8; self.netns_inums.len() * 0x1000];
        if let Some(f) = l.net_inum {
            for (n, inum) in self.netns_inums.iter().enumerate() {
                put(&mut nets[n * 0x1000..(n + 1) * 0x1000], f, *inum);
            }
        }
        let mut regions = vec![
            (self.hashinfo, hashinfo),
            (self.sock_base, socks),
            (self.net_base, nets),
            (self.ls_base, listen_socks),
        ];
        if matches!(l.table, Table::Lhash2 { .. }) {
            let mut buckets = buckets;
            if let Some(n) = self.mapped_buckets {
                buckets.truncate((n * l.bucket_size) as usize);
            }
            regions.push((self.bucket_base, buckets));
        }
        regions
    }
}

/// Writes an ELF64 ET_CORE file shaped like /proc/kcore: one PT_NOTE (VMCOREINFO) and one PT_LOAD per region.
pub fn write_core(path: &Path, regions: &[(u64, Vec<u8>)], vmcoreinfo: &str) {
    let phnum = regions.len() + 1;
    let mut note = Vec::new();
    let name = b"VMCOREINFO\0";
    note.extend_from_slice(&(name.len() as u32).to_le_bytes());
    note.extend_from_slice(&(vmcoreinfo.len() as u32).to_le_bytes());
    note.extend_from_slice(&0u32.to_le_bytes());
    note.extend_from_slice(name);
    while note.len() % 4 != 0 {
        note.push(0);
    }
    note.extend_from_slice(vmcoreinfo.as_bytes());
    while note.len() % 4 != 0 {
        note.push(0);
    }
    let mut out = Vec::new();
    // ELF header
    out.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);
    out.extend_from_slice(&[0u8; 8]);
    out.extend_from_slice(&4u16.to_le_bytes()); // ET_CORE
    out.extend_from_slice(&62u16.to_le_bytes()); // EM_X86_64
    out.extend_from_slice(&1u32.to_le_bytes());
    out.extend_from_slice(&0u64.to_le_bytes()); // entry
    out.extend_from_slice(&64u64.to_le_bytes()); // phoff
    out.extend_from_slice(&0u64.to_le_bytes()); // shoff
    out.extend_from_slice(&0u32.to_le_bytes()); // flags
    out.extend_from_slice(&64u16.to_le_bytes()); // ehsize
    out.extend_from_slice(&56u16.to_le_bytes()); // phentsize
    out.extend_from_slice(&(phnum as u16).to_le_bytes());
    out.extend_from_slice(&[0u8; 6]); // shentsize, shnum, shstrndx
    let data_start = 64 + 56 * phnum as u64;
    let mut offset = data_start;
    let phdr = |out: &mut Vec<u8>, ptype: u32, off: u64, vaddr: u64, size: u64| {
        out.extend_from_slice(&ptype.to_le_bytes());
        out.extend_from_slice(&7u32.to_le_bytes());
        out.extend_from_slice(&off.to_le_bytes());
        out.extend_from_slice(&vaddr.to_le_bytes());
        out.extend_from_slice(&u64::MAX.to_le_bytes()); // paddr unknown, as for vmalloc in kcore
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&size.to_le_bytes());
        out.extend_from_slice(&4096u64.to_le_bytes());
    };
    phdr(&mut out, 4, offset, 0, note.len() as u64);
    offset += note.len() as u64;
    for (vaddr, bytes) in regions {
        phdr(&mut out, 1, offset, *vaddr, bytes.len() as u64);
        offset += bytes.len() as u64;
    }
    out.extend_from_slice(&note);
    for (_, bytes) in regions {
        out.extend_from_slice(bytes);
    }
    std::fs::write(path, out).unwrap();
}

/// Writes the image and a kallsyms file for `k` into `dir`; returns (core, kallsyms).
pub fn write_kernel(dir: &Path, k: &Kernel) -> (PathBuf, PathBuf) {
    let core = dir.join("kcore");
    write_core(
        &core,
        &k.regions(),
        "OSRELEASE=6.99.0-synthetic\nPAGESIZE=4096\n",
    );
    let ks = dir.join("kallsyms");
    std::fs::write(
        &ks,
        format!(
            "ffffffff81000000 T _stext\n{:016x} D tcp_hashinfo\nffffffffc0000000 t x\t[mod]\n",
            k.hashinfo
        ),
    )
    .unwrap();
    (core, ks)
}

pub fn synq(args: &[&str], extra: &[&Path]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_synq"));
    c.args(args);
    for p in extra {
        c.arg(p);
    }
    c.output().unwrap()
}

/// Runs `synq --json` on a synthetic kernel with its BTF; returns (exit code, JSON, stderr).
pub fn run_json(dir: &Path, k: &Kernel, btf: &str) -> (i32, serde_json::Value, String) {
    let (core, ks) = write_kernel(dir, k);
    let out = Command::new(env!("CARGO_BIN_EXE_synq"))
        .arg("--json")
        .arg("--kcore")
        .arg(&core)
        .arg("--kallsyms")
        .arg(&ks)
        .arg("--btf")
        .arg(fixture(btf))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    let json = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (out.status.code().unwrap_or(-1), json, stderr)
}

/// The listeners of a JSON report as comparable tuples (netns, family, addr, port, syn, young, accept, max).
/// (netns, family, addr, port, syn_queue, syn_young, accept_queue, max_backlog)
pub type Row = (u64, String, String, u64, u64, u64, u64, u64);

pub fn rows(v: &serde_json::Value) -> Vec<Row> {
    v["listeners"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["netns"].as_u64().unwrap(),
                l["family"].as_str().unwrap().to_string(),
                l["addr"].as_str().unwrap().to_string(),
                l["port"].as_u64().unwrap(),
                l["syn_queue"].as_u64().unwrap(),
                l["syn_young"].as_u64().unwrap(),
                l["accept_queue"].as_u64().unwrap(),
                l["max_backlog"].as_u64().unwrap(),
            )
        })
        .collect()
}

pub fn warnings(v: &serde_json::Value) -> Vec<String> {
    v["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w.as_str().unwrap().to_string())
        .collect()
}

/// In-memory kernel memory for library-level tests, which can rewrite itself after a number of reads: a
/// stand-in for live memory changing under the reader.
pub struct LiveMem {
    pub regions: std::cell::RefCell<Vec<(u64, Vec<u8>)>>,
    pub reads: Cell<usize>,
    pub patch_after: usize,
    pub patch: std::cell::RefCell<Option<(u64, Vec<u8>)>>,
}

impl LiveMem {
    pub fn new(regions: Vec<(u64, Vec<u8>)>) -> LiveMem {
        LiveMem {
            regions: std::cell::RefCell::new(regions),
            reads: Cell::new(0),
            patch_after: usize::MAX,
            patch: std::cell::RefCell::new(None),
        }
    }
}

impl Memory for LiveMem {
    fn read(&self, addr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        let n = self.reads.get() + 1;
        self.reads.set(n);
        if n > self.patch_after
            && let Some((pa, bytes)) = self.patch.borrow_mut().take()
        {
            for (base, data) in self.regions.borrow_mut().iter_mut() {
                if pa >= *base && pa + bytes.len() as u64 <= *base + data.len() as u64 {
                    let o = (pa - *base) as usize;
                    data[o..o + bytes.len()].copy_from_slice(&bytes);
                }
            }
        }
        let Some(end) = addr.checked_add(buf.len() as u64) else {
            return Err(ReadError::NotMapped { addr });
        };
        for (base, data) in self.regions.borrow().iter() {
            if addr >= *base && end <= *base + data.len() as u64 {
                let o = (addr - *base) as usize;
                buf.copy_from_slice(&data[o..o + buf.len()]);
                return Ok(());
            }
        }
        Err(ReadError::NotMapped { addr })
    }
}
