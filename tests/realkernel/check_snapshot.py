#!/usr/bin/env python3
"""`synq --core` on a real memory snapshot (LiME, AVML, raw) of a test guest, against that guest's ground truth
(stdlib only).

Usage: check_snapshot.py OUTDIR SNAPSHOT              read SNAPSHOT, run synq on it, record, judge
       check_snapshot.py --selftest OUTDIR SNAPSHOT   negative control on the recorded run (no synq run)

OUTDIR is what snapshot.sh made for one kernel (target/realkernel/snapshot-<id>): results/ (what the guest sent:
mode "snapshot", release, cpu-la57, mptcp/, basic/ns*/..., side/{btf,kallsyms}, vmcoreinfo-kcore,
sys-vmcoreinfo, iomem, snapshots/<kind>/{bytes,seconds,verdict,state-after,copy.out,tool.*,meminfo-*}) and
host.txt (cpu, timings). SNAPSHOT is OUTDIR's kernel's snapshot.<kind>, kind one of
  avml-lime        avml acquire --source /proc/kcore              LiME records (version 1), <= 16 MiB each
  avml-compressed  avml acquire --source /proc/kcore --compress   AVML v2 records: Snappy framing stream + u64
  lime             insmod lime.ko format=lime                     LiME records, one per System RAM range
  lime-padded      insmod lime.ko format=padded                   raw: file offset = physical address

The run (recorded in OUTDIR/core-<basename of SNAPSHOT>/):
  * the snapshot read here, independently of synq -> facts.txt, records.txt, vmcoreinfo.txt: the 32-byte
    record headers (magic 0x4C694D45 "EMiL" with version 1 = raw data follows; 0x4C4D5641 "AVML" with version 2
    = a Snappy framing-format stream follows, then its byte length as u64 LE; start and end inclusive physical
    addresses), every stream chunk's header walked (no index exists), and the VMCOREINFO ELF note at the
    physical address the guest's /sys/kernel/vmcoreinfo names ("%lx %x"), decoded from whichever record holds
    it (Snappy chunks decoded here, their masked CRC-32C checked); for the raw image, the bytes at that offset
    and every byte outside the guest's System RAM;
  * the side-file decision, as check_dump.py's: a snapshot whose VMCOREINFO names the kallsyms tables
    (SYMBOL(kallsyms_names), 6.0+) gets none; otherwise (5.10) --btf results/side/btf --kallsyms
    results/side/kallsyms;
  * ${SYNQ_BIN:-target/release/synq} --core SNAPSHOT --json [--raw] [side files], ... --total, and
    synq info --core SNAPSHOT --json [--raw] -> synq-{json,total,info}.{argv,out,err,rc} (--raw: lime-padded);
  * a fingerprint of SNAPSHOT before and after synq ran (size, mtime, ctime, mode, inode, sha256).

The judgement (every item a failure, never a skip):
  * the guest: status OK, mode snapshot; the snapshot's writer and synq-snapcopy exited 0; the ground truth
    (check_dump.py's rules: fixture vs /proc, sanity floors, MPTCP) re-read right after this snapshot equal to
    the one taken before (the snapshot is not atomic: the listeners must hold still); the guest's page cache
    (Buffers, sampled 4 times a second while the image was written) did not grow by more than an eighth of the
    image (it went to disk with O_DIRECT);
  * the snapshot: its size is the byte count the guest wrote; its records are what its kind writes (version,
    magic), walk to the end of the file exactly, do not overlap, rise, and each lies inside a "System RAM"
    range of the guest's /proc/iomem; LiME's format=lime: exactly one record per top-level System RAM range;
    AVML v2: every decoded chunk's CRC-32C right, streams' trailers = their lengths, decompressed lengths =
    the records' ranges; raw: size = end of the last System RAM range + 1 and every byte outside System RAM
    zero; the VMCOREINFO note at /sys/kernel/vmcoreinfo's address: present, OSRELEASE = the guest's uname -r,
    every line equal to the guest's /proc/kcore copy, 5-level paging as booted, kallsyms tables on >= 6.0;
  * side files as check_dump.py;
  * synq as check_dump.py for dumps (exit 0, no warnings, kernel.release, per key listeners / SYN / accept,
    totals, kind, max_backlog = ss -ltn Send-Q, syn_young bounds, --total);
  * synq info: exit 0, a JSON object whose "vmcoreinfo_paddr" (hex string "0x...") is the physical address
    in the guest's /sys/kernel/vmcoreinfo and whose "vmcoreinfo_candidates" is an integer (printed);
  * the snapshot unchanged by synq.
Exit status 0 only if everything holds. The last line says which parts failed.
"""
import contextlib
import io
import json
import os
import re
import shutil
import struct
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import check  # noqa: E402  (check.py: the ground-truth rules of the live test)
import check_dump  # noqa: E402  (check_dump.py: the same judgement for crash dumps)

LIME_MAGIC = 0x4C694D45
AVML_MAGIC = 0x4C4D5641
KINDS = {
    # kind: (file format, record version, what writes it)
    "avml-lime": ("lime", 1, "avml acquire --source /proc/kcore"),
    "avml-compressed": ("lime", 2, "avml acquire --source /proc/kcore --compress"),
    "lime": ("lime", 1, "insmod lime.ko format=lime"),
    "lime-padded": ("raw", None, "insmod lime.ko format=padded"),
}
AVML_MAX_BLOCK = 16 << 20
MAX_RECORDS = 1_000_000
MAX_CHUNKS = 10_000_000
SNAPPY_STREAM_ID = b"sNaPpY"
# Part of a failure's "where" -> the part of the check it belongs to (the summary line).
PARTS = (("synq info", "synq"), ("synq", "synq"), ("ground truth", "ground truth"), ("guest", "guest"),
         ("side files", "side files"), ("read-only", "read-only"), ("snapshot", "snapshot facts"))


USAGE_NOTE = "this synq does not take a snapshot's command line yet (--core on LiME/AVML/raw, --raw, info --core)"


class SnapshotError(Exception):
    pass


# ---------------------------------------------------------------------------------------------------------
# Snappy (framing format and raw blocks) and CRC-32C, for the AVML v2 records.

