//! Physical memory of a synthetic x86_64 kernel, for the snapshot and discovery tests: 4 KiB pages, 4-level
//! page tables built by hand from the Intel SDM's description (not with synq's walker), the kernel image at
//! `phys_base`, and writers for the files that hold such memory: LiME, AVML (real `snap` frame streams), raw
//! images and ELF vmcores (with or without a VMCOREINFO note). Independent of synq's readers.

use std::collections::BTreeMap;
use std::io::Write;
use std::ops::Range;

pub const PAGE: u64 = 4096;
pub const START_KERNEL_MAP: u64 = 0xffff_ffff_8000_0000;
/// Where the synthetic kernel links `_stext` (x86_64's __START_KERNEL).
pub const LINK_STEXT: u64 = 0xffff_ffff_8100_0000;
const PRESENT_RW: u64 = 0x3;

/// Physical memory under construction.
pub struct PhysImage {
    /// Page frame address → contents.
    pub pages: BTreeMap<u64, Vec<u8>>,
    /// Next frame handed out for tables and data outside the image.
    next_free: u64,
    /// Physical address of the top-level table (PML4).
    pub top: u64,
    /// The kernel image rule: `pa = va − START_KERNEL_MAP + phys_base`.
    pub phys_base: u64,
}

impl PhysImage {
    /// `phys_base`: the image's physical shift; `top_va`: the virtual address of `init_top_pgt`, in the image.
    /// Frames for tables and data come from `free_from` upwards.
    pub fn new(phys_base: u64, top_va: u64, free_from: u64) -> PhysImage {
        let top = top_va - START_KERNEL_MAP + phys_base;
        let mut m = PhysImage {
            pages: BTreeMap::new(),
            next_free: free_from,
            top,
            phys_base,
        };
        m.page_mut(top);
        m
    }

    fn page_mut(&mut self, frame: u64) -> &mut Vec<u8> {
        self.pages
            .entry(frame)
            .or_insert_with(|| vec![0u8; PAGE as usize])
    }

    fn alloc(&mut self) -> u64 {
        let f = self.next_free;
        self.next_free += PAGE;
        self.page_mut(f);
        f
    }

    /// Writes `bytes` at physical `paddr` (pages created as needed).
    pub fn write_phys(&mut self, paddr: u64, bytes: &[u8]) {
        for (i, b) in bytes.iter().enumerate() {
            let p = paddr + i as u64;
            let frame = p & !(PAGE - 1);
            self.page_mut(frame)[(p - frame) as usize] = *b;
        }
    }

    fn read_u64(&self, paddr: u64) -> u64 {
        let frame = paddr & !(PAGE - 1);
        let o = (paddr - frame) as usize;
        self.pages
            .get(&frame)
            .map_or(0, |p| u64::from_le_bytes(p[o..o + 8].try_into().unwrap()))
    }

    /// Maps the 4 KiB virtual page of `vaddr` to the frame `paddr`, building the tables on the way.
    pub fn map(&mut self, vaddr: u64, paddr: u64) {
        let mut table = self.top;
        for shift in [39u32, 30, 21] {
            let slot = table + ((vaddr >> shift) & 511) * 8;
            let entry = self.read_u64(slot);
            table = if entry & 1 != 0 {
                entry & 0x000f_ffff_ffff_f000
            } else {
                let t = self.alloc();
                self.write_phys(slot, &(t | PRESENT_RW).to_le_bytes());
                t
            };
        }
        let slot = table + ((vaddr >> 12) & 511) * 8;
        self.write_phys(slot, &((paddr & !(PAGE - 1)) | PRESENT_RW).to_le_bytes());
    }

    /// Places `bytes` at kernel image address `vaddr`: at the image rule's physical address, and mapped by
    /// the page tables too, as the kernel maps its own image.
    pub fn place_image(&mut self, vaddr: u64, bytes: &[u8]) {
        let paddr = vaddr - START_KERNEL_MAP + self.phys_base;
        self.write_phys(paddr, bytes);
        let mut v = vaddr & !(PAGE - 1);
        while v < vaddr + bytes.len().max(1) as u64 {
            self.map(v, v - START_KERNEL_MAP + self.phys_base);
            v += PAGE;
        }
    }

    /// Places `bytes` at virtual `vaddr` outside the image: fresh frames, mapped by the page tables.
    pub fn place(&mut self, vaddr: u64, bytes: &[u8]) {
        let mut v = vaddr & !(PAGE - 1);
        let end = vaddr + bytes.len().max(1) as u64;
        while v < end {
            let f = self.alloc();
            self.map(v, f);
            let lo = v.max(vaddr);
            let hi = (v + PAGE).min(end);
            let part = &bytes[(lo - vaddr) as usize..(hi - vaddr) as usize];
            self.write_phys(f + (lo - v), part);
            v += PAGE;
        }
    }

    /// Physical ranges present, merged.
    pub fn ranges(&self) -> Vec<Range<u64>> {
        let mut out: Vec<Range<u64>> = Vec::new();
        for &f in self.pages.keys() {
            match out.last_mut() {
                Some(r) if r.end == f => r.end = f + PAGE,
                _ => out.push(f..f + PAGE),
            }
        }
        out
    }

    /// The bytes of `r` (absent pages as zeros).
    pub fn bytes(&self, r: &Range<u64>) -> Vec<u8> {
        let mut out = vec![0u8; (r.end - r.start) as usize];
        for (&f, p) in self.pages.range(r.start & !(PAGE - 1)..r.end) {
            for (i, b) in p.iter().enumerate() {
                let a = f + i as u64;
                if r.contains(&a) {
                    out[(a - r.start) as usize] = *b;
                }
            }
        }
        out
    }

