//! AVML reader tests (`synq::source::avml`, through the LiME-family reader). Snapshots are built by the little writer below from the format's description (AVML's
//! record = LiME header with magic "AVML" and version 2, a Snappy frame stream, a u64 LE stream length),
//! with a CRC-32C of its own (bitwise, not the reader's table), and with the real `snap::write::FrameEncoder`
//! for whole streams. Every byte of physical memory holds a value derived from its address (or seeded
//! random data), so reads can be checked exactly.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::io::Write;

use synq::memory::{PhysMemory, ReadError};
use synq::source::lime::{Lime, LimeFormat, recognise};

const MAGIC_LIME: u32 = 0x4C69_4D45;
const MAGIC_AVML: u32 = 0x4C4D_5641;
const K64: usize = 65536;

// ---- the writer -------------------------------------------------------------------------------------

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), bit by bit.
fn crc32c(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0x82F6_3B78
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

/// The framing format's checksum: ((crc >> 15) | (crc << 17)) + 0xa282ead8, written as the spec does.
#[allow(clippy::manual_rotate)]
fn masked(data: &[u8]) -> u32 {
    let c = crc32c(data);
    ((c >> 15) | (c << 17)).wrapping_add(0xa282_ead8)
}

fn header(magic: u32, version: u32, start: u64, end: u64) -> Vec<u8> {
    let mut h = Vec::new();
    h.extend_from_slice(&magic.to_le_bytes());
    h.extend_from_slice(&version.to_le_bytes());
    h.extend_from_slice(&start.to_le_bytes());
    h.extend_from_slice(&end.to_le_bytes());
    h.extend_from_slice(&[0u8; 8]);
    h
}

/// One chunk: type, u24 LE length, body.
fn chunk(kind: u8, body: &[u8]) -> Vec<u8> {
    let len = body.len() as u32;
    assert!(len < 1 << 24);
    let mut c = vec![kind];
    c.extend_from_slice(&len.to_le_bytes()[..3]);
    c.extend_from_slice(body);
    c
}

fn stream_identifier() -> Vec<u8> {
    chunk(0xff, b"sNaPpY")
}

fn compressed(data: &[u8]) -> Vec<u8> {
    let mut body = masked(data).to_le_bytes().to_vec();
    body.extend(snap::raw::Encoder::new().compress_vec(data).unwrap());
    chunk(0x00, &body)
}

fn uncompressed(data: &[u8]) -> Vec<u8> {
    let mut body = masked(data).to_le_bytes().to_vec();
    body.extend_from_slice(data);
    chunk(0x01, &body)
}

/// An AVML record for physical `start..start + len` around `stream`, with the stream's length after it.
fn avml_record(start: u64, len: u64, stream: &[u8]) -> Vec<u8> {
    let mut r = header(MAGIC_AVML, 2, start, start + len - 1);
    r.extend_from_slice(stream);
    r.extend_from_slice(&(stream.len() as u64).to_le_bytes());
    r
}

/// The real framing format, as AVML writes it.
fn frame_encode(data: &[u8]) -> Vec<u8> {
    let mut enc = snap::write::FrameEncoder::new(Vec::new());
    enc.write_all(data).unwrap();
    enc.into_inner().unwrap()
}

/// A record of `data` at `start`, streamed by the real encoder.
fn encoded_record(start: u64, data: &[u8]) -> Vec<u8> {
    avml_record(start, data.len() as u64, &frame_encode(data))
}

/// Chunk types of a stream, walked by the test's own reading of the format.
fn chunk_kinds(stream: &[u8]) -> Vec<u8> {
    let mut kinds = Vec::new();
    let mut at = 0;
    while at + 4 <= stream.len() {
        let len = u32::from_le_bytes([stream[at + 1], stream[at + 2], stream[at + 3], 0]) as usize;
        kinds.push(stream[at]);
        at += 4 + len;
    }
    kinds
}

/// Seeded random bytes (xorshift64*).
fn random(len: usize, mut seed: u64) -> Vec<u8> {
    (0..len)
        .map(|_| {
            seed ^= seed >> 12;
            seed ^= seed << 25;
            seed ^= seed >> 27;
            (seed.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 56) as u8
        })
        .collect()
}

/// Compressible bytes that still differ from page to page and from address to address.
fn text(start: u64, len: usize) -> Vec<u8> {
    (start..start + len as u64)
        .map(|a| b"kernel memory "[(a % 14) as usize] ^ ((a >> 12) as u8 & 7))
        .collect()
}

fn parse(f: Vec<u8>) -> Lime<Vec<u8>> {
    Lime::parse(f).expect("parses")
}

fn read(l: &Lime<Vec<u8>>, paddr: u64, len: usize) -> Result<Vec<u8>, ReadError> {
    let mut buf = vec![0u8; len];
    l.read_phys(paddr, &mut buf).map(|()| buf)
}

fn has_warning(l: &Lime<Vec<u8>>, needle: &str) -> bool {
    l.warnings().iter().any(|w| w.contains(needle))
}

fn corrupt_at(r: Result<Vec<u8>, ReadError>) -> (u64, String) {
    match r {
        Err(ReadError::Corrupt { paddr, msg }) => (paddr, msg),
        other => panic!("expected a Corrupt fault, got {other:?}"),
    }
}

/// Three 64 KiB chunks of compressible data at physical `start`: the stream's chunks and the data.
fn three_chunks(start: u64) -> (Vec<Vec<u8>>, Vec<u8>) {
    let data = text(start, 3 * K64);
    let chunks = data.chunks(K64).map(compressed).collect();
    (chunks, data)
}

fn stream_of(chunks: &[Vec<u8>]) -> Vec<u8> {
    let mut s = stream_identifier();
    for c in chunks {
        s.extend_from_slice(c);
    }
    s
}

// ---- the tests --------------------------------------------------------------------------------------

#[test]
fn test_writer_headers_match_avml_own_test_vectors() {
    // Why: the writer here is independent of the reader; pin it to the producer's bytes (AVML's
    // `src/image.rs` tests encode 0x1000..0x20001 with an inclusive end of 0x20000), so both cannot drift
    // together.
    let tail = b"\x00\x10\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\x00\x00\x00\x00\
                 \x00\x00\x00\x00\x00\x00\x00\x00";
    let lime = [&b"\x45\x4d\x69\x4c\x01\x00\x00\x00"[..], tail].concat();
    let avml = [&b"\x41\x56\x4d\x4c\x02\x00\x00\x00"[..], tail].concat();
    assert_eq!(header(MAGIC_LIME, 1, 0x1000, 0x20000), lime);
    assert_eq!(header(MAGIC_AVML, 2, 0x1000, 0x20000), avml);
    assert_eq!(recognise(&lime), Some(LimeFormat::Lime));
    assert_eq!(recognise(&avml), Some(LimeFormat::Avml));
    let data = text(0x1000, 0x1f001);
    let l = parse(encoded_record(0x1000, &data));
    assert_eq!(l.phys_ranges(), vec![0x1000..0x20001]);
    assert_eq!(read(&l, 0x1f000, 0x1001).unwrap(), &data[0x1e000..]);
}

#[test]
fn frame_encoder_output_round_trips_through_the_index() {
    // Why: AVML's records are exactly `snap::write::FrameEncoder` output; every byte must read back,
    // by reads of every size crossing chunk and record boundaries.
    let mut recs = Vec::new();
    let mut want: Vec<(u64, Vec<u8>)> = Vec::new();
    for (i, start) in [0x10_0000u64, 0x14_0000, 0x40_0000].into_iter().enumerate() {
        let mut data = text(start, 0x2_0000);
        data.extend(random(0x1_8000, i as u64 + 7));
        data.extend(vec![0u8; 0x8000]);
        recs.push(encoded_record(start, &data));
        want.push((start, data));
    }
    let l = parse(recs.concat());
    assert_eq!(l.format(), LimeFormat::Avml);
    assert_eq!(l.format().to_string(), "avml (snappy)");
    assert_eq!(l.records(), 3);
    assert!(l.warnings().is_empty(), "{:?}", l.warnings());
    assert_eq!(
        l.phys_ranges(),
        vec![0x10_0000..0x18_0000, 0x40_0000..0x44_0000]
    );
    for (start, data) in &want {
        assert_eq!(&read(&l, *start, data.len()).unwrap(), data);
        for step in [1usize, 4093, 65536, 70001] {
            let mut at = 0;
            while at < data.len() {
                let n = step.min(data.len() - at);
                assert_eq!(
                    read(&l, start + at as u64, n).unwrap(),
                    &data[at..at + n],
                    "{start:#x}+{at:#x}"
                );
                at += step * 3 + 1;
            }
        }
    }
    // Across the adjacent records 0x10_0000..0x14_0000..0x18_0000.
    let mut both = want[0].1[0x3_fff0..].to_vec();
    both.extend_from_slice(&want[1].1[..0x20]);
    assert_eq!(read(&l, 0x13_fff0, 0x30).unwrap(), both);
    assert_eq!(
        read(&l, 0x17_fff0, 0x20),
        Err(ReadError::NotInDump { paddr: 0x18_0000 })
    );
}

#[test]
fn random_data_goes_in_uncompressed_chunks_that_read_back() {
    // Why: the encoder stores incompressible chunks raw (type 0x01); the reader serves them in place.
    let data = random(3 * K64 + 100, 42);
    let stream = frame_encode(&data);
    let kinds = chunk_kinds(&stream);
    assert_eq!(kinds, vec![0xff, 0x01, 0x01, 0x01, 0x01]);
    let l = parse(avml_record(0x1000, data.len() as u64, &stream));
    assert!(l.warnings().is_empty(), "{:?}", l.warnings());
    assert_eq!(read(&l, 0x1000, data.len()).unwrap(), data);
    assert_eq!(
        read(&l, 0x1000 + K64 as u64 - 3, 10).unwrap(),
        &data[K64 - 3..K64 + 7]
    );
}

#[test]
fn hand_built_compressed_and_uncompressed_chunks_of_any_size_mix() {
    // Why: chunk sizes come from each chunk (preamble or data length), not from a fixed 64 KiB grid.
    let parts = [text(0, 100), random(5000, 1), text(7, K64), random(1, 2)];
    let mut s = stream_identifier();
    s.extend(compressed(&parts[0]));
    s.extend(uncompressed(&parts[1]));
    s.extend(compressed(&parts[2]));
    s.extend(uncompressed(&parts[3]));
    let data = parts.concat();
    let l = parse(avml_record(0x2000, data.len() as u64, &s));
    assert!(l.warnings().is_empty(), "{:?}", l.warnings());
    assert_eq!(read(&l, 0x2000, data.len()).unwrap(), data);
    assert_eq!(read(&l, 0x2000 + 90, 20).unwrap(), &data[90..110]);
}

#[test]
fn padding_skippable_chunks_and_repeated_identifiers_are_skipped() {
    // Why: the framing format lets writers insert these anywhere, including before the trailer.
    let (chunks, data) = three_chunks(0x8000);
    let mut s = stream_identifier();
    s.extend(chunk(0xfe, &[0u8; 17]));
    s.extend(&chunks[0]);
    s.extend(chunk(0x80, b"skippable"));
    s.extend(stream_identifier());
    s.extend(&chunks[1]);
    s.extend(chunk(0xfd, &[]));
    s.extend(&chunks[2]);
    s.extend(chunk(0xfe, &[0u8; 3]));
    let f = [
        avml_record(0x8000, data.len() as u64, &s),
        encoded_record(0x10_0000, b"next record"),
    ]
    .concat();
    let l = parse(f);
    assert!(l.warnings().is_empty(), "{:?}", l.warnings());
    assert_eq!(read(&l, 0x8000, data.len()).unwrap(), data);
    assert_eq!(read(&l, 0x10_0000, 11).unwrap(), b"next record");
}

#[test]
fn bad_crc_faults_the_read_naming_the_address_while_other_chunks_read() {
    // Why: one damaged chunk costs the reads that need it, and the fault says where and why.
    let (mut chunks, data) = three_chunks(0x10_0000);
    chunks[1][4] ^= 0x01; // the stored CRC of the middle (compressed) chunk
    let mut raw = uncompressed(&random(K64, 9));
    raw[100] ^= 0x80; // a data byte of an uncompressed chunk
    chunks.push(raw);
    let len = (data.len() + K64) as u64;
    let l = parse(avml_record(0x10_0000, len, &stream_of(&chunks)));
    assert!(l.warnings().is_empty(), "{:?}", l.warnings());
    let c1 = 0x10_0000 + K64 as u64;
    let (paddr, msg) = corrupt_at(read(&l, c1 + 0x123, 8));
    assert_eq!(paddr, c1 + 0x123);
    assert!(msg.contains("CRC-32C mismatch"), "{msg}");
    assert!(msg.contains("AVML record #0"), "{msg}");
    // A read running into the chunk fails at the chunk's first byte; the bytes before are fine alone.
    assert_eq!(corrupt_at(read(&l, c1 - 4, 8)).0, c1);
    assert_eq!(read(&l, c1 - 4, 4).unwrap(), &data[K64 - 4..K64]);
    assert_eq!(
        read(&l, c1 + K64 as u64, K64).unwrap(),
        &data[2 * K64..3 * K64]
    );
    // Still failing the second time (a bad chunk is never cached).
    assert_eq!(corrupt_at(read(&l, c1, 1)).0, c1);
    let c3 = 0x10_0000 + 3 * K64 as u64;
    assert_eq!(corrupt_at(read(&l, c3 + 5, 1)).0, c3 + 5);
}

#[test]
fn undecodable_block_faults_the_read() {
    // Why: a preamble can be right and the block still garbage; found when the chunk is used.
    let data = text(0, 4096);
    let mut body = masked(&data).to_le_bytes().to_vec();
    body.extend([0x80, 0x20]); // preamble: 4096 bytes
    body.extend([0xff; 40]); // not a valid block
    let s = [stream_identifier(), chunk(0x00, &body)].concat();
    let l = parse(avml_record(0x1000, 4096, &s));
    assert_eq!(l.phys_ranges(), vec![0x1000..0x2000]);
    let (paddr, msg) = corrupt_at(read(&l, 0x1800, 4));
    assert_eq!(paddr, 0x1800);
    assert!(msg.contains("snappy block"), "{msg}");
}

#[test]
fn truncated_trailer_keeps_the_whole_record_and_warns() {
    // Why: the data of the last record is whole; only its length word is cut.
    let (chunks, data) = three_chunks(0x1000);
    let mut f = avml_record(0x1000, data.len() as u64, &stream_of(&chunks));
    f.truncate(f.len() - 3);
    let l = parse(f);
    assert!(has_warning(&l, "trailer"), "{:?}", l.warnings());
    assert_eq!(l.phys_ranges(), vec![0x1000..0x1000 + data.len() as u64]);
    assert_eq!(read(&l, 0x1000, data.len()).unwrap(), data);
}

#[test]
fn truncated_stream_keeps_whole_chunks_and_faults_the_rest_at_its_first_address() {
    // Why: an interrupted acquisition keeps every chunk written in full.
    let (chunks, data) = three_chunks(0x1000);
    let s = stream_of(&chunks);
    let cut = s.len() - chunks[2].len() / 2;
    let f = [
        header(MAGIC_AVML, 2, 0x1000, 0x1000 + data.len() as u64 - 1),
        s[..cut].to_vec(),
    ]
    .concat();
    let l = parse(f);
    assert!(has_warning(&l, "truncated"), "{:?}", l.warnings());
    let c2 = 0x1000 + 2 * K64 as u64;
    assert_eq!(l.phys_ranges(), vec![0x1000..c2]);
    assert_eq!(read(&l, 0x1000, 2 * K64).unwrap(), &data[..2 * K64]);
    let (paddr, msg) = corrupt_at(read(&l, c2 - 2, 4));
    assert_eq!(paddr, c2);
    assert!(msg.contains("truncated"), "{msg}");
}

#[test]
fn chunk_claiming_more_than_64_kib_is_unreadable_and_later_chunks_are_placed_from_the_end() {
    // Why: a chunk may hold at most 65536 bytes; its span is lost, not the rest of the 16 MiB record.
    let (mut chunks, data) = three_chunks(0x10_0000);
    chunks[1] = compressed(&text(0, 100_000));
    let l = parse(avml_record(
        0x10_0000,
        data.len() as u64,
        &stream_of(&chunks),
    ));
    assert!(
        has_warning(&l, "more than the 0x10000"),
        "{:?}",
        l.warnings()
    );
    let c1 = 0x10_0000 + K64 as u64;
    let c2 = c1 + K64 as u64;
    assert_eq!(l.phys_ranges(), vec![0x10_0000..c1, c2..c2 + K64 as u64]);
    assert_eq!(read(&l, 0x10_0000, K64).unwrap(), &data[..K64]);
    assert_eq!(read(&l, c2, K64).unwrap(), &data[2 * K64..]);
    let (paddr, msg) = corrupt_at(read(&l, c1 - 1, 2));
    assert_eq!(paddr, c1);
    assert!(msg.contains("0x186a0"), "{msg}");
}

#[test]
fn oversized_uncompressed_chunk_is_unreadable_too() {
    // Why: the 65536-byte limit holds for both data chunk types.
    let big = random(K64 + 1, 3);
    let tail = text(0, 100);
    let s = [stream_identifier(), uncompressed(&big), compressed(&tail)].concat();
    let len = (big.len() + tail.len()) as u64;
    let l = parse(avml_record(0, len, &s));
    assert_eq!(l.phys_ranges(), vec![K64 as u64 + 1..len]);
    assert_eq!(read(&l, K64 as u64 + 1, 100).unwrap(), tail);
    assert_eq!(corrupt_at(read(&l, 0, 1)).0, 0);
}

#[test]
fn reserved_unskippable_chunk_without_data_costs_only_a_warning() {
    // Why: the spec forbids skipping it; the stream's total still places every data chunk exactly.
    let (chunks, data) = three_chunks(0x1000);
    let mut s = stream_identifier();
    s.extend(&chunks[0]);
    s.extend(chunk(0x05, b"unknown"));
    s.extend(&chunks[1]);
    s.extend(&chunks[2]);
    let l = parse(avml_record(0x1000, data.len() as u64, &s));
    assert!(
        has_warning(&l, "reserved unskippable chunk type 0x05"),
        "{:?}",
        l.warnings()
    );
    assert!(has_warning(&l, "held no data"), "{:?}", l.warnings());
    assert_eq!(read(&l, 0x1000, data.len()).unwrap(), data);
}

#[test]
fn reserved_unskippable_chunk_in_place_of_data_makes_only_its_span_unreadable() {
    // Why: a chunk of unknown type may have carried data; the bytes it would hold are unknowable.
    let (mut chunks, data) = three_chunks(0x1000);
    chunks[1][0] = 0x42;
    let l = parse(avml_record(0x1000, data.len() as u64, &stream_of(&chunks)));
    let c1 = 0x1000 + K64 as u64;
    let c2 = c1 + K64 as u64;
    assert_eq!(l.phys_ranges(), vec![0x1000..c1, c2..c2 + K64 as u64]);
    let (paddr, msg) = corrupt_at(read(&l, c1 + 10, 1));
    assert_eq!(paddr, c1 + 10);
    assert!(msg.contains("reserved unskippable"), "{msg}");
    assert_eq!(read(&l, c2, K64).unwrap(), &data[2 * K64..]);
}

#[test]
fn two_damaged_chunks_lose_the_chunks_between_them() {
    // Why: between two chunks of unknown length nothing can be placed; after the last one, all can.
    let data = text(0, 4 * K64);
    let mut chunks: Vec<Vec<u8>> = data.chunks(K64).map(compressed).collect();
    chunks[0][0] = 0x10;
    chunks[2][0] = 0x11;
    let l = parse(avml_record(0, data.len() as u64, &stream_of(&chunks)));
    assert_eq!(l.phys_ranges(), vec![3 * K64 as u64..4 * K64 as u64]);
    assert_eq!(read(&l, 3 * K64 as u64, K64).unwrap(), &data[3 * K64..]);
    assert_eq!(corrupt_at(read(&l, K64 as u64, 1)).0, K64 as u64);
}

#[test]
fn trailer_disagreeing_with_the_walk_is_warned_and_the_next_record_still_reads() {
    // Why: the walked chunks and the header's length agree; a wrong length word alone must not lose the file.
    let mut first = encoded_record(0x1000, &text(0x1000, 5000));
    let at = first.len() - 8;
    first[at] ^= 0x40;
    let f = [first, encoded_record(0x9000, &text(0x9000, 300))].concat();
    let l = parse(f);
    assert!(has_warning(&l, "trailer"), "{:?}", l.warnings());
    assert_eq!(l.records(), 2);
    assert_eq!(read(&l, 0x1000, 5000).unwrap(), text(0x1000, 5000));
    assert_eq!(read(&l, 0x9000, 300).unwrap(), text(0x9000, 300));
}

#[test]
fn stream_shorter_than_its_header_faults_reads_past_its_data() {
    // Why: the sum of chunk lengths must match end − start + 1; what the chunks lack is unreadable.
    let data = text(0x1000, 3000);
    let f = [
        avml_record(0x1000, 4096, &frame_encode(&data)),
        encoded_record(0x9000, b"after"),
    ]
    .concat();
    let l = parse(f);
    assert!(
        has_warning(&l, "fewer than the 0x1000"),
        "{:?}",
        l.warnings()
    );
    assert_eq!(l.phys_ranges(), vec![0x1000..0x1000 + 3000, 0x9000..0x9005]);
    assert_eq!(read(&l, 0x1000, 3000).unwrap(), data);
    assert_eq!(corrupt_at(read(&l, 0x1000 + 2990, 20)).0, 0x1000 + 3000);
    assert_eq!(read(&l, 0x9000, 5).unwrap(), b"after");
}

#[test]
fn stream_longer_than_its_header_serves_only_the_header_range() {
    // Why: the header decides which physical addresses the record holds.
    let data = text(0x1000, 5000);
    let f = [
        avml_record(0x1000, 4096, &frame_encode(&data)),
        encoded_record(0x9000, b"after"),
    ]
    .concat();
    let l = parse(f);
    assert!(
        has_warning(&l, "more than the 0x1000"),
        "{:?}",
        l.warnings()
    );
    assert_eq!(l.phys_ranges(), vec![0x1000..0x2000, 0x9000..0x9005]);
    assert_eq!(read(&l, 0x1000, 4096).unwrap(), &data[..4096]);
    assert_eq!(
        read(&l, 0x2000, 1),
        Err(ReadError::NotInDump { paddr: 0x2000 })
    );
}

#[test]
fn stream_without_identifier_is_warned_and_read() {
    // Why: the identifier carries no data; its absence is damage worth reporting, not a reason to stop.
    let data = text(0, 1000);
    let l = parse(avml_record(0, 1000, &compressed(&data)));
    assert!(has_warning(&l, "stream identifier"), "{:?}", l.warnings());
    assert_eq!(read(&l, 0, 1000).unwrap(), data);
}

#[test]
fn cache_stays_bounded_after_reading_many_chunks() {
    // Why: decompressed chunks are kept in a small LRU (at most 64 chunks, 4 MiB), not for every read.
    let data = text(0, 300 * 4096);
    let s = stream_of(&data.chunks(4096).map(compressed).collect::<Vec<_>>());
    let big = text(0x1000_0000, 80 * K64);
    let f = [
        avml_record(0, data.len() as u64, &s),
        encoded_record(0x1000_0000, &big),
    ]
    .concat();
    let l = parse(f);
    for i in 0..300u64 {
        assert_eq!(
            read(&l, i * 4096 + 7, 9).unwrap(),
            &data[i as usize * 4096 + 7..i as usize * 4096 + 16]
        );
    }
    let (slots, _) = l.cache_usage();
    assert!(slots <= 64, "{slots} chunks cached");
    for i in 0..80u64 {
        let at = 0x1000_0000 + i * K64 as u64;
        assert_eq!(read(&l, at, 3).unwrap(), &big[i as usize * K64..][..3]);
    }
    let (slots, bytes) = l.cache_usage();
    assert!(slots <= 64, "{slots} chunks cached");
    assert!(bytes <= 4 << 20, "{bytes} bytes cached");
    // Evicted chunks still read.
    assert_eq!(read(&l, 0, 4096).unwrap(), &data[..4096]);
}

#[test]
fn lime_and_avml_records_mix_in_one_file() {
    // Why: one reader serves the LiME family; each record is read by its own header.
    let mut raw = header(MAGIC_LIME, 1, 0x1000, 0x1fff);
    raw.extend(text(0x1000, 0x1000));
    let f = [raw, encoded_record(0x2000, &text(0x2000, 0x1000))].concat();
    assert_eq!(recognise(&f), Some(LimeFormat::Lime));
    let l = parse(f);
    assert_eq!(l.format(), LimeFormat::Lime);
    assert!(has_warning(&l, "mixes"), "{:?}", l.warnings());
    assert_eq!(read(&l, 0x1000, 0x2000).unwrap(), text(0x1000, 0x2000));
}

#[test]
fn inverted_avml_record_is_skipped_by_walking_its_stream() {
    // Why: without a length the stream's end is found by its trailer, so the next record still reads.
    let s = frame_encode(&text(0, 2000));
    let mut bad = header(MAGIC_AVML, 2, 0x9000, 0x1000);
    bad.extend(&s);
    bad.extend((s.len() as u64).to_le_bytes());
    let f = [
        encoded_record(0x1000, &text(0x1000, 100)),
        bad,
        encoded_record(0x4000, &text(0x4000, 100)),
    ]
    .concat();
    let l = parse(f);
    assert_eq!(l.records(), 3);
    assert!(has_warning(&l, "inverted"), "{:?}", l.warnings());
    assert_eq!(l.phys_ranges(), vec![0x1000..0x1064, 0x4000..0x4064]);
    assert_eq!(read(&l, 0x4000, 100).unwrap(), text(0x4000, 100));
}

#[test]
fn damaged_files_never_panic_and_faults_name_an_address_inside_the_read() {
    // Why: snapshots are evidence from unknown tools and media; damage anywhere (headers, chunk headers,
    // CRCs, trailers, lengths, a cut) must end in warnings or faults, and reads of phys_ranges never miss.
    let mut parts = Vec::new();
    let mut raw = header(MAGIC_LIME, 1, 0x1000, 0x1fff);
    raw.extend(text(0x1000, 0x1000));
    parts.push(raw);
    for i in 0..6u64 {
        let start = 0x10_0000 * (i + 1);
        let mut data = text(start, 3000 + 1000 * i as usize);
        data.extend(random(2000, i));
        parts.push(encoded_record(start, &data));
    }
    let (chunks, data) = three_chunks(0x100_0000);
    let mut s = stream_of(&chunks);
    s.extend(chunk(0xfe, &[0; 5]));
    parts.push(avml_record(0x100_0000, data.len() as u64, &s));
    let base = parts.concat();
    let mut seed = 0x1234_5678_9abc_def0u64;
    let mut next = |n: usize| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as usize
    };
    for _ in 0..300 {
        let mut f = base.clone();
        for _ in 0..1 + next(4) {
            let at = next(f.len());
            f[at] ^= 1 << next(8);
        }
        if next(4) == 0 {
            f.truncate(next(f.len()));
        }
        let Ok(l) = Lime::parse(f) else {
            continue;
        };
        for r in l.phys_ranges() {
            let mut at = r.start;
            while at < r.end {
                let n = (r.end - at).min(0x9000) as usize;
                match read(&l, at, n) {
                    Ok(_) => {}
                    Err(ReadError::Corrupt { paddr, .. }) => {
                        assert!(
                            (at..at + n as u64).contains(&paddr),
                            "{paddr:#x} outside {at:#x}+{n:#x}"
                        )
                    }
                    Err(e) => panic!("read inside phys_ranges {r:x?} failed: {e}"),
                }
                at += n as u64;
            }
        }
        for _ in 0..20 {
            let at = next(0x120_0000) as u64;
            let n = 1 + next(0x3000);
            match read(&l, at, n) {
                Ok(_) => {}
                Err(ReadError::Corrupt { paddr, .. } | ReadError::NotInDump { paddr }) => {
                    assert!(
                        (at..at + n as u64).contains(&paddr),
                        "{paddr:#x} outside {at:#x}+{n:#x}"
                    )
                }
                Err(e) => panic!("unexpected {e}"),
            }
        }
    }
}
