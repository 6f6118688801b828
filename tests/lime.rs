//! LiME reader tests (`synq::source::lime`). Files are built by the little writer below, written from the format's description
//! (LiME's `lime_mem_range_header`), not with the reader's code. Every byte of physical memory holds a
//! value derived from its address, so any read can be checked against [`byte_at`].
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use synq::memory::{MAX_READ, PhysMemory, ReadError};
use synq::source::lime::{Lime, LimeFormat, MAX_WARNINGS, recognise};

const MAGIC_LIME: u32 = 0x4C69_4D45;
const MAGIC_AVML: u32 = 0x4C4D_5641;

/// The byte physical address `addr` holds in test snapshots (`salt` tells overlapping records apart).
fn byte_at(addr: u64, salt: u8) -> u8 {
    (addr.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 56) as u8 ^ salt
}

fn bytes_at(start: u64, len: u64, salt: u8) -> Vec<u8> {
    (start..start + len).map(|a| byte_at(a, salt)).collect()
}

/// A 32-byte record header.
fn header(magic: u32, version: u32, start: u64, end: u64) -> Vec<u8> {
    let mut h = Vec::with_capacity(32);
    h.extend_from_slice(&magic.to_le_bytes());
    h.extend_from_slice(&version.to_le_bytes());
    h.extend_from_slice(&start.to_le_bytes());
    h.extend_from_slice(&end.to_le_bytes());
    h.extend_from_slice(&[0u8; 8]);
    h
}

/// A LiME record for physical `start..start + len`, holding `byte_at(addr, salt)`.
fn record(start: u64, len: u64, salt: u8) -> Vec<u8> {
    let mut r = header(MAGIC_LIME, 1, start, start + len - 1);
    r.extend(bytes_at(start, len, salt));
    r
}

