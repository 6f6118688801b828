//! Test tool: re-encodes every page of a real kdump-compressed dump with another compression, keeping its
//! real header, sub-header, VMCOREINFO, notes and bitmaps byte for byte; optionally writes the result in
//! makedumpfile's flattened form.
//!
//! ```text
//! cargo run --release --example kdump_transcode -- IN OUT --to lzo|snappy|zstd|zlib|raw|keep [--flatten]
//! ```
//!
//! IN is a kdump-compressed file, plain or flattened (QEMU's `dump-guest-memory` kdump-zlib output is
//! flattened). No producer of lzo, snappy or zstd kdump files exists on the test host (QEMU 7.2 writes only
//! zlib, Debian's makedumpfile has only lzo and cannot read QEMU's ELF dumps), so `tests/realkernel/dump.sh`
//! makes them from QEMU's real dump with this tool.
//!
//! What changes: the header's status compression bits (set to the one of `--to`, none for raw), and the page
//! descriptors' offset, size and flags (page_flags are kept). Page data follows the descriptor table, in
//! descriptor order, as makedumpfile and QEMU write it; descriptors that shared one data block in IN (QEMU's
//! single zero page) share one in OUT. A page that does not shrink is stored raw (size = block size, flags
//! 0), as makedumpfile does. Every re-encoded page is decoded again and compared with the original.
//! `--to keep` re-encodes nothing: OUT is IN de-flattened, byte for byte what `makedumpfile -R` rebuilds.
//!
//! The kdump layout is written here, independently of synq's reader (`src/source/kdump.rs`), following
//! makedumpfile's `diskdump_mod.h`.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::process::exit;

const FLAT_SIGNATURE: &[u8] = b"makedumpfile";
const FLAT_HEADER_SIZE: usize = 4096;
const DH_VERSION: usize = 8;
const DH_STATUS: usize = 424;
const DH_BLOCK_SIZE: usize = 428;
const DH_SUB_HDR_SIZE: usize = 432;
const DH_BITMAP_BLOCKS: usize = 436;
const DH_MAX_MAPNR: usize = 440;
const SH_SPLIT: usize = 12;
const SH_OFFSET_VMCOREINFO: usize = 32;
const SH_OFFSET_NOTE: usize = 48;
const SH_MAX_MAPNR_64: usize = 96;
const PAGE_DESC_SIZE: usize = 24;

const COMPRESS_ZLIB: u32 = 0x1;
const COMPRESS_LZO: u32 = 0x2;
const COMPRESS_SNAPPY: u32 = 0x4;
const COMPRESS_ZSTD: u32 = 0x20;
const COMPRESS_MASK: u32 = COMPRESS_ZLIB | COMPRESS_LZO | COMPRESS_SNAPPY | COMPRESS_ZSTD;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Codec {
    /// No re-encoding: the page data, descriptors and header as they are (what `makedumpfile -R` makes of a
    /// flattened file).
    Keep,
    Raw,
    Zlib,
    Lzo,
    Snappy,
    Zstd,
}

impl Codec {
    fn parse(s: &str) -> Option<Codec> {
        Some(match s {
            "keep" => Codec::Keep,
            "raw" => Codec::Raw,
            "zlib" => Codec::Zlib,
            "lzo" => Codec::Lzo,
            "snappy" => Codec::Snappy,
            "zstd" => Codec::Zstd,
            _ => return None,
        })
    }

    fn flag(self) -> u32 {
        match self {
            Codec::Keep | Codec::Raw => 0,
            Codec::Zlib => COMPRESS_ZLIB,
            Codec::Lzo => COMPRESS_LZO,
            Codec::Snappy => COMPRESS_SNAPPY,
            Codec::Zstd => COMPRESS_ZSTD,
        }
    }

    fn compress(self, page: &[u8]) -> Vec<u8> {
        match self {
            Codec::Keep | Codec::Raw => page.to_vec(),
            Codec::Zlib => {
                let mut e =
                    flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
                e.write_all(page).unwrap();
                e.finish().unwrap()
            }
            // makedumpfile: lzo1x_1_compress; lzokay writes the same LZO1X stream format.
            Codec::Lzo => lzokay_native::compress(page).unwrap(),
            // makedumpfile: snappy_compress, the raw block format (not framed).
            Codec::Snappy => snap::raw::Encoder::new().compress_vec(page).unwrap(),
            // makedumpfile: ZSTD_compressCCtx(..., 1), one frame.
            Codec::Zstd => zstd::bulk::compress(page, 1).unwrap(),
        }
    }
}