    /// A LiME file: one record per present range ({magic "EMiL", version 1, start, end inclusive, 0}).
    pub fn to_lime(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for r in self.ranges() {
            out.extend_from_slice(&lime_header(0x4C69_4D45, 1, r.start, r.end - 1));
            out.extend_from_slice(&self.bytes(&r));
        }
        out
    }

    /// An AVML compressed file: per range, the header (magic "AVML", version 2), one Snappy frame stream of
    /// the range's bytes (snap's FrameEncoder, as AVML writes it), and the stream's length as a u64.
    pub fn to_avml(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for r in self.ranges() {
            out.extend_from_slice(&lime_header(0x4C4D_5641, 2, r.start, r.end - 1));
            let mut enc = snap::write::FrameEncoder::new(Vec::new());
            enc.write_all(&self.bytes(&r)).unwrap();
            let stream = enc.into_inner().unwrap();
            out.extend_from_slice(&stream);
            out.extend_from_slice(&(stream.len() as u64).to_le_bytes());
        }
        out
    }

    /// A raw image: byte N is physical address N, from 0 to the end of the last page.
    pub fn to_raw(&self) -> Vec<u8> {
        let end = self.pages.keys().next_back().map_or(0, |f| f + PAGE);
        self.bytes(&(0..end))
    }

    /// An ELF vmcore (ET_CORE, EM_X86_64): a PT_LOAD per present range at its physical address (vaddr 0,
    /// as QEMU writes), and a PT_NOTE holding the VMCOREINFO note when one is given.
    pub fn to_elf(&self, vmcoreinfo: Option<&str>) -> Vec<u8> {
        let ranges = self.ranges();
        let note = vmcoreinfo.map(vmcoreinfo_note).unwrap_or_default();
        let phnum = ranges.len() + usize::from(!note.is_empty());
        let mut out = Vec::new();
        out.extend_from_slice(&[0x7f, b'E', b'L', b'F', 2, 1, 1, 0]);
        out.extend_from_slice(&[0u8; 8]);
        out.extend_from_slice(&4u16.to_le_bytes());
        out.extend_from_slice(&62u16.to_le_bytes());
        out.extend_from_slice(&1u32.to_le_bytes());
        out.extend_from_slice(&0u64.to_le_bytes());
        out.extend_from_slice(&64u64.to_le_bytes());
        out.extend_from_slice(&0u64.to_le_bytes());
        out.extend_from_slice(&0u32.to_le_bytes());
        out.extend_from_slice(&64u16.to_le_bytes());
        out.extend_from_slice(&56u16.to_le_bytes());
        out.extend_from_slice(&(phnum as u16).to_le_bytes());
        out.extend_from_slice(&[0u8; 6]);
        let mut off = 64 + 56 * phnum as u64;
        let phdr = |out: &mut Vec<u8>, t: u32, off: u64, paddr: u64, size: u64| {
            out.extend_from_slice(&t.to_le_bytes());
            out.extend_from_slice(&7u32.to_le_bytes());
            out.extend_from_slice(&off.to_le_bytes());
            out.extend_from_slice(&0u64.to_le_bytes());
            out.extend_from_slice(&paddr.to_le_bytes());
            out.extend_from_slice(&size.to_le_bytes());
            out.extend_from_slice(&size.to_le_bytes());
            out.extend_from_slice(&0u64.to_le_bytes());
        };
        if !note.is_empty() {
            phdr(&mut out, 4, off, 0, note.len() as u64);
            off += note.len() as u64;
        }
        for r in &ranges {
            phdr(&mut out, 1, off, r.start, r.end - r.start);
            off += r.end - r.start;
        }
        out.extend_from_slice(&note);
        for r in &ranges {
            out.extend_from_slice(&self.bytes(r));
        }
        out
    }
}

fn lime_header(magic: u32, version: u32, start: u64, end: u64) -> Vec<u8> {
    let mut h = Vec::with_capacity(32);
    h.extend_from_slice(&magic.to_le_bytes());
    h.extend_from_slice(&version.to_le_bytes());
    h.extend_from_slice(&start.to_le_bytes());
    h.extend_from_slice(&end.to_le_bytes());
    h.extend_from_slice(&[0u8; 8]);
    h
}

/// An ELF note named "VMCOREINFO" (type 0) holding `text`, as the kernel builds `vmcoreinfo_note`.
pub fn vmcoreinfo_note(text: &str) -> Vec<u8> {
    let name = b"VMCOREINFO\0";
    let mut n = Vec::new();
    n.extend_from_slice(&(name.len() as u32).to_le_bytes());
    n.extend_from_slice(&(text.len() as u32).to_le_bytes());
    n.extend_from_slice(&0u32.to_le_bytes());
    n.extend_from_slice(name);
    while n.len() % 4 != 0 {
        n.push(0);
    }
    n.extend_from_slice(text.as_bytes());
    while n.len() % 4 != 0 {
        n.push(0);
    }
    n
}

/// A `struct uts_namespace` of a 6.x kernel: `new_utsname` first (six 65-byte strings).
pub fn uts_namespace(release: &str) -> Vec<u8> {
    let mut u = vec![0u8; 6 * 65 + 64];
    u[..5].copy_from_slice(b"Linux");
    u[65..65 + 7].copy_from_slice(b"synthet");
    u[130..130 + release.len()].copy_from_slice(release.as_bytes());
    u
}