fn file(records: &[Vec<u8>]) -> Vec<u8> {
    records.concat()
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

#[test]
fn single_record_reads_back_every_byte_at_its_physical_address() {
    // Why: the basic contract, data at file offset 32 + (paddr − start).
    let l = parse(record(0x1000, 0x3000, 0));
    assert_eq!(l.records(), 1);
    assert_eq!(l.format(), LimeFormat::Lime);
    assert_eq!(l.format().to_string(), "lime");
    assert!(l.warnings().is_empty(), "{:?}", l.warnings());
    assert_eq!(l.phys_ranges(), vec![0x1000..0x4000]);
    assert_eq!(
        read(&l, 0x1000, 0x3000).unwrap(),
        bytes_at(0x1000, 0x3000, 0)
    );
    for (addr, len) in [(0x1000, 1), (0x2ffe, 7), (0x3fff, 1)] {
        assert_eq!(read(&l, addr, len).unwrap(), bytes_at(addr, len as u64, 0));
    }
}

#[test]
fn read_spanning_adjacent_records_is_served_from_both() {
    // Why: AVML splits RAM ranges into 16 MiB records; a structure may straddle two.
    let l = parse(file(&[
        record(0x10000, 0x1000, 0),
        record(0x11000, 0x1000, 0),
        record(0x12000, 0x800, 0),
    ]));
    assert_eq!(l.records(), 3);
    assert_eq!(
        read(&l, 0x10ff0, 0x1800).unwrap(),
        bytes_at(0x10ff0, 0x1800, 0)
    );
    assert_eq!(l.phys_ranges(), vec![0x10000..0x12800]);
}

#[test]
fn gap_between_records_fails_not_in_dump_at_the_first_missing_byte() {
    // Why: a fault must name the exact address that is missing, not the start of the read.
    let l = parse(file(&[
        record(0x1000, 0x1000, 0),
        record(0x4000, 0x1000, 0),
    ]));
    assert_eq!(l.phys_ranges(), vec![0x1000..0x2000, 0x4000..0x5000]);
    assert_eq!(
        read(&l, 0x1ff0, 0x20),
        Err(ReadError::NotInDump { paddr: 0x2000 })
    );
    assert_eq!(
        read(&l, 0x3000, 0x10),
        Err(ReadError::NotInDump { paddr: 0x3000 })
    );
    assert_eq!(
        read(&l, 0x3ff8, 0x10),
        Err(ReadError::NotInDump { paddr: 0x3ff8 })
    );
    assert_eq!(read(&l, 0, 1), Err(ReadError::NotInDump { paddr: 0 }));
    assert_eq!(
        read(&l, 0x4ffc, 8),
        Err(ReadError::NotInDump { paddr: 0x5000 })
    );
    assert_eq!(
        read(&l, 0x1000, 0x4000),
        Err(ReadError::NotInDump { paddr: 0x2000 })
    );
}

#[test]
fn phys_ranges_are_sorted_and_merge_adjacent_records() {
    // Why: scanners walk phys_ranges; adjacency between records is not a boundary for them.
    let l = parse(file(&[
        record(0x9000, 0x1000, 0),
        record(0x1000, 0x1000, 0),
        record(0x2000, 0x1000, 0),
        record(0x5000, 0x1000, 0),
    ]));
    assert_eq!(
        l.phys_ranges(),
        vec![0x1000..0x3000, 0x5000..0x6000, 0x9000..0xa000]
    );
}

#[test]
fn truncated_last_record_keeps_present_bytes_and_faults_beyond_with_the_address() {
    // Why: an interrupted acquisition is still evidence; the part written must stay readable.
    let mut f = file(&[record(0x1000, 0x1000, 0), record(0x8000, 0x2000, 0)]);
    f.truncate(f.len() - 0x1800);
    let l = parse(f);
    assert_eq!(l.records(), 2);
    assert!(has_warning(&l, "truncated"), "{:?}", l.warnings());
    assert_eq!(l.phys_ranges(), vec![0x1000..0x2000, 0x8000..0x8800]);
    assert_eq!(read(&l, 0x8000, 0x800).unwrap(), bytes_at(0x8000, 0x800, 0));
    match read(&l, 0x87f0, 0x20) {
        Err(ReadError::Corrupt { paddr, msg }) => {
            assert_eq!(paddr, 0x8800);
            assert!(msg.contains("truncated"), "{msg}");
        }
        other => panic!("expected a fault at 0x8800, got {other:?}"),
    }
    // Past what the header claimed: in no record.
    assert_eq!(
        read(&l, 0xa000, 1),
        Err(ReadError::NotInDump { paddr: 0xa000 })
    );
}

#[test]
fn truncated_first_record_is_still_a_snapshot() {
    // Why: only an unusable first header refuses the file; a short first record is data.
    let mut f = record(0x1000, 0x1000, 0);
    f.truncate(32 + 0x10);
    let l = parse(f);
    assert_eq!(l.phys_ranges(), vec![0x1000..0x1010]);
    assert!(matches!(
        read(&l, 0x1010, 1),
        Err(ReadError::Corrupt { paddr: 0x1010, .. })
    ));
}

#[test]
fn header_length_field_never_sizes_an_allocation() {
    // Why: a damaged end address (here 2^48 bytes) must cost nothing but a truncated record.
    let mut f = header(MAGIC_LIME, 1, 0x1000, 0x1000 + (1 << 48) - 1);
    f.extend(bytes_at(0x1000, 100, 0));
    let l = parse(f);
    assert_eq!(l.phys_ranges(), vec![0x1000..0x1064]);
    assert_eq!(read(&l, 0x1000, 100).unwrap(), bytes_at(0x1000, 100, 0));
    assert!(matches!(
        read(&l, 0x1064, 1),
        Err(ReadError::Corrupt { paddr: 0x1064, .. })
    ));
}

#[test]
fn trailing_garbage_is_a_warning_and_every_record_still_reads() {
    // Why: bytes after the last record (a short header, junk) must not cost the records before them.
    for junk in [vec![0x55u8; 10], vec![0xAAu8; 100]] {
        let mut f = file(&[record(0x1000, 0x100, 0), record(0x2000, 0x100, 0)]);
        f.extend(&junk);
        let l = parse(f);
        assert_eq!(l.records(), 2);
        assert!(has_warning(&l, "trailing garbage"), "{:?}", l.warnings());
        assert_eq!(read(&l, 0x2000, 0x100).unwrap(), bytes_at(0x2000, 0x100, 0));
    }
}

#[test]
fn bad_magic_after_the_first_record_stops_the_walk_and_keeps_earlier_records() {
    // Why: after a damaged header the positions of later records are unknowable; what came before stays.
    let mut bad = record(0x3000, 0x100, 0);
    bad[0] ^= 0xff;
    let mut wrong_version = record(0x5000, 0x100, 0);
    wrong_version[4] = 2; // LiME magic with AVML's version
    for damaged in [bad, wrong_version] {
        let f = file(&[record(0x1000, 0x100, 0), damaged, record(0x4000, 0x100, 0)]);
        let l = parse(f);
        assert_eq!(l.records(), 1);
        assert!(has_warning(&l, "not a record header"), "{:?}", l.warnings());
        assert_eq!(read(&l, 0x1000, 0x100).unwrap(), bytes_at(0x1000, 0x100, 0));
        assert_eq!(
            read(&l, 0x4000, 1),
            Err(ReadError::NotInDump { paddr: 0x4000 })
        );
    }
}

#[test]
fn records_out_of_order_are_indexed_by_address() {
    // Why: nothing in the format orders records; the index must not assume it.
    let l = parse(file(&[
        record(0x5000, 0x1000, 0),
        record(0x3000, 0x1000, 0),
        record(0x1000, 0x2000, 0),
    ]));
    assert!(
        has_warning(&l, "not in address order"),
        "{:?}",
        l.warnings()
    );
    assert_eq!(l.phys_ranges(), vec![0x1000..0x4000, 0x5000..0x6000]);
    assert_eq!(
        read(&l, 0x1000, 0x3000).unwrap(),
        bytes_at(0x1000, 0x3000, 0)
    );
}

#[test]
fn overlapping_records_later_record_wins_where_they_overlap() {
    // Why: like makedumpfile -R, data written later replaces earlier data; both sides of it stay readable.
    let l = parse(file(&[
        record(0x1000, 0x4000, 0),    // 0x1000..0x5000, salt 0
        record(0x2000, 0x1000, 0x5a), // inside it
        record(0x4800, 0x1000, 0xa5), // over its end
    ]));
    assert!(has_warning(&l, "overlaps"), "{:?}", l.warnings());
    assert!(has_warning(&l, "later"), "{:?}", l.warnings());
    assert_eq!(l.phys_ranges(), vec![0x1000..0x5800]);
    let got = read(&l, 0x1000, 0x4800).unwrap();
    let mut want = bytes_at(0x1000, 0x1000, 0);
    want.extend(bytes_at(0x2000, 0x1000, 0x5a));
    want.extend(bytes_at(0x3000, 0x1800, 0));
    want.extend(bytes_at(0x4800, 0x1000, 0xa5));
    assert_eq!(got, want);
}

#[test]
fn zero_length_record_is_skipped_and_the_next_record_read() {
    // Why: end = start − 1 describes no bytes; the next header follows its own header directly.
    let f = file(&[
        record(0x1000, 0x100, 0),
        header(MAGIC_LIME, 1, 0x2000, 0x1fff),
        record(0x3000, 0x100, 0),
    ]);
    let l = parse(f);
    assert_eq!(l.records(), 3);
    assert!(has_warning(&l, "zero-length"), "{:?}", l.warnings());
    assert_eq!(l.phys_ranges(), vec![0x1000..0x1100, 0x3000..0x3100]);
    assert_eq!(read(&l, 0x3000, 0x100).unwrap(), bytes_at(0x3000, 0x100, 0));
    assert_eq!(
        read(&l, 0x2000, 1),
        Err(ReadError::NotInDump { paddr: 0x2000 })
    );
}

#[test]
fn inverted_record_holds_nothing_and_the_next_record_is_read() {
    // Why: end < start cannot size data; reading on from right after the header is the only hope.
    let f = file(&[
        header(MAGIC_LIME, 1, 0x9000, 0x1000),
        record(0x3000, 0x100, 0),
    ]);
    let l = parse(f);
    assert_eq!(l.records(), 2);
    assert!(has_warning(&l, "inverted"), "{:?}", l.warnings());
    assert_eq!(l.phys_ranges(), vec![0x3000..0x3100]);
}

#[test]
fn record_ending_at_the_top_of_the_address_space_stops_the_walk() {
    // Why: no exclusive range can hold it, and no machine has memory there: a damaged header.
    let f = file(&[
        record(0x1000, 0x100, 0),
        header(MAGIC_LIME, 1, u64::MAX - 0xff, u64::MAX),
    ]);
    let l = parse(f);
    assert_eq!(l.records(), 1);
    assert!(
        has_warning(&l, "top of the 64-bit space"),
        "{:?}",
        l.warnings()
    );
    assert_eq!(
        read(&l, u64::MAX - 1, 2),
        Err(ReadError::NotInDump {
            paddr: u64::MAX - 1
        })
    );
}

#[test]
fn nonzero_reserved_field_is_warned_once_and_read() {
    // Why: LiME and AVML write zeros there; other values hint at damage but do not stop reading.
    let mut a = record(0x1000, 0x10, 0);
    a[24] = 1;
    let mut b = record(0x2000, 0x10, 0);
    b[31] = 1;
    let l = parse(file(&[a, b]));
    assert_eq!(
        l.warnings()
            .iter()
            .filter(|w| w.contains("reserved"))
            .count(),
        1
    );
    assert_eq!(read(&l, 0x2000, 0x10).unwrap(), bytes_at(0x2000, 0x10, 0));
}

#[test]
fn file_whose_first_header_is_not_lime_or_avml_is_a_header_error() {
    // Why: content, not a name, decides the format; anything else is refused at offset 0.
    let mut big_endian = header(MAGIC_LIME.swap_bytes(), 1u32.swap_bytes(), 0, 0xfff);
    big_endian.extend([0u8; 0x1000]);
    for (f, needle) in [
        (vec![], "fewer than"),
        (header(MAGIC_LIME, 1, 0, 0)[..31].to_vec(), "fewer than"),
        (vec![0x7f; 64], "neither"),
        (big_endian, "big-endian"),
        (header(MAGIC_AVML, 1, 0, 0), "neither"),
    ] {
        let err = Lime::parse(f).expect_err("not a snapshot");
        assert_eq!(err.offset, 0);
        assert!(err.msg.contains(needle), "{err}");
    }
}

#[test]
fn recognise_tells_lime_from_avml_by_the_first_header() {
    // Why: callers pick a reader from the first bytes before mapping the whole file.
    assert_eq!(
        recognise(&header(MAGIC_LIME, 1, 0, 0xfff)),
        Some(LimeFormat::Lime)
    );
    assert_eq!(
        recognise(&header(MAGIC_AVML, 2, 0, 0xfff)),
        Some(LimeFormat::Avml)
    );
    assert_eq!(recognise(&header(MAGIC_AVML, 1, 0, 0xfff)), None);
    assert_eq!(recognise(&header(MAGIC_LIME, 2, 0, 0xfff)), None);
    assert_eq!(recognise(b"\x7fELF\x02\x01\x01"), None);
    assert_eq!(recognise(&header(MAGIC_LIME, 1, 0, 0xfff)[..16]), None);
    assert_eq!(LimeFormat::Avml.name(), "avml (snappy)");
}

#[test]
fn read_larger_than_max_read_fails_too_large() {
    // Why: one read is bounded whatever the caller asks.
    let l = parse(record(0, 0x100, 0));
    let mut buf = vec![0u8; MAX_READ + 1];
    assert_eq!(
        l.read_phys(0, &mut buf),
        Err(ReadError::TooLarge {
            addr: 0,
            len: MAX_READ + 1
        })
    );
}

#[test]
fn empty_read_touches_nothing_and_succeeds() {
    // Why: a zero-byte read names no byte that could be missing.
    let l = parse(record(0x1000, 0x100, 0));
    assert_eq!(read(&l, 0xdead_0000, 0), Ok(vec![]));
}

#[test]
fn read_near_the_top_of_the_address_space_fails_without_overflow() {
    // Why: address arithmetic is checked; the fault names the first address asked for.
    let l = parse(record(0x1000, 0x100, 0));
    assert_eq!(
        read(&l, u64::MAX - 1, 4),
        Err(ReadError::NotInDump {
            paddr: u64::MAX - 1
        })
    );
}

#[test]
fn many_small_records_index_grows_with_the_records_present() {
    // Why: the index is bounded by the file: one entry per record actually there.
    let recs: Vec<Vec<u8>> = (0..1000u64).map(|i| record(i * 0x20, 0x10, 0)).collect();
    let l = parse(file(&recs));
    assert_eq!(l.records(), 1000);
    assert_eq!(l.phys_ranges().len(), 1000);
    assert_eq!(
        read(&l, 999 * 0x20, 0x10).unwrap(),
        bytes_at(999 * 0x20, 0x10, 0)
    );
}

#[test]
fn warnings_are_capped_with_a_count_of_the_rest() {
    // Why: a hostile file must not grow the warning list without bound.
    let recs: Vec<Vec<u8>> = (0..200u8).map(|i| record(0x1000, 0x10, i)).collect();
    let l = parse(file(&recs));
    assert_eq!(l.warnings().len(), MAX_WARNINGS + 1);
    assert!(
        l.warnings().last().unwrap().contains("more warnings"),
        "{:?}",
        l.warnings().last()
    );
    // The last record written wins.
    assert_eq!(read(&l, 0x1000, 0x10).unwrap(), bytes_at(0x1000, 0x10, 199));
}