/// Decodes one stored page: `flags` names the method; a page of block size is raw.
fn decompress(flags: u32, data: &[u8], block_size: usize) -> Result<Vec<u8>, String> {
    if data.len() == block_size {
        return Ok(data.to_vec());
    }
    let page = match flags & COMPRESS_MASK {
        COMPRESS_ZLIB => {
            let mut out = Vec::with_capacity(block_size);
            flate2::read::ZlibDecoder::new(data)
                .take(block_size as u64 + 1)
                .read_to_end(&mut out)
                .map_err(|e| format!("zlib: {e}"))?;
            out
        }
        COMPRESS_LZO => lzo::decompress(data, block_size).map_err(|e| format!("lzo: {e:?}"))?,
        COMPRESS_SNAPPY => snap::raw::Decoder::new()
            .decompress_vec(data)
            .map_err(|e| format!("snappy: {e}"))?,
        COMPRESS_ZSTD => {
            zstd::bulk::decompress(data, block_size).map_err(|e| format!("zstd: {e}"))?
        }
        m => return Err(format!("flags {flags:#x}: compression {m:#x}")),
    };
    if page.len() != block_size {
        return Err(format!(
            "decodes to {} bytes, not the block size {block_size}",
            page.len()
        ));
    }
    Ok(page)
}

fn die(msg: impl std::fmt::Display) -> ! {
    eprintln!("kdump_transcode: {msg}");
    exit(1)
}

fn le_u32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}

fn le_u64(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}

fn be_i64(b: &[u8], off: usize) -> Option<i64> {
    Some(i64::from_be_bytes(b.get(off..off + 8)?.try_into().ok()?))
}

/// makedumpfile -R: the records applied in stream order (later ones win), gaps read as zeros.
fn deflatten(stream: &[u8]) -> Vec<u8> {
    if be_i64(stream, 16) != Some(1) || be_i64(stream, 24) != Some(1) {
        die("flattened header: type and version must be 1");
    }
    let mut out = Vec::new();
    let mut pos = FLAT_HEADER_SIZE;
    let mut records = 0u64;
    loop {
        let (Some(off), Some(size)) = (be_i64(stream, pos), be_i64(stream, pos + 8)) else {
            die(format!(
                "flattened stream: no end marker after {records} records (truncated at {pos:#x})"
            ));
        };
        if off == -1 {
            break;
        }
        let (Ok(off), Ok(size)) = (usize::try_from(off), usize::try_from(size)) else {
            die(format!(
                "flattened record at {pos:#x}: offset {off}, size {size}"
            ));
        };
        let data = stream
            .get(pos + 16..pos + 16 + size)
            .unwrap_or_else(|| die(format!("flattened record at {pos:#x} is cut short")));
        if out.len() < off + size {
            out.resize(off + size, 0);
        }
        out[off..off + size].copy_from_slice(data);
        pos += 16 + size;
        records += 1;
    }
    eprintln!(
        "kdump_transcode: de-flattened {records} records into {} bytes",
        out.len()
    );
    out
}