def _crc32c_table():
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        t.append(c)
    return t


CRC32C_TABLE = _crc32c_table()


def crc32c(data):
    c = 0xFFFFFFFF
    t = CRC32C_TABLE
    for b in data:
        c = t[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def masked_crc32c(data):
    c = crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def varint(data, pos):
    v = shift = 0
    for _ in range(5):
        if pos >= len(data):
            raise SnapshotError("truncated varint")
        b = data[pos]
        pos += 1
        v |= (b & 0x7F) << shift
        if b < 0x80:
            return v, pos
        shift += 7
    raise SnapshotError("varint longer than 5 bytes")


def snappy_raw_decompress(data):
    """One Snappy raw block: varint uncompressed length, then literals and back-references."""
    ulen, pos = varint(data, 0)
    out = bytearray()
    n = len(data)
    while pos < n:
        tag = data[pos]
        pos += 1
        kind = tag & 3
        if kind == 0:
            ln = tag >> 2
            if ln >= 60:
                nb = ln - 59
                ln = int.from_bytes(data[pos:pos + nb], "little")
                pos += nb
            ln += 1
            if pos + ln > n:
                raise SnapshotError("snappy literal runs past the block")
            out += data[pos:pos + ln]
            pos += ln
            continue
        if kind == 1:
            ln = 4 + ((tag >> 2) & 7)
            off = ((tag >> 5) << 8) | data[pos]
            pos += 1
        elif kind == 2:
            ln = 1 + (tag >> 2)
            off = int.from_bytes(data[pos:pos + 2], "little")
            pos += 2
        else:
            ln = 1 + (tag >> 2)
            off = int.from_bytes(data[pos:pos + 4], "little")
            pos += 4
        if off == 0 or off > len(out):
            raise SnapshotError(f"snappy copy offset {off} outside the {len(out)} bytes decoded so far")
        start = len(out) - off
        if off >= ln:
            out += out[start:start + ln]
        else:  # overlapping copy: the last `off` bytes repeated
            pat = bytes(out[start:])
            out += (pat * (ln // off + 1))[:ln]
        if len(out) > ulen:
            raise SnapshotError(f"snappy block decodes past its declared {ulen} bytes")
    if len(out) != ulen:
        raise SnapshotError(f"snappy block decoded to {len(out)} bytes, declared {ulen}")
    return bytes(out)


def walk_snappy_stream(f, off, want, file_size):
    """Walks one Snappy framing-format stream starting at file offset `off` until it has produced `want`
    decompressed bytes. Returns (chunks, stream_len): chunks as (uncompressed offset, uncompressed length,
    file offset of the chunk's data, data length, type)."""
    chunks = []
    pos = off
    produced = 0
    first = True
    while produced < want:
        if len(chunks) > MAX_CHUNKS:
            raise SnapshotError("too many Snappy chunks")
        if pos + 4 > file_size:
            raise SnapshotError(f"Snappy stream at {off:#x} truncated at {pos:#x} ({produced} of {want} bytes)")
        f.seek(pos)
        h = f.read(4)
        ctype = h[0]
        clen = h[1] | h[2] << 8 | h[3] << 16
        data_off = pos + 4
        if data_off + clen > file_size:
            raise SnapshotError(f"Snappy chunk at {pos:#x} (type {ctype:#x}, {clen} bytes) runs past the file")
        if first and ctype != 0xFF:
            raise SnapshotError(f"Snappy stream at {off:#x} does not start with a stream identifier (type {ctype:#x})")
        first = False
        if ctype == 0xFF:
            if clen != 6 or f.read(6) != SNAPPY_STREAM_ID:
                raise SnapshotError(f"bad Snappy stream identifier at {pos:#x}")
        elif ctype in (0x00, 0x01):
            if clen < 4:
                raise SnapshotError(f"Snappy chunk at {pos:#x} shorter than its CRC")
            if ctype == 0x00:
                ulen, _ = varint(f.read(min(clen, 4 + 5)), 4)
            else:
                ulen = clen - 4
            if ulen > 65536:
                raise SnapshotError(f"Snappy chunk at {pos:#x} holds {ulen} bytes (> 65536)")
            chunks.append((produced, ulen, data_off, clen, ctype))
            produced += ulen
        elif 0x02 <= ctype <= 0x7F:
            raise SnapshotError(f"reserved unskippable Snappy chunk type {ctype:#x} at {pos:#x}")
        # 0x80..0xfe: padding / skippable
        pos = data_off + clen
    if produced != want:
        raise SnapshotError(f"Snappy stream at {off:#x} decodes to {produced} bytes, the record says {want}")
    return chunks, pos - off


def chunk_bytes(f, chunk):
    """(decompressed bytes, CRC right?) of one chunk."""
    _, ulen, data_off, clen, ctype = chunk
    f.seek(data_off)
    raw = f.read(clen)
    crc, = struct.unpack_from("<I", raw, 0)
    data = snappy_raw_decompress(raw[4:]) if ctype == 0x00 else raw[4:]
    if len(data) != ulen:
        raise SnapshotError(f"chunk at {data_off:#x}: {len(data)} bytes, expected {ulen}")
    return data, masked_crc32c(data) == crc


# ---------------------------------------------------------------------------------------------------------
# The snapshot, read independently of synq.

def read_records(f, size):
    """LiME / AVML records: dicts with version, magic, start, end (inclusive), hdr (file offset), data (file
    offset of the data or stream), flen (bytes in the file after the header), chunks (v2)."""
    recs = []
    pos = 0
    while pos < size:
        if len(recs) >= MAX_RECORDS:
            raise SnapshotError(f"more than {MAX_RECORDS} records")
        if pos + 32 > size:
            raise SnapshotError(f"{size - pos} stray bytes at {pos:#x}, too few for a record header")
        f.seek(pos)
        magic, version, start, end, reserved = struct.unpack("<IIQQQ", f.read(32))
        if (magic, version) not in ((LIME_MAGIC, 1), (AVML_MAGIC, 2)):
            raise SnapshotError(f"record header at {pos:#x}: magic {magic:#x} version {version} (want "
                                f"{LIME_MAGIC:#x}/1 or {AVML_MAGIC:#x}/2)")
        if end < start:
            raise SnapshotError(f"record at {pos:#x}: end {end:#x} < start {start:#x}")
        rlen = end - start + 1
        r = {"version": version, "magic": magic, "start": start, "end": end, "hdr": pos, "data": pos + 32,
             "reserved": reserved}
        if version == 1:
            if pos + 32 + rlen > size:
                raise SnapshotError(f"record at {pos:#x} ({start:#x}-{end:#x}) runs past the end of the file")
            r["flen"] = rlen
            pos += 32 + rlen
        else:
            chunks, slen = walk_snappy_stream(f, pos + 32, rlen, size)
            if pos + 32 + slen + 8 > size:
                raise SnapshotError(f"record at {pos:#x}: no room for the stream-length trailer")
            f.seek(pos + 32 + slen)
            trailer, = struct.unpack("<Q", f.read(8))
            if trailer != slen:
                raise SnapshotError(f"record at {pos:#x}: trailer says {trailer} stream bytes, the stream has {slen}")
            r["flen"] = slen + 8
            r["chunks"] = chunks
            pos += 32 + slen + 8
        recs.append(r)
    return recs


def read_phys(f, recs, paddr, n, crc_log):
    """n bytes at physical address paddr from the records (one record must hold them all)."""
    for r in recs:
        if r["start"] <= paddr and paddr + n - 1 <= r["end"]:
            rel = paddr - r["start"]
            if r["version"] == 1:
                f.seek(r["data"] + rel)
                return f.read(n)
            out = bytearray()
            for c in r["chunks"]:
                if c[0] + c[1] <= rel or c[0] >= rel + n:
                    continue
                data, ok = chunk_bytes(f, c)
                crc_log.append(ok)
                lo = max(rel, c[0]) - c[0]
                hi = min(rel + n, c[0] + c[1]) - c[0]
                out += data[lo:hi]
            return bytes(out)
    raise SnapshotError(f"no record holds {paddr:#x}+{n:#x}")


def parse_note(data):
    """An ELF note: (name, type, desc)."""
    if len(data) < 12:
        raise SnapshotError("note shorter than its header")
    namesz, descsz, ntype = struct.unpack_from("<III", data, 0)
    if namesz > 64 or 12 + ((namesz + 3) & ~3) + descsz > len(data):
        raise SnapshotError(f"note header namesz {namesz} descsz {descsz} does not fit {len(data)} bytes")
    name = data[12:12 + namesz].rstrip(b"\0").decode(errors="replace")
    dpos = 12 + ((namesz + 3) & ~3)
    return name, ntype, data[dpos:dpos + descsz]


def parse_iomem(text):
    """[(start, end, depth)] of the "System RAM" lines of /proc/iomem (depth 0: top level)."""
    out = []
    for line in (text or "").splitlines():
        m = re.match(r"^( *)([0-9a-fA-F]+)-([0-9a-fA-F]+) : System RAM$", line)
        if m:
            out.append((int(m.group(2), 16), int(m.group(3), 16), len(m.group(1)) // 2))
    return out


def parse_sys_vmcoreinfo(text):
    """/sys/kernel/vmcoreinfo: "%lx %x" = physical address and size of the note."""
    p = (text or "").split()
    if len(p) != 2:
        raise ValueError(f"/sys/kernel/vmcoreinfo reads {text!r}, want '<paddr hex> <size hex>'")
    return int(p[0], 16), int(p[1], 16)


def kind_of(snapshot):
    base = os.path.basename(snapshot)
    k = base.split(".", 1)[1] if base.startswith("snapshot.") else ""
    if k not in KINDS:
        raise ValueError(f"{snapshot}: the name must be snapshot.<kind>, kind one of {', '.join(KINDS)}")
    return k


def snapshot_facts(path, kind, results):
    """Reads the snapshot; returns (facts dict, records list, VMCOREINFO text or None)."""
    fmt = KINDS[kind][0]
    facts = {"kind": kind, "format": fmt}
    size = os.path.getsize(path)
    facts["size"] = size
    ram = parse_iomem(check.read_text(os.path.join(results, "iomem")))
    paddr, vsize = parse_sys_vmcoreinfo(check.read_text(os.path.join(results, "sys-vmcoreinfo")))
    facts["vmcoreinfo_paddr"] = f"{paddr:#x}"
    facts["vmcoreinfo_size"] = vsize
    recs = []
    crc_log = []
    with open(path, "rb") as f:
        if fmt == "lime":
            recs = read_records(f, size)
            facts["records"] = len(recs)
            facts["versions"] = ",".join(sorted({str(r["version"]) for r in recs}))
            facts["data_bytes"] = sum(r["end"] - r["start"] + 1 for r in recs)
            facts["max_record_bytes"] = max((r["end"] - r["start"] + 1 for r in recs), default=0)
            facts["nonzero_reserved"] = sum(1 for r in recs if r["reserved"])
            if any(r["version"] == 2 for r in recs):
                facts["chunks"] = sum(len(r.get("chunks", ())) for r in recs)
                facts["stream_bytes"] = sum(r["flen"] - 8 for r in recs if r["version"] == 2)
                # One chunk per record is decoded and CRC-checked beyond the note's: the first (cheap, and it
                # tests the decoder on every stream).
                for r in recs:
                    if r["version"] == 2 and r["chunks"]:
                        _, ok = chunk_bytes(f, r["chunks"][0])
                        crc_log.append(ok)
            raw_note = read_phys(f, recs, paddr, vsize, crc_log)
        else:
            top = [(s, e) for s, e, d in ram if d == 0]
            facts["ram_end"] = f"{max((e for _, e in top), default=-1):#x}"
            # Every byte outside System RAM (below the end of the file) must be zero: offset = address.
            nonzero = checked = 0
            pos = 0
            for s, e in sorted(top) + [(size, size)]:
                hole_end = min(s, size)
                while pos < hole_end:
                    f.seek(pos)
                    b = f.read(min(hole_end - pos, 1 << 20))
                    if not b:
                        break
                    checked += len(b)
                    nonzero += len(b) - b.count(0)
                    pos += len(b)
                pos = max(pos, e + 1)
            facts["outside_ram_bytes_checked"] = checked
            facts["nonzero_outside_ram"] = nonzero
            f.seek(paddr)
            raw_note = f.read(vsize)
            if len(raw_note) != vsize:
                raise SnapshotError(f"the raw image ends before the VMCOREINFO note at {paddr:#x}")
    if crc_log:
        facts["crc_checked"] = len(crc_log)
        facts["crc_bad"] = crc_log.count(False)
    name, ntype, desc = parse_note(raw_note)
    facts["note_name"] = name
    facts["note_type"] = ntype
    facts["note_descsz"] = len(desc)
    text = desc.rstrip(b"\0").decode(errors="replace") if name == "VMCOREINFO" else None
    return facts, recs, text


# ---------------------------------------------------------------------------------------------------------
# Recording a run.

def record(outdir, snapshot):
    kind = kind_of(snapshot)
    rd = check_dump.run_dir_of(outdir, snapshot)
    shutil.rmtree(rd, ignore_errors=True)
    os.makedirs(rd)
    results = os.path.join(outdir, "results")
    check_dump.write(os.path.join(rd, "snapshot-path"), os.path.abspath(snapshot) + "\n")
    try:
        facts, recs, vmcoreinfo = snapshot_facts(snapshot, kind, results)
    except (SnapshotError, OSError, ValueError, struct.error) as e:
        facts, recs, vmcoreinfo = {"kind": kind, "format": "unreadable", "error": str(e)}, [], None
    check_dump.write(os.path.join(rd, "facts.txt"), "".join(f"{k}={v}\n" for k, v in facts.items()))
    check_dump.write(os.path.join(rd, "records.txt"), "".join(
        f"{r['version']} {r['start']:#x} {r['end']:#x} {r['hdr']:#x} {r['flen']}\n" for r in recs))
    if vmcoreinfo is not None:
        check_dump.write(os.path.join(rd, "vmcoreinfo.txt"),
                         vmcoreinfo if vmcoreinfo.endswith("\n") else vmcoreinfo + "\n")
    # Side files, as check_dump.py decides for dumps: by the image's VMCOREINFO (here the note found in the
    # snapshot; if that could not be read, the guest's kcore copy of the same text).
    vi = check_dump.vmcoreinfo_dict(vmcoreinfo) or check_dump.vmcoreinfo_dict(
        check.read_text(os.path.join(results, "vmcoreinfo-kcore")))
    side = [] if "SYMBOL(kallsyms_names)" in vi else [
        "--btf", os.path.join(results, "side", "btf"), "--kallsyms", os.path.join(results, "side", "kallsyms")]
    raw = ["--raw"] if KINDS[kind][0] == "raw" else []
    snap = os.path.abspath(snapshot)
    fp = check_dump.fingerprint(snapshot)
    check_dump.write(os.path.join(rd, "fingerprint.before"), json.dumps(fp, indent=1) + "\n")
    bin_ = check_dump.synq_bin()
    check_dump.run_recorded(rd, "synq-json", [bin_, "--core", snap, "--json", "--requests"] + raw + side)
    check_dump.run_recorded(rd, "synq-total", [bin_, "--core", snap, "--total"] + raw + side)
    check_dump.run_recorded(rd, "synq-info", [bin_, "info", "--core", snap, "--json"] + raw)
    check_dump.write(os.path.join(rd, "fingerprint.after"),
                     json.dumps(check_dump.fingerprint(snapshot), indent=1) + "\n")
    return rd


# ---------------------------------------------------------------------------------------------------------
# The judgement, from recorded files only.

def judge(outdir, rd):
    """Returns (failures, summary, release)."""
    fails = check.Failures()
    results = os.path.join(outdir, "results")
    host = check_dump.read_kv(os.path.join(outdir, "host.txt"))
    facts = check_dump.read_kv(os.path.join(rd, "facts.txt"))
    kind = facts.get("kind", "?")
    status = (check.read_text(os.path.join(results, "status")) or "").strip()
    release = (check.read_text(os.path.join(results, "release")) or "").strip()
    mode = (check.read_text(os.path.join(results, "mode")) or "").strip()
    where = f"[{release}] {kind}"
    wg = where + " guest"
    if status != "OK":
        fails.add(wg, f"guest status is {status or 'missing'!r}")
    if mode != "snapshot":
        fails.add(wg, f"guest mode {mode or 'missing'!r}, want 'snapshot'")
    if not release:
        fails.add(wg, "guest release missing")
    sd = os.path.join(results, "snapshots", kind)
    stable = check_guest_snapshot(sd, kind, fails, wg, where)
    truth, young = check_dump.check_truth(results, release, fails, where, host, stable=stable)
    vi = check_snapshot_facts(results, rd, sd, release, facts, fails, where, host)
    check_dump.check_side_files(results, rd, vi, release, fails, where)
    check_dump.check_fingerprints(rd, fails, where, "snapshot")
    summary = None
    if truth is not None:
        summary = check_dump.check_synq(results, rd, truth, young, release, fails, where, USAGE_NOTE,
                                        live_image=True)
    check_synq_info(results, rd, fails, where)
    return fails, summary, release


def kb(meminfo_text, key):
    m = re.search(rf"^{key}:\s+(\d+) kB", meminfo_text or "", re.M)
    return int(m.group(1)) if m else None


def check_guest_snapshot(sd, kind, fails, w, where):
    """What the guest recorded of taking this snapshot. Returns the stability verdict for check_truth."""
    err = (check.read_text(os.path.join(sd, "error")) or "").strip()
    if err:
        fails.add(w, f"taking the snapshot failed in the guest: {err}")
    for name, what in (("tool.rc", f"the writer ({KINDS.get(kind, ('', '', '?'))[2]})"),
                       ("copy.rc", "synq-snapcopy")):
        rc = (check.read_text(os.path.join(sd, name)) or "").strip()
        if rc != "0":
            fails.add(w, f"{what} exited {rc or 'unrecorded'!r}; its output: "
                      f"{(check.read_text(os.path.join(sd, 'tool.out' if name == 'tool.rc' else 'copy.err')) or '').strip()[-500:]!r}")
    copy_out = check_dump.read_kv(os.path.join(sd, "copy.out"))
    if copy_out.get("direct") != "1":
        fails.add(w, f"synq-snapcopy did not report O_DIRECT writes: {copy_out}")
    before = check.read_text(os.path.join(sd, "meminfo-before"))
    after = check.read_text(os.path.join(sd, "meminfo-after"))
    try:
        nbytes = int((check.read_text(os.path.join(sd, "bytes")) or "").strip())
    except ValueError:
        nbytes = None
        fails.add(w, "the guest recorded no byte count for this snapshot")
    b0, b1, c0, c1 = kb(before, "Buffers"), kb(after, "Buffers"), kb(before, "Cached"), kb(after, "Cached")
    peak = check_dump.read_kv(os.path.join(sd, "buffers-peak"))
    try:
        bmax, samples = int(peak.get("max_kB", "")), int(peak.get("samples", ""))
    except ValueError:
        bmax = samples = None
    if None in (b0, b1, c0, c1, bmax) or nbytes is None or not samples:
        fails.add(w, "the guest's /proc/meminfo around and during the snapshot was not recorded (Buffers, "
                  f"Cached; buffers-peak {peak})")
    else:
        grew = max(bmax - b0, 0) << 10
        print(f"info: {where}: {nbytes} bytes written in {(check.read_text(os.path.join(sd, 'seconds')) or '?').strip()}s "
              f"onto {(check.read_text(os.path.join(sd, 'device')) or '?').strip()}; guest page cache: Buffers "
              f"{b0} kB before, at most {bmax} kB during ({samples} samples), {b1} kB after; Cached {c0} -> {c1} kB")
        # O_DIRECT writes leave nothing of the image in the block device's page cache (Buffers). Sampled while
        # the image is written: a buffered writer's cache is dropped when it closes the device.
        if grew > nbytes // 8:
            fails.add(w, f"the guest's page cache (Buffers) grew by {grew} bytes while a {nbytes}-byte image was "
                      "written: it was not written around the page cache")
    verdict = (check.read_text(os.path.join(sd, "verdict")) or "").strip()
    if verdict == "same":
        return True, ""
    return False, (f"the ground truth re-read right after this snapshot is {verdict or 'unrecorded'!r}, not "
                   f"'same' (the snapshot is not atomic: the listeners must hold still); see {sd}/state-after")


def read_records_txt(path):
    recs = []
    for line in (check.read_text(path) or "").splitlines():
        p = line.split()
        if len(p) == 5:
            recs.append((int(p[0]), int(p[1], 16), int(p[2], 16), int(p[3], 16), int(p[4])))
    return recs


def check_snapshot_facts(results, rd, sd, release, facts, fails, where, host):
    """The snapshot's own structure and its VMCOREINFO note. Returns VMCOREINFO as a dict."""
    w = where + " snapshot"
    kind = facts.get("kind")
    if kind not in KINDS:
        fails.add(w, f"unknown snapshot kind {kind!r}")
        return {}
    fmt, version, writer = KINDS[kind]
    if facts.get("format") != fmt:
        fails.add(w, f"not readable by this checker as {fmt}: {facts.get('error', facts.get('format'))}")
        return {}
    try:
        size = int(facts.get("size", ""))
        nbytes = int((check.read_text(os.path.join(sd, "bytes")) or "").strip())
    except ValueError:
        size = nbytes = None
    if size is None or size != nbytes:
        fails.add(w, f"the file holds {facts.get('size')} bytes, the guest wrote "
                  f"{(check.read_text(os.path.join(sd, 'bytes')) or 'no count').strip()} bytes")
    ram = parse_iomem(check.read_text(os.path.join(results, "iomem")))
    top = sorted((s, e) for s, e, d in ram if d == 0)
    if not top:
        fails.add(w, "the guest's /proc/iomem shows no top-level System RAM range")
    iomem_txt = " ".join(f"{s:#x}-{e:#x}" for s, e in top)
    if fmt == "lime":
        recs = read_records_txt(os.path.join(rd, "records.txt"))
        if str(len(recs)) != facts.get("records"):
            fails.add(w, f"records.txt lists {len(recs)} records, facts say {facts.get('records')}")
        if not recs:
            fails.add(w, "no records")
        bad_v = sorted({v for v, *_ in recs if v != version})
        if bad_v:
            fails.add(w, f"{writer} writes version {version} records; found versions {bad_v}")
        if facts.get("nonzero_reserved", "0") != "0":
            fails.add(w, f"{facts.get('nonzero_reserved')} record headers with a non-zero reserved field")
        prev_end = -1
        outside = []
        for v, s, e, hdr, flen in recs:
            if s <= prev_end:
                fails.add(w, f"records overlap or go back: {s:#x}-{e:#x} at {hdr:#x} after one ending {prev_end:#x}")
            prev_end = max(prev_end, e)
            if not any(rs <= s and e <= re_ for rs, re_, _ in ram):
                outside.append(f"{s:#x}-{e:#x}")
        if outside:
            fails.add(w, f"{len(outside)} records not inside a System RAM range of the guest's /proc/iomem "
                      f"({iomem_txt}): {', '.join(outside[:5])}")
        if kind == "lime":
            got = [(s, e) for _, s, e, _, _ in recs]
            if got != top:
                fails.add(w, "LiME's format=lime writes one record per top-level System RAM range; records "
                          f"{' '.join(f'{s:#x}-{e:#x}' for s, e in got)} vs /proc/iomem {iomem_txt}")
        if version == 2:
            if facts.get("crc_bad") != "0" or facts.get("crc_checked", "0") == "0":
                fails.add(w, f"CRC-32C of the decoded Snappy chunks: {facts.get('crc_bad')} bad of "
                          f"{facts.get('crc_checked')} checked")
        print(f"info: {where}: {writer}: {len(recs)} records (version {facts.get('versions')}), "
              f"{facts.get('data_bytes')} bytes of memory, largest {facts.get('max_record_bytes')}"
              + (f"; {facts.get('chunks')} Snappy chunks in {facts.get('stream_bytes')} stream bytes, "
                 f"{facts.get('crc_checked')} decoded with CRC-32C OK" if version == 2 else "")
              + f"; System RAM {iomem_txt}")
    else:
        ram_end = int(facts.get("ram_end", "-1"), 16)
        if size is not None and top and size != ram_end + 1:
            fails.add(w, f"the raw image is {size} bytes; LiME's format=padded ends at the end of the last System "
                      f"RAM range, {ram_end + 1} bytes")
        if facts.get("nonzero_outside_ram") != "0":
            fails.add(w, f"{facts.get('nonzero_outside_ram')} non-zero bytes outside System RAM (of "
                      f"{facts.get('outside_ram_bytes_checked')} checked): file offset is not the physical address")
        print(f"info: {where}: {writer}: raw image of {size} bytes = System RAM end + 1; "
              f"{facts.get('outside_ram_bytes_checked')} bytes outside System RAM, all zero")
    # The VMCOREINFO note at the address the guest's /sys/kernel/vmcoreinfo names.
    try:
        paddr, _ = parse_sys_vmcoreinfo(check.read_text(os.path.join(results, "sys-vmcoreinfo")))
    except ValueError as e:
        fails.add(w, str(e))
        return {}
    if facts.get("vmcoreinfo_paddr") != f"{paddr:#x}":
        fails.add(w, f"facts read at {facts.get('vmcoreinfo_paddr')}, /sys/kernel/vmcoreinfo says {paddr:#x}")
    text = check.read_text(os.path.join(rd, "vmcoreinfo.txt"))
    if facts.get("note_name") != "VMCOREINFO" or not text:
        fails.add(w, f"no VMCOREINFO note at {paddr:#x} (the address /sys/kernel/vmcoreinfo names): note name "
                  f"{facts.get('note_name')!r}, type {facts.get('note_type')}, {facts.get('note_descsz')} bytes")
        return {}
    vi = check_dump.vmcoreinfo_dict(text)
    print(f"info: {where}: VMCOREINFO note at {paddr:#x} ({facts.get('note_descsz')} bytes): OSRELEASE="
          f"{vi.get('OSRELEASE')} KERNELOFFSET={vi.get('KERNELOFFSET')} NUMBER(pgtable_l5_enabled)="
          f"{vi.get('NUMBER(pgtable_l5_enabled)')} SYMBOL(kallsyms_names) "
          f"{'present' if 'SYMBOL(kallsyms_names)' in vi else 'absent'} ({len(vi)} keys)")
    check_dump.check_vmcoreinfo_facts(results, vi, release, fails, w, where, host, "snapshot")
    return vi


def check_synq_info(results, rd, fails, where):
    w = where + " synq info --core --json"
    base = os.path.join(rd, "synq-info")
    if not check_dump.check_rc(base, "synq info", fails, w, USAGE_NOTE):
        return
    text = check.read_text(base + ".out") or ""
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        fails.add(w, f"output is not JSON ({e}); starts: {text[:300]!r}")
        return
    if not isinstance(doc, dict):
        fails.add(w, f"output is not a JSON object: {type(doc).__name__}")
        return
    try:
        paddr, _ = parse_sys_vmcoreinfo(check.read_text(os.path.join(results, "sys-vmcoreinfo")))
    except ValueError as e:
        fails.add(w, str(e))
        return
    got = doc.get("vmcoreinfo_paddr")
    if not isinstance(got, str) or not re.fullmatch(r"0x[0-9a-fA-F]+", got):
        fails.add(w, f"vmcoreinfo_paddr is {got!r}, want a hex string like \"{paddr:#x}\"")
    elif int(got, 16) != paddr:
        fails.add(w, f"vmcoreinfo_paddr {got} != {paddr:#x}, the address the guest's /sys/kernel/vmcoreinfo names")
    cand = doc.get("vmcoreinfo_candidates")
    if not check.is_int(cand):
        fails.add(w, f"vmcoreinfo_candidates is {cand!r}, want an integer")
    else:
        print(f"info: {where}: synq info: vmcoreinfo_paddr {got}, vmcoreinfo_candidates {cand}")


def parts_of(items):
    counts = {}
    for item in items:
        head = item.split(":", 1)[0]
        part = next((p for key, p in PARTS if key in head), "other")
        counts[part] = counts.get(part, 0) + 1
    return counts


def synq_explanation(rd, kind):
    """A plain reason when synq itself could not read the snapshot (for the summary line)."""
    rc = (check.read_text(os.path.join(rd, "synq-json.rc")) or "").strip()
    err = (check.read_text(os.path.join(rd, "synq-json.err")) or "").strip()
    first = next((l for l in err.splitlines() if l.strip()), "")
    if rc == "0":
        return None
    if "not a crash dump" in err:
        return f"this synq does not read {kind} snapshots ({KINDS[kind][0]} format) yet: {first[:300]}"
    if rc == "64":
        return f"this synq rejects the command line (exit 64, a usage error): {first[:300]}"
    if rc == "127":
        return f"no synq binary ({check_dump.synq_bin()})"
    return f"synq exited {rc}: {first[:300]}"


# ---------------------------------------------------------------------------------------------------------
# Selftest: planted defects in copies of the recorded run must fail.

def synthetic_synq(outdir, rd):
    """Writes into rd the outputs a correct synq would give for this guest (from its ground truth), so that
    the judgement can be tested while the real synq cannot read snapshots yet."""
    results = os.path.join(outdir, "results")
    release = (check.read_text(os.path.join(results, "release")) or "").strip()
    ns_dirs = check_dump.ns_dirs_of(results)
    with contextlib.redirect_stdout(io.StringIO()):
        f = check.Failures()
        young = {}
        truth, total = check.ground_truth(ns_dirs, "", f, "synthetic", young)
        kinds = check.kinds_from_fixture(ns_dirs, f, "synthetic")
    ss = check.ss_backlogs(ns_dirs) or {}
    listeners = []
    for key in sorted(truth, key=check.fmt_key):
        n, syn, acc = truth[key]
        bls = ss.get(key, [0] * n)
        for i in range(n):
            listeners.append({"netns": key[0], "family": key[1], "addr": key[2], "port": key[3],
                              "syn_queue": syn if i == 0 else 0, "syn_young": young.get(key, 0) if i == 0 else 0,
                              "accept_queue": acc if i == 0 else 0, "max_backlog": bls[i] if i < len(bls) else 0,
                              "kind": kinds.get(key)})
    doc = {"kernel": {"release": release, "symbols": "synthetic", "btf": "synthetic"}, "listeners": listeners,
           "totals": {"listeners": len(listeners), "syn_queue": sum(v[1] for v in truth.values()),
                      "accept_queue": sum(v[2] for v in truth.values())}, "warnings": []}
    paddr, _ = parse_sys_vmcoreinfo(check.read_text(os.path.join(results, "sys-vmcoreinfo")))
    outs = {"synq-json": json.dumps(doc), "synq-total": f"{total}\n",
            "synq-info": json.dumps({"vmcoreinfo_paddr": f"{paddr:#x}", "vmcoreinfo_candidates": 1})}
    for name, out in outs.items():
        check_dump.write(os.path.join(rd, name + ".out"), out)
        check_dump.write(os.path.join(rd, name + ".err"), "")
        check_dump.write(os.path.join(rd, name + ".rc"), "0\n")


def _shift_record_out_of_ram(text):
    lines = text.splitlines()
    p = lines[0].split()
    p[1], p[2] = "0x0", "0xfff"  # physical page 0: never System RAM on x86 (BIOS data, reserved)
    lines[0] = " ".join(p)
    return "\n".join(lines) + "\n"


def _duplicate_record(text):
    lines = text.splitlines()
    return "\n".join(lines[:1] + lines) + "\n"


def _drop_last_record(text):
    return "\n".join(text.splitlines()[:-1]) + "\n"


def _grow_buffers(text):
    """buffers-peak: the image's size in kB more (as a buffered writer would show)."""
    return re.sub(r"max_kB=(\d+)", lambda m: f"max_kB={int(m.group(1)) + (1 << 20)}", text)


def _info_paddr_plus_page(doc):
    doc["vmcoreinfo_paddr"] = f"{int(doc['vmcoreinfo_paddr'], 16) + 4096:#x}"


def _info_no_candidates(doc):
    del doc["vmcoreinfo_candidates"]


def _exit2_with_warning(rc_path):
    """Exit 2 with a warning that no snapshot explains (a torn task list's is accepted on live snapshots)."""
    check._write("2\n")(rc_path)
    out = rc_path[:-len(".rc")] + ".out"
    try:
        doc = json.loads(check.read_text(out) or "")
    except json.JSONDecodeError:
        return
    if isinstance(doc, dict):
        doc.setdefault("warnings", []).append("selftest: a page was unreadable")
        with open(out, "w") as f:
            json.dump(doc, f)


def selftest_cases(outdir, rd):
    """name -> (path relative to the copy of OUTDIR, planting function, text a failure must contain)."""
    r = os.path.basename(rd)
    facts = check_dump.read_kv(os.path.join(rd, "facts.txt"))
    kind = facts.get("kind")
    sd = f"results/snapshots/{kind}"
    vi = check_dump.vmcoreinfo_dict(check.read_text(os.path.join(rd, "vmcoreinfo.txt")))
    host = check_dump.read_kv(os.path.join(outdir, "host.txt"))
    mptcp = (check.read_text(os.path.join(outdir, "results", "mptcp", "sysctl")) or "").strip() not in ("", "absent")
    j = f"{r}/synq-json.out"
    jp = check_dump._json_plant
    sl = check_dump._set_line
    cases = {
        "syn_queue +1 on one key": (j, jp(check._bump_syn), "per key"),
        "accept entry moved between keys": (j, jp(check._move_acc), "per key"),
        "one listener dropped (totals adjusted)": (j, jp(check._drop_listener), "per key"),
        "wrong netns on one listener": (j, jp(check._wrong_netns), "per key"),
        "a warning": (j, jp(check._warn), "warnings"),
        "kernel.release wrong": (j, jp(check_dump._release), "kernel.release"),
        "max_backlog +1": (j, jp(check_dump._bump_max_backlog), "max_backlog"),
        "kind field missing": (j, jp(check._kind_missing), "kind"),
        "--total off by one": (f"{r}/synq-total.out", check._bump_total, "--total"),
        "exit code 2 (partial)": (f"{r}/synq-json.rc", _exit2_with_warning, "exit 2"),
        "synq info: vmcoreinfo_paddr one page off": (f"{r}/synq-info.out", jp(_info_paddr_plus_page), "vmcoreinfo_paddr"),
        "synq info: no vmcoreinfo_candidates": (f"{r}/synq-info.out", jp(_info_no_candidates), "vmcoreinfo_candidates"),
        "synq info: exit 1": (f"{r}/synq-info.rc", check._write("1\n"), "synq info"),
        "snapshot bytes changed": (f"{r}/fingerprint.after", jp(check_dump._fp_hash), "read-only"),
        "snapshot mtime changed": (f"{r}/fingerprint.after", jp(check_dump._fp_mtime), "read-only"),
        "OSRELEASE of another kernel": (f"{r}/vmcoreinfo.txt", sl("OSRELEASE", "0.0.0-selftest"), "OSRELEASE"),
        "KERNELOFFSET of another boot": (f"{r}/vmcoreinfo.txt",
                                         sl("KERNELOFFSET", "%x" % (int(vi.get("KERNELOFFSET", "0"), 16) + 0x200000)),
                                         "KERNELOFFSET"),
        "no VMCOREINFO note at the address": (f"{r}/facts.txt", sl("note_name", "CORE"), "VMCOREINFO"),
        "note read at another address": (f"{r}/facts.txt", sl("vmcoreinfo_paddr", "0x1000"), "/sys/kernel/vmcoreinfo"),
        "file size differs from the guest's byte count": (f"{sd}/bytes", check._write(f"{int(facts.get('size', '0')) + 1}\n"),
                                                          "the guest wrote"),
        "state moved after the snapshot": (f"{sd}/verdict", check._write("CHANGED\n"), "hold still"),
        "the writer failed": (f"{sd}/tool.rc", check._write("1\n"), "exited"),
        "page cache grew by the image": (f"{sd}/buffers-peak", check_dump._edit(_grow_buffers), "page cache"),
        "fixture EXPECT differs from /proc": ("results/basic/ns1/expect", check_dump._edit(check_dump._bump_expect),
                                              "scenario as built"),
        "kallsyms side file without addresses": ("results/side/kallsyms", check._write("0000000000000000 T _stext\n"),
                                                 "side files"),
    }
    if "+la57" in host.get("cpu", ""):
        cases["pgtable_l5_enabled=0 on a +la57 boot"] = (f"{r}/vmcoreinfo.txt", sl("NUMBER(pgtable_l5_enabled)", "0"),
                                                         "pgtable_l5_enabled")
    else:
        cases["pgtable_l5_enabled=1 on a -la57 boot"] = (f"{r}/vmcoreinfo.txt", sl("NUMBER(pgtable_l5_enabled)", "1"),
                                                         "pgtable_l5_enabled")
    if "SYMBOL(kallsyms_names)" in vi:
        cases["side file given to a self-describing snapshot"] = (f"{r}/synq-json.argv", check_dump._add_side_file,
                                                                  "side files")
    else:
        cases["no --kallsyms for a snapshot without kallsyms tables"] = (f"{r}/synq-total.argv",
                                                                         check_dump._drop_kallsyms_arg, "side files")
    if mptcp:
        cases["kind null on the MPTCP subflow"] = (j, jp(check._kind_mptcp_to_null), "kind")
    else:
        cases["kind mptcp-subflow on a plain listener"] = (j, jp(check._kind_plain_to_mptcp), "kind")
    if facts.get("format") == "lime":
        rt = f"{r}/records.txt"
        cases["a record outside System RAM"] = (rt, check_dump._edit(_shift_record_out_of_ram), "System RAM")
        cases["records overlap"] = (rt, check_dump._edit(_duplicate_record), "overlap")
        if kind == "lime":
            cases["a System RAM range missing from LiME's records"] = (rt, check_dump._edit(_drop_last_record),
                                                                       "one record per top-level System RAM range")
        if kind == "avml-compressed":
            cases["a Snappy chunk with a bad CRC"] = (f"{r}/facts.txt", sl("crc_bad", "1"), "CRC-32C")
    else:
        cases["a non-zero byte outside System RAM"] = (f"{r}/facts.txt", sl("nonzero_outside_ram", "1"),
                                                       "outside System RAM")
        cases["raw image longer than RAM"] = (f"{r}/facts.txt",
                                              sl("ram_end", f"{int(facts.get('ram_end', '0x0'), 16) - 4096:#x}"),
                                              "end of the last System RAM range")
    return cases


def quiet_judge(outdir, rd):
    with contextlib.redirect_stdout(io.StringIO()):
        return judge(outdir, rd)


def selftest(outdir, snapshot):
    rd = check_dump.run_dir_of(outdir, snapshot)
    if not os.path.isdir(rd):
        print(f"selftest: no recorded run in {rd}; run check_snapshot.py {outdir} {snapshot} first")
        return 1
    with tempfile.TemporaryDirectory() as tmp:
        base = os.path.join(tmp, "base")
        os.makedirs(base)
        shutil.copytree(os.path.join(outdir, "results"), os.path.join(base, "results"))
        shutil.copy(os.path.join(outdir, "host.txt"), os.path.join(base, "host.txt"))
        brd = os.path.join(base, os.path.basename(rd))
        shutil.copytree(rd, brd)
        fails, _, _ = quiet_judge(base, brd)
        synthetic = False
        if fails.items and set(parts_of(fails.items)) == {"synq"}:
            # Only synq failed: test the judgement with what a correct synq would print.
            synthetic_synq(base, brd)
            synthetic = True
            fails, _, _ = quiet_judge(base, brd)
        if fails.items:
            print(f"selftest: the recorded run{' (with synthetic synq outputs)' if synthetic else ''} does not pass "
                  f"to begin with ({len(fails.items)} failures, first: {fails.items[0][:300]}); the planted "
                  "defects cannot be told apart")
            return 1
        cases = selftest_cases(base, brd)
        missed = check_dump.plant_and_judge(base, brd, cases, quiet_judge)
    if missed:
        print(f"selftest: FAILED: planted defects NOT detected: {missed}")
        return 1
    print(f"selftest: OK: all {len(cases)} planted defects detected"
          + (" (synq's outputs synthesized from the ground truth: the recorded synq run fails)" if synthetic else ""))
    return 0


def main():
    args = sys.argv[1:]
    if len(args) == 3 and args[0] == "--selftest":
        return selftest(args[1], args[2])
    if len(args) != 2 or args[0].startswith("-"):
        print(__doc__, file=sys.stderr)
        return 2
    outdir, snapshot = args
    if not os.path.isdir(os.path.join(outdir, "results")):
        print(f"check_snapshot.py: {outdir}/results missing: OUTDIR is snapshot.sh's target/realkernel/snapshot-<id>",
              file=sys.stderr)
        return 2
    if not os.path.isfile(snapshot):
        print(f"check_snapshot.py: {snapshot}: no such snapshot", file=sys.stderr)
        return 2
    try:
        kind_of(snapshot)
    except ValueError as e:
        print(f"check_snapshot.py: {e}", file=sys.stderr)
        return 2
    rd = record(outdir, snapshot)
    fails, summary, release = judge(outdir, rd)
    kind = check_dump.read_kv(os.path.join(rd, "facts.txt")).get("kind", "?")
    parts = parts_of(fails.items)
    for part in ("guest", "ground truth", "snapshot facts", "side files", "read-only", "synq"):
        n = parts.get(part, 0)
        print(f"part: {part}: " + ("OK" if n == 0 else f"FAILED ({n} problem(s))"))
    if fails.items:
        why = synq_explanation(rd, kind) if "synq" in parts else None
        print(f"check: FAILED [{release or '?'}] {kind} {snapshot}: {len(fails.items)} problem(s) in "
              + ", ".join(f"{p} ({n})" for p, n in parts.items()) + (f"; synq: {why}" if why else ""))
        return 1
    print(f"check: OK [{release}] {kind}: synq --core equals the ground truth ({summary}); snapshot facts hold; "
          "snapshot unchanged")
    return 0


if __name__ == "__main__":
    sys.exit(main())