/// Writes `file` in makedumpfile's flattened form: the 4096-byte header, then records {offset be64, size
/// be64, data} — the headers and bitmaps first, then per block of descriptors the pages it names followed by
/// the descriptor block (the order QEMU writes them in) — and the end marker.
fn flatten(file: &[u8], desc_off: usize, desc_len: usize, block_size: usize) -> Vec<u8> {
    let mut out = vec![0u8; FLAT_HEADER_SIZE];
    out[..FLAT_SIGNATURE.len()].copy_from_slice(FLAT_SIGNATURE);
    out[16..24].copy_from_slice(&1i64.to_be_bytes());
    out[24..32].copy_from_slice(&1i64.to_be_bytes());
    let mut record = |off: usize, len: usize| {
        out.extend_from_slice(&(off as i64).to_be_bytes());
        out.extend_from_slice(&(len as i64).to_be_bytes());
        out.extend_from_slice(&file[off..off + len]);
    };
    // Headers, sub-header with VMCOREINFO and notes, bitmaps: one record per block.
    let mut at = 0;
    while at < desc_off {
        let n = block_size.min(desc_off - at);
        record(at, n);
        at += n;
    }
    let per_block = block_size / PAGE_DESC_SIZE;
    let mut written_to = desc_off + desc_len; // page data written so far: [desc_end, written_to)
    let mut d = 0;
    let n_desc = desc_len / PAGE_DESC_SIZE;
    while d < n_desc {
        let k = per_block.min(n_desc - d);
        // The page data these descriptors reach (pages are in descriptor order; shared ones come earlier).
        let mut end = written_to;
        for i in d..d + k {
            let p = desc_off + i * PAGE_DESC_SIZE;
            let e = le_u64(file, p) as usize + le_u32(file, p + 8) as usize;
            end = end.max(e);
        }
        let mut at = written_to;
        while at < end {
            let n = (16 * block_size).min(end - at);
            record(at, n);
            at += n;
        }
        written_to = end;
        record(desc_off + d * PAGE_DESC_SIZE, k * PAGE_DESC_SIZE);
        d += k;
    }
    if written_to < file.len() {
        record(written_to, file.len() - written_to);
    }
    out.extend_from_slice(&(-1i64).to_be_bytes());
    out.extend_from_slice(&(-1i64).to_be_bytes());
    out
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: kdump_transcode IN OUT --to lzo|snappy|zstd|zlib|raw|keep [--flatten]";
    let (mut input, mut output, mut to, mut flat) = (None, None, None, false);
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--to" => {
                let v = it.next().unwrap_or_else(|| die(usage));
                to = Some(Codec::parse(v).unwrap_or_else(|| die(format!("--to {v}: {usage}"))));
            }
            "--flatten" => flat = true,
            s if s.starts_with('-') => die(format!("unknown option {s}; {usage}")),
            s if input.is_none() => input = Some(s.to_string()),
            s if output.is_none() => output = Some(s.to_string()),
            _ => die(usage),
        }
    }
    let (Some(input), Some(output), Some(to)) = (input, output, to) else {
        die(usage)
    };

    let raw_in = std::fs::read(&input).unwrap_or_else(|e| die(format!("{input}: {e}")));
    let was_flat = raw_in.starts_with(FLAT_SIGNATURE);
    let src = if was_flat { deflatten(&raw_in) } else { raw_in };
    let src = &src[..];
    if src.len() < 464 || !(src.starts_with(b"KDUMP   ") || src.starts_with(b"DISKDUMP")) {
        die(format!("{input}: not a kdump-compressed file"));
    }

    // The headers (disk_dump_header, kdump_sub_header; x86_64 layout).
    let version = le_u32(src, DH_VERSION) as i32;
    let status = le_u32(src, DH_STATUS);
    let block_size = le_u32(src, DH_BLOCK_SIZE) as usize;
    let sub_hdr_size = le_u32(src, DH_SUB_HDR_SIZE) as usize;
    let bitmap_blocks = le_u32(src, DH_BITMAP_BLOCKS) as usize;
    if !(512..=1 << 16).contains(&block_size) || !block_size.is_power_of_two() {
        die(format!("block_size {block_size}"));
    }
    let sub = &src[block_size..];
    let max_mapnr = if version >= 6 {
        le_u64(sub, SH_MAX_MAPNR_64)
    } else {
        u64::from(le_u32(src, DH_MAX_MAPNR))
    } as usize;
    if src.starts_with(b"KDUMP   ") && version >= 2 && le_u32(sub, SH_SPLIT) != 0 {
        die("split dumps are not supported");
    }
    let bitmap1_off = (1 + sub_hdr_size) * block_size;
    let bitmap_len = bitmap_blocks * block_size;
    if !bitmap_blocks.is_multiple_of(2) || bitmap_len / 2 < max_mapnr.div_ceil(8) {
        die(format!(
            "bitmap_blocks {bitmap_blocks} do not hold two bitmaps of {max_mapnr} pfns"
        ));
    }
    let bitmap2 = &src[bitmap1_off + bitmap_len / 2..bitmap1_off + bitmap_len];
    let n_desc: usize = bitmap2[..max_mapnr.div_ceil(8)]
        .iter()
        .enumerate()
        .map(|(i, &b)| {
            // Bits beyond max_mapnr do not count.
            let valid = (max_mapnr - 8 * i).min(8);
            let mask = if valid == 8 { 0xff } else { (1u8 << valid) - 1 };
            (b & mask).count_ones() as usize
        })
        .sum();
    let desc_off = bitmap1_off + bitmap_len;
    let desc_len = n_desc * PAGE_DESC_SIZE;
    let desc_end = desc_off + desc_len;
    if src.len() < desc_end {
        die("the file ends inside the page descriptor table");
    }
    // Everything before the descriptor table is kept; VMCOREINFO and the notes must lie there.
    if version >= 3 {
        for (name, at) in [
            ("VMCOREINFO", SH_OFFSET_VMCOREINFO),
            ("notes", SH_OFFSET_NOTE),
        ] {
            if name == "notes" && version < 4 {
                continue;
            }
            let off = le_u64(sub, at) as usize;
            let size = le_u64(sub, at + 8) as usize;
            if size != 0 && off + size > desc_off {
                die(format!(
                    "{name} at {off:#x}+{size:#x} lies beyond the bitmaps"
                ));
            }
        }
    }

    if to == Codec::Keep {
        let bytes = if flat {
            flatten(src, desc_off, desc_len, block_size)
        } else {
            src.to_vec()
        };
        std::fs::write(&output, &bytes).unwrap_or_else(|e| die(format!("{output}: {e}")));
        eprintln!(
            "kdump_transcode: {input} ({}, header v{version}, status {status:#x}) -> {output} ({}, pages \
             kept): {n_desc} page descriptors, {} bytes",
            if was_flat { "flattened" } else { "plain" },
            if flat { "flattened" } else { "plain" },
            bytes.len()
        );
        return;
    }
    let mut out = src[..desc_end].to_vec();
    let new_status = (status & !COMPRESS_MASK) | to.flag();
    out[DH_STATUS..DH_STATUS + 4].copy_from_slice(&new_status.to_le_bytes());

    // The distinct data blocks, in the order descriptors first name them (a block shared in IN, such as
    // QEMU's single zero page, stays shared in OUT).
    let mut first_use: HashMap<(u64, u32), usize> = HashMap::new();
    let mut blocks: Vec<(usize, u64, u32, u32)> = Vec::new(); // (descriptor #, offset, size, flags)
    let mut block_of = Vec::with_capacity(n_desc);
    let mut in_flags_seen = 0u32;
    for i in 0..n_desc {
        let p = desc_off + i * PAGE_DESC_SIZE;
        let (off, size, flags) = (le_u64(src, p), le_u32(src, p + 8), le_u32(src, p + 12));
        in_flags_seen |= flags & COMPRESS_MASK;
        let b = *first_use.entry((off, size)).or_insert_with(|| {
            blocks.push((i, off, size, flags));
            blocks.len() - 1
        });
        block_of.push(b);
    }
    // Decode and re-encode them on every core; each page is decoded again by the decoder a reader would use
    // and compared with the original.
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let chunk = blocks.len().div_ceil(threads).max(1);
    let encoded: Vec<(Vec<u8>, u32)> = std::thread::scope(|s| {
        let handles: Vec<_> = blocks
            .chunks(chunk)
            .map(|part| {
                s.spawn(move || {
                    part.iter()
                        .map(|&(i, off, size, flags)| {
                            let data = src
                                .get(off as usize..off as usize + size as usize)
                                .unwrap_or_else(|| {
                                    die(format!(
                                        "descriptor #{i}: data {off:#x}+{size:#x} beyond the file"
                                    ))
                                });
                            let page = decompress(flags, data, block_size)
                                .unwrap_or_else(|e| die(format!("descriptor #{i}: {e}")));
                            let packed = to.compress(&page);
                            if to == Codec::Raw || packed.len() >= block_size {
                                return (page, 0);
                            }
                            let back =
                                decompress(to.flag(), &packed, block_size).unwrap_or_else(|e| {
                                    die(format!(
                                        "descriptor #{i}: re-encoded page does not decode: {e}"
                                    ))
                                });
                            if back != page {
                                die(format!(
                                    "descriptor #{i}: re-encoded page decodes differently"
                                ));
                            }
                            (packed, to.flag())
                        })
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let mut placed = Vec::with_capacity(encoded.len());
    let (mut n_raw, mut n_packed) = (0usize, 0usize);
    for (bytes, nflags) in &encoded {
        if *nflags == 0 {
            n_raw += 1;
        } else {
            n_packed += 1;
        }
        placed.push((out.len() as u64, bytes.len() as u32, *nflags));
        out.extend_from_slice(bytes);
    }
    for (i, &b) in block_of.iter().enumerate() {
        let p = desc_off + i * PAGE_DESC_SIZE;
        let (off, size, nflags) = placed[b];
        let flags = le_u32(src, p + 12);
        out[p..p + 8].copy_from_slice(&off.to_le_bytes());
        out[p + 8..p + 12].copy_from_slice(&size.to_le_bytes());
        out[p + 12..p + 16].copy_from_slice(&((flags & !COMPRESS_MASK) | nflags).to_le_bytes());
        // page_flags (p + 16..p + 24) kept.
    }

    let bytes = if flat {
        flatten(&out, desc_off, desc_len, block_size)
    } else {
        out
    };
    std::fs::write(&output, &bytes).unwrap_or_else(|e| die(format!("{output}: {e}")));
    eprintln!(
        "kdump_transcode: {input} ({}, header v{version}, status {status:#x}, page flags seen {in_flags_seen:#x}) \
         -> {output} ({}, status {new_status:#x}): {n_desc} page descriptors, {} data blocks ({n_packed} \
         compressed, {n_raw} raw), {} bytes",
        if was_flat { "flattened" } else { "plain" },
        if flat { "flattened" } else { "plain" },
        blocks.len(),
        bytes.len()
    );
}
