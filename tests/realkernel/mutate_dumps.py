#!/usr/bin/env python3
"""Mutated real dumps end to end (issue 7, item 3): `synq --core` on many deterministic mutations of a real
kdump-zlib dump (QEMU's flattened form) and a real ELF dump of one test guest (stdlib only).

Usage: mutate_dumps.py [--count N] [--seed S] [--only ID[,ID...]] [--keep] OUTDIR KDUMP ELF
       mutate_dumps.py --list [--count N] [--seed S] [--only ...] OUTDIR KDUMP ELF   (recipes, no synq run)

OUTDIR is what dump.sh made for the kernel (target/realkernel/dump-<id>: results/ with the guest's ground
truth, host.txt); KDUMP and ELF are that boot's two dumps (dump.sh keeps them until this has run).

Mutation ID i of seed S is made from random.Random("synq-mutate:S:i") alone, so `--seed S --only i` remakes
exactly the same file (with --keep it stays next to the dumps as vmcore.mutant-NNNNN). The families take
turns (ID modulo the number of families), so even 100 mutations cover every family:
  kdump: flattened file header; flattened record headers (offset, size, dropped, duplicated, a premature
         end marker); disk_dump_header fields; kdump_sub_header fields; the two bitmaps (bits of the pages
         synq must read, random blocks); page descriptors (offset, size, flags of those pages or random
         ones); compressed page data (zlib streams of those pages); the ELF notes of the note area; the
         VMCOREINFO text; cuts (random and at structural points);
  ELF:   ELF header fields; program header fields; note headers; the VMCOREINFO text; cuts.
"Those pages" are the pages synq cannot do without, found here by reading the intact kdump independently of
synq: the page-table root (swapper_pg_dir) and every page-table page on the way to the others; tcp_hashinfo,
init_uts_ns, the kallsyms tables VMCOREINFO names, the first, a middle and the last page of the BTF
(side/kallsyms' __start_BTF..__stop_BTF), the listening hash's bucket array, each listener socket of the
intact run and the struct net it points to (offsets from `synq layout --core` on the intact dump).

No mutation changes what a page holds through a valid encoding (raw page bytes, the ELF's PT_LOAD data, a
descriptor pointed at another page's data): such a file is a faithful image of some other memory, which no
reader can tell apart. Every mutation here leaves the file inconsistent with what it claims, or leaves the
answer unchanged, so an exit 0 must give the ground truth.

Each mutation is a copy next to the dumps (mode 0400), deleted after its run unless --keep (or
SYNQ_KEEP_DUMPS=1). synq runs as `synq --core COPY --json` plus the side files check_dump.py would pass
(none when the dump's VMCOREINFO names the kallsyms tables, i.e. on 6.x), under /usr/bin/time -f %M (GNU
time's wait4() gives the peak RSS of that one synq process; see run_limited), timed from fork to reaping. A
safety RLIMIT_AS of 4 GiB keeps a runaway allocation from taking the host down (it would abort synq: a
"signal" failure).

Outcomes: "exit 0 equal" (no warning, per key equal to the ground truth, kernel.release the guest's),
"exit 2 with warnings" (valid JSON, at least one warning), "exit 1 refused" (a "synq: " line on stderr,
nothing on stdout). Failures: panic ("panicked" on stderr), signal, timeout (over 10 s), rss (peak over
256 MiB), exit0-wrong (exit 0 with warnings or listeners that differ), exit0-release (exit 0, listeners
right, but kernel.release is not the guest's), exit0-cut (exit 0 on a cut file: a partial answer called
complete), exit2-bad (exit 2 without a warning or without valid JSON), exit1-bad (exit 1 without a "synq: "
message, or with stdout), exit-other (any other status), harness (the mutation could not be made).
--allow CLASS (repeatable; env SYNQ_MUTATE_ALLOW, space-separated) still reports a failure class, line by
line, but does not fail on it: for a known synq bug that another change fixes, so that CI stays usable.
Prints one line per failure (recipe, what was changed, first stderr line) and the summary; writes
OUTDIR/mutate/mutations.tsv (one row per mutation) and OUTDIR/mutate/fail-<ID>.{txt,err}.
Exit status 0 only if the intact dumps pass and no mutation fails in a class not allowed.
"""
import argparse
import bisect
import contextlib
import io
import itertools
import json
import os
import random
import resource
import signal
import struct
import sys
import time
import zlib

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import check  # noqa: E402  (the ground-truth rules of the live test)
import check_dump  # noqa: E402  (the dump checks: truth, VMCOREINFO, side files, synq binary)

LIMIT_S = 10.0
LIMIT_RSS_KIB = 256 * 1024
AS_LIMIT = 4 << 30
POLL_S = 0.002
TIME_BIN = "/usr/bin/time"  # GNU time (Debian package "time"; setup-host.sh installs it)
DEFAULT_COUNT = 1000
DEFAULT_SEED = 1
START_KERNEL_MAP = 0xFFFFFFFF80000000
PAGE = 4096
PTE_ADDR = 0x000FFFFFFFFFF000
POP8 = [bin(i).count("1") for i in range(256)]

OK_CLASSES = ("exit 0 equal", "exit 2 with warnings", "exit 1 refused")
FAIL_CLASSES = ("panic", "signal", "timeout", "rss", "exit0-wrong", "exit0-release", "exit0-cut", "exit2-bad",
                "exit1-bad", "exit-other", "harness")


class MutateError(Exception):
    pass


# ---------------------------------------------------------------------------------------------------------
# The intact dumps, read here (independently of synq).

class Kdump:
    """QEMU's flattened kdump: the stream's records (logical offset, size, file position of the data), the
    reassembled logical file, the headers, bitmaps and page descriptors."""

    def __init__(self, path):
        self.path = path
        self.size = os.path.getsize(path)
        with open(path, "rb") as f:
            raw = f.read()
        if not raw.startswith(b"makedumpfile"):
            raise MutateError(f"{path}: not a flattened kdump (QEMU's kdump-zlib)")
        self.records = []  # (logical offset, size, file position of the data), in stream order
        pos = PAGE
        while True:
            if pos + 16 > len(raw):
                raise MutateError(f"{path}: flattened stream without end marker")
            off, size = struct.unpack_from(">qq", raw, pos)
            if off == -1:
                self.end_marker = pos
                break
            if off < 0 or size < 0 or pos + 16 + size > len(raw):
                raise MutateError(f"{path}: bad flattened record at {pos}")
            self.records.append((off, size, pos + 16))
            pos += 16 + size
        lsize = max(o + s for o, s, _ in self.records)
        self.logical = bytearray(lsize)
        for o, s, p in self.records:
            self.logical[o:o + s] = raw[p:p + s]
        srt = sorted(self.records)
        for (o1, s1, _), (o2, _, _) in zip(srt, srt[1:]):
            if o1 + s1 > o2:
                raise MutateError(f"{path}: overlapping flattened records at {o2}: not QEMU's stream")
        self.sorted = srt
        self.sorted_off = [o for o, _, _ in srt]
        lg = self.logical
        (self.status, self.block_size, self.sub_hdr_size, self.bitmap_blocks,
         self.max_mapnr) = struct.unpack_from("<IiiII", lg, 424)
        bs = self.block_size
        self.sub = bs
        (self.off_vmcoreinfo, self.size_vmcoreinfo, self.off_note, self.size_note) = struct.unpack_from(
            "<qQqQ", lg, bs + 32)
        self.bitmap_off = (1 + self.sub_hdr_size) * bs
        self.half = self.bitmap_blocks * bs // 2
        self.bm1 = bytes(lg[self.bitmap_off:self.bitmap_off + self.half])
        self.bm2 = bytes(lg[self.bitmap_off + self.half:self.bitmap_off + 2 * self.half])
        self.prefix = list(itertools.accumulate((POP8[b] for b in self.bm2), initial=0))
        self.desc_start = self.bitmap_off + self.bitmap_blocks * bs
        self.n_desc = self.prefix[-1]
        self.descs = list(struct.iter_unpack("<qIIQ", bytes(lg[self.desc_start:self.desc_start + 24 * self.n_desc])))
        self.data_offsets = {d[0] for d in self.descs}

    def dumped(self, pfn):
        return pfn >> 3 < len(self.bm2) and (self.bm2[pfn >> 3] >> (pfn & 7)) & 1

    def rank(self, pfn):
        if not self.dumped(pfn):
            return None
        return self.prefix[pfn >> 3] + POP8[self.bm2[pfn >> 3] & ((1 << (pfn & 7)) - 1)]

    def desc_loff(self, pfn):
        r = self.rank(pfn)
        return None if r is None else self.desc_start + 24 * r

    def desc(self, pfn):
        r = self.rank(pfn)
        return None if r is None else self.descs[r]

    def page(self, pfn):
        d = self.desc(pfn)
        if d is None:
            return None
        off, size, flags, _ = d
        data = bytes(self.logical[off:off + size])
        if flags & 1:
            return zlib.decompress(data)
        if flags == 0 and size == PAGE:
            return data
        raise MutateError(f"pfn {pfn:#x}: descriptor flags {flags:#x} (this reader knows zlib and raw)")

    def read_phys(self, pa, n):
        out = b""
        while n > 0:
            p = self.page(pa >> 12)
            if p is None:
                raise MutateError(f"physical {pa:#x} is not in the dump")
            k = min(n, PAGE - (pa & 0xFFF))
            out += p[pa & 0xFFF:(pa & 0xFFF) + k]
            pa += k
            n -= k
        return out

    def spans(self, loff, n):
        """Where the logical bytes [loff, loff + n) lie in the file: [(file position, start, end)] with
        start..end indices into those n bytes. Bytes in no record (gaps) are left out."""
        out = []
        i = max(bisect.bisect_right(self.sorted_off, loff) - 1, 0)
        while i < len(self.sorted) and self.sorted[i][0] < loff + n:
            o, s, p = self.sorted[i]
            lo, hi = max(loff, o), min(loff + n, o + s)
            if lo < hi:
                out.append((p + lo - o, lo - loff, hi - loff))
            i += 1
        return out

    def logical_patch(self, loff, data):
        """File patches [(position, bytes)] writing data at logical loff (through the records)."""
        return [(p, data[a:b]) for p, a, b in self.spans(loff, len(data))]

    def record_index_at(self, loff):
        """Index (in stream order) of the record holding logical offset loff, or None."""
        for i, (o, s, _) in enumerate(self.records):
            if o <= loff < o + s:
                return i
        return None


class Elf:
    def __init__(self, path):
        self.path = path
        self.size = os.path.getsize(path)
        with open(path, "rb") as f:
            head = f.read(1 << 20)
        if not head.startswith(b"\x7fELF") or head[4] != 2 or head[5] != 1:
            raise MutateError(f"{path}: not an ELF64 LE file")
        self.phoff, = struct.unpack_from("<Q", head, 32)
        self.phnum, = struct.unpack_from("<H", head, 56)
        self.phdrs = [struct.unpack_from("<IIQQQQQQ", head, self.phoff + 56 * i) for i in range(self.phnum)]
        self.notes = []  # (header position, namesz, descsz, type, name, desc position)
        self.vmcoreinfo = None  # (position, length) of the VMCOREINFO text
        for ptype, _, off, _, _, filesz, _, _ in self.phdrs:
            if ptype != 4:
                continue
            pos, end = off, off + filesz
            while pos + 12 <= end:
                namesz, descsz, ntype = struct.unpack_from("<III", head, pos)
                name = head[pos + 12:pos + 12 + namesz].rstrip(b"\0")
                dpos = pos + 12 + ((namesz + 3) & ~3)
                self.notes.append((pos, namesz, descsz, ntype, name, dpos))
                if name == b"VMCOREINFO":
                    self.vmcoreinfo = (dpos, len(head[dpos:dpos + descsz].rstrip(b"\0")))
                pos = dpos + ((descsz + 3) & ~3)

    def file_offset(self, pa):
        for ptype, _, off, _, paddr, filesz, _, _ in self.phdrs:
            if ptype == 1 and paddr <= pa < paddr + filesz:
                return off + pa - paddr
        return None


# ---------------------------------------------------------------------------------------------------------
# The pages synq cannot do without.

def walk(k, root, va, levels):
    """x86_64 page-table walk in the kdump's memory: (page-table pfns visited, physical address or None)."""
    shifts = [48, 39, 30, 21, 12][5 - levels:]
    table, pts = root, [root >> 12]
    for sh in shifts:
        e, = struct.unpack("<Q", k.read_phys(table + ((va >> sh) & 511) * 8, 8))
        if not e & 1:
            return pts, None
        if sh in (30, 21) and e & 0x80:
            return pts, (e & PTE_ADDR & ~((1 << sh) - 1)) + (va & ((1 << sh) - 1))
        if sh == 12:
            return pts, (e & PTE_ADDR) + (va & 0xFFF)
        table = e & PTE_ADDR
        pts.append(table >> 12)
    return pts, None


def hot_pages(k, vi, results, synq_doc, layout):
    """[(label, pfn)] of pages synq must read, each pfn once (first label wins)."""
    phys_base = check_dump.c_int(vi["NUMBER(phys_base)"])
    levels = 5 if vi.get("NUMBER(pgtable_l5_enabled)") == "1" else 4
    root = int(vi["SYMBOL(swapper_pg_dir)"], 16) - START_KERNEL_MAP + phys_base
    syms = {}
    with open(os.path.join(results, "side", "kallsyms")) as f:
        for line in f:
            p = line.split()
            if len(p) == 3 and p[2] in ("tcp_hashinfo", "__start_BTF", "__stop_BTF") and p[2] not in syms:
                syms[p[2]] = int(p[0], 16)
    targets = [("swapper_pg_dir", int(vi["SYMBOL(swapper_pg_dir)"], 16))]
    for name in ("tcp_hashinfo",):
        if name in syms:
            targets.append((name, syms[name]))
    targets.append(("init_uts_ns", int(vi["SYMBOL(init_uts_ns)"], 16)))
    for key, v in sorted(vi.items()):
        if key.startswith("SYMBOL(kallsyms_"):
            targets.append((key[7:-1], int(v, 16)))
    if "__start_BTF" in syms and "__stop_BTF" in syms:
        a, b = syms["__start_BTF"], syms["__stop_BTF"]
        targets += [("BTF first page", a), ("BTF middle page", (a + b) // 2), ("BTF last page", b - 1)]
    out, seen = [], set()

    def add(label, pfn):
        if pfn not in seen and k.dumped(pfn):
            seen.add(pfn)
            out.append((label, pfn))

    def visit(label, va):
        pts, pa = walk(k, root, va, levels)
        for lvl, pfn in enumerate(pts):
            add(f"page table (level {levels - lvl}) for {label}", pfn)
        if pa is not None:
            add(label, pa >> 12)
        return pa

    for label, va in targets:
        visit(label, va)
    # The listening hash's bucket array, through tcp_hashinfo (offsets from synq layout on the intact dump).
    th = syms.get("tcp_hashinfo")
    if th and layout.get("lhash2_offset") is not None and layout.get("lhash2_mask_offset") is not None:
        pa = visit("tcp_hashinfo", th)
        if pa is not None:
            lh, = struct.unpack("<Q", k.read_phys(pa + layout["lhash2_offset"], 8))
            mask, = struct.unpack("<I", k.read_phys(pa + layout["lhash2_mask_offset"], 4))
            size = (mask + 1) * layout.get("bucket_size", 16)
            for off in range(0, min(size, 64 * PAGE), PAGE):
                visit(f"listening hash buckets +{off:#x}", lh + off)
    for l in synq_doc.get("listeners", []):
        sock = int(l["sock"], 16)
        pa = visit(f"listener socket {l['family']} {l['addr']}:{l['port']} netns {l['netns']}", sock)
        if pa is not None and layout.get("net_offset") is not None:
            net, = struct.unpack("<Q", k.read_phys(pa + layout["net_offset"], 8))
            visit(f"struct net of netns {l['netns']}", net)
    return out


# ---------------------------------------------------------------------------------------------------------
# Mutations. Each is a recipe: segments of the new file (("src", offset, length) from the source dump, or
# ("bytes", data)), then patches (position in the new file, bytes); cut=True for prefix copies.

class Mutation:
    def __init__(self, mid, family, source, what, segments, patches=(), cut=False):
        self.id, self.family, self.source, self.what = mid, family, source, what
        self.segments, self.patches, self.cut = segments, list(patches), cut


def whole(size):
    return [("src", 0, size)]


def interesting(rng, orig, bits):
    """A value for a bits-wide field that differs from orig: limits, off-by-one, scaled, bit flips, random."""
    mask = (1 << bits) - 1
    cands = [0, 1, mask, 1 << (bits - 1), (1 << (bits - 1)) - 1, orig + 1, orig - 1, orig * 2, orig // 2,
             orig ^ (1 << rng.randrange(bits)), orig + rng.choice((-4096, 4096, -24, 24, -8, 8, 512, -512)),
             rng.getrandbits(bits), 1 << rng.randrange(bits), orig << 12, orig * 4096 + 1]
    v = rng.choice(cands) & mask
    if v == orig & mask:
        v = (orig ^ 1) & mask
    return v


FMT = {8: "B", 16: "H", 32: "I", 64: "Q"}


def field_patch(rng, buf_orig, width, endian="<"):
    orig = int.from_bytes(buf_orig, "little" if endian == "<" else "big")
    v = interesting(rng, orig, width)
    return struct.pack(endian + FMT[width], v), orig, v


def garble(rng, data):
    """A changed copy of bytes: bit flips, zeros, 0xff, random bytes over a range, or a byte swap."""
    b = bytearray(data)
    n = len(b)
    how = rng.choice(("flip1", "flipk", "zero", "ones", "random", "swap"))
    if how == "flip1" or n < 2:
        i = rng.randrange(n)
        b[i] ^= 1 << rng.randrange(8)
        how = f"bit flip at +{i}"
    elif how == "flipk":
        k = rng.randint(2, 16)
        for _ in range(k):
            b[rng.randrange(n)] ^= 1 << rng.randrange(8)
        how = f"{k} bit flips"
    elif how == "swap":
        i, j = rng.randrange(n), rng.randrange(n)
        if b[i] == b[j]:
            b[i] ^= 0x55
        b[i], b[j] = b[j], b[i]
        how = f"bytes +{i} and +{j} swapped"
    else:
        a = rng.randrange(n)
        m = rng.randint(1, min(n - a, 512))
        fill = bytes(m) if how == "zero" else b"\xff" * m if how == "ones" else rng.randbytes(m)
        b[a:a + m] = fill
        how = f"{m} bytes at +{a} {how}"
    if bytes(b) == bytes(data):
        b[0] ^= 0x80
        how += " (+ bit 7 of byte 0)"
    return bytes(b), how


def text_edit(rng, text):
    """An in-place (same length) edit of VMCOREINFO text: (new bytes, description)."""
    lines = text.split(b"\n")
    starts = list(itertools.accumulate((len(l) + 1 for l in lines), initial=0))
    important = [i for i, l in enumerate(lines) if l.split(b"=")[0] in (
        b"OSRELEASE", b"PAGESIZE", b"KERNELOFFSET", b"SYMBOL(swapper_pg_dir)", b"NUMBER(phys_base)",
        b"NUMBER(pgtable_l5_enabled)", b"SYMBOL(init_uts_ns)", b"SYMBOL(_stext)", b"BUILD-ID",
        b"SYMBOL(kallsyms_names)", b"SYMBOL(kallsyms_num_syms)", b"SYMBOL(kallsyms_offsets)",
        b"SYMBOL(kallsyms_relative_base)", b"SYMBOL(kallsyms_token_table)", b"SYMBOL(kallsyms_token_index)",
        b"SYMBOL(kallsyms_markers)", b"SYMBOL(kallsyms_seqs_of_names)")]
    cand = [i for i, l in enumerate(lines) if b"=" in l]
    i = rng.choice(important) if important and rng.random() < 0.7 else rng.choice(cand)
    line = lines[i]
    key, _, val = line.partition(b"=")
    b = bytearray(text)
    s = starts[i]
    vs = s + len(key) + 1
    how = rng.choice(("digit", "digit", "allf", "zero", "noeq", "join", "nul", "garbage", "nonutf8", "keycase",
                      "negative"))
    if how == "digit" and val:
        j = rng.randrange(len(val))
        c = val[j:j + 1]
        alt = rng.choice([x for x in b"0123456789abcdef" if bytes([x]) != c.lower()])
        b[vs + j] = alt
        desc = f"{key.decode()}: character {j} of the value -> {chr(alt)!r}"
    elif how == "allf" and val:
        b[vs:vs + len(val)] = b"f" * len(val)
        desc = f"{key.decode()}=ff..f"
    elif how == "zero" and val:
        b[vs:vs + len(val)] = b"0" * len(val)
        desc = f"{key.decode()}=00..0"
    elif how == "negative" and len(val) > 1:
        b[vs] = ord("-")
        desc = f"{key.decode()}: first character of the value -> '-'"
    elif how == "noeq":
        b[s + len(key)] = ord(" ")
        desc = f"{key.decode()}: '=' -> ' ' (line unreadable)"
    elif how == "join" and s + len(line) < len(b):
        b[s + len(line)] = ord(" ")
        desc = f"{key.decode()}: newline -> ' ' (joined with the next line)"
    elif how == "nul":
        b[s + rng.randrange(len(line))] = 0
        desc = f"{key.decode()}: a NUL inside the line"
    elif how == "nonutf8":
        b[s + rng.randrange(len(line))] = 0xFF
        desc = f"{key.decode()}: a 0xff byte inside the line"
    elif how == "keycase" and key:
        b[s:s + len(key)] = key.lower() if key != key.lower() else key.upper()
        desc = f"{key.decode()}: key case changed"
    else:
        m = rng.randint(1, max(1, len(line)))
        b[s:s + m] = rng.randbytes(m)
        desc = f"{key.decode()}: {m} random bytes over the line"
    if bytes(b) == text:
        b[s] ^= 0x20
        desc += " (+ case of the first character)"
    return bytes(b), desc


def pick_hot(rng, hot, k, want_compressed=False):
    cands = hot
    if want_compressed:
        cands = [(l, p) for l, p in hot if k.desc(p)[2] & 1]
    return rng.choice(cands) if cands else None


def random_dumped_pfn(rng, k):
    while True:
        pfn = rng.randrange(len(k.bm2) * 8)
        if k.dumped(pfn):
            return pfn


# --- kdump families -------------------------------------------------------------------------------------

def m_flat_header(rng, mid, k, hot):
    choice = rng.choice(("signature", "type", "version", "rest", "all"))
    if choice == "signature":
        i = rng.randrange(12)
        return Mutation(mid, "K-flathdr", "kdump", f"flattened header: signature byte {i} changed",
                        whole(k.size), [(i, bytes([b"makedumpfile"[i] ^ (1 << rng.randrange(8))]))])
    if choice in ("type", "version"):
        pos = 16 if choice == "type" else 24
        data, o, v = field_patch(rng, (1).to_bytes(8, "big"), 64, ">")
        return Mutation(mid, "K-flathdr", "kdump", f"flattened header: {choice} {o} -> {v:#x}", whole(k.size),
                        [(pos, data)])
    if choice == "rest":
        return Mutation(mid, "K-flathdr", "kdump", "flattened header: random bytes over 32..4095 (unused)",
                        whole(k.size), [(32, rng.randbytes(PAGE - 32))])
    return Mutation(mid, "K-flathdr", "kdump", "flattened header: all 4096 bytes random", whole(k.size),
                    [(0, rng.randbytes(PAGE))])


def hot_record(rng, k, hot):
    """A record index: one holding a hot page's descriptor or data, a header record, or any."""
    r = rng.random()
    if r < 0.4:
        _, pfn = rng.choice(hot)
        loff = k.desc_loff(pfn) if rng.random() < 0.5 else k.desc(pfn)[0]
        i = k.record_index_at(loff)
        if i is not None:
            return i, f"the record holding {'the descriptor' if loff < k.desc_start + 24 * k.n_desc else 'the data'} of pfn {pfn:#x}"
    if r < 0.6:
        i = rng.randrange(min(8, len(k.records)))
        return i, f"record #{i} (headers, notes or bitmaps)"
    i = rng.randrange(len(k.records))
    return i, f"record #{i}"


def m_flat_record(rng, mid, k, hot):
    i, which = hot_record(rng, k, hot)
    o, s, p = k.records[i]
    hdr = p - 16
    choice = rng.choice(("offset", "offset", "size", "size", "drop", "dup", "end", "noend"))
    what = f"flattened {which} (logical {o:#x}+{s:#x} at file {hdr:#x}): "
    if choice == "offset":
        data, _, v = field_patch(rng, o.to_bytes(8, "big"), 64, ">")
        return Mutation(mid, "K-rec", "kdump", what + f"offset -> {v:#x}", whole(k.size), [(hdr, data)])
    if choice == "size":
        data, _, v = field_patch(rng, s.to_bytes(8, "big"), 64, ">")
        return Mutation(mid, "K-rec", "kdump", what + f"size -> {v:#x}", whole(k.size), [(hdr + 8, data)])
    if choice == "drop":
        return Mutation(mid, "K-rec", "kdump", what + "record removed (its bytes never written)",
                        [("src", 0, hdr), ("src", p + s, k.size - p - s)])
    if choice == "dup":
        return Mutation(mid, "K-rec", "kdump", what + "record written twice in a row",
                        [("src", 0, p + s), ("src", hdr, 16 + s), ("src", p + s, k.size - p - s)])
    if choice == "end":
        return Mutation(mid, "K-rec", "kdump", what + "an end marker inserted before it (the rest is trailing)",
                        [("src", 0, hdr), ("bytes", struct.pack(">qq", -1, 0)), ("src", hdr, k.size - hdr)])
    return Mutation(mid, "K-rec", "kdump", "flattened stream: end marker replaced by a record header of size 0 "
                    "at logical 0 (no end marker)", whole(k.size), [(k.end_marker, struct.pack(">qq", 0, 0))])


HDR_FIELDS = (("header_version", 8, 32), ("status", 424, 32), ("block_size", 428, 32),
              ("sub_hdr_size", 432, 32), ("bitmap_blocks", 436, 32), ("max_mapnr", 440, 32),
              ("total_ram_blocks", 444, 32), ("device_blocks", 448, 32), ("written_blocks", 452, 32),
              ("current_cpu", 456, 32), ("nr_cpus", 460, 32), ("timestamp.tv_sec", 408, 64))


def m_kdump_header(rng, mid, k, hot):
    r = rng.random()
    if r < 0.1:
        i = rng.randrange(8)
        return Mutation(mid, "K-hdr", "kdump", f"disk_dump_header: signature byte {i} changed", whole(k.size),
                        k.logical_patch(i, bytes([k.logical[i] ^ (1 << rng.randrange(8))])))
    if r < 0.2:
        f = rng.randrange(6)
        return Mutation(mid, "K-hdr", "kdump", f"disk_dump_header: utsname field {f} random", whole(k.size),
                        k.logical_patch(12 + 65 * f, rng.randbytes(65)))
    name, off, width = rng.choice(HDR_FIELDS)
    data, o, v = field_patch(rng, k.logical[off:off + width // 8], width)
    return Mutation(mid, "K-hdr", "kdump", f"disk_dump_header.{name} {o:#x} -> {v:#x}", whole(k.size),
                    k.logical_patch(off, data))


SUB_FIELDS = (("phys_base", 0, 64), ("dump_level", 8, 32), ("split", 12, 32), ("start_pfn", 16, 64),
              ("end_pfn", 24, 64), ("offset_vmcoreinfo", 32, 64), ("size_vmcoreinfo", 40, 64),
              ("offset_note", 48, 64), ("size_note", 56, 64), ("offset_eraseinfo", 64, 64),
              ("size_eraseinfo", 72, 64), ("start_pfn_64", 80, 64), ("end_pfn_64", 88, 64),
              ("max_mapnr_64", 96, 64))


def m_kdump_sub(rng, mid, k, hot):
    name, off, width = rng.choice(SUB_FIELDS)
    a = k.sub + off
    data, o, v = field_patch(rng, k.logical[a:a + width // 8], width)
    return Mutation(mid, "K-sub", "kdump", f"kdump_sub_header.{name} {o:#x} -> {v:#x}", whole(k.size),
                    k.logical_patch(a, data))


def bit_patch(k, which, pfn, value):
    base = k.bitmap_off + (k.half if which == 2 else 0)
    old = k.logical[base + (pfn >> 3)]
    new = old | (1 << (pfn & 7)) if value else old & ~(1 << (pfn & 7))
    return k.logical_patch(base + (pfn >> 3), bytes([new]))


def m_bitmap(rng, mid, k, hot):
    choice = rng.choice(("clear2", "clear2", "shift", "shift", "clear1", "block", "flips"))
    if choice in ("clear2", "clear1"):
        label, pfn = rng.choice(hot)
        which = 2 if choice == "clear2" else 1
        return Mutation(mid, "K-bitmap", "kdump", f"bitmap {which}: bit of pfn {pfn:#x} ({label}) cleared",
                        whole(k.size), bit_patch(k, which, pfn, 0))
    if choice == "shift":
        # One bit of bitmap 2 changed below a page synq needs: the descriptor index of every later page (the
        # rank of its bit) moves by one, so each reads its neighbour's data. An undumped page's bit is set if
        # there is one below (QEMU dumps every RAM page, so usually there is none), else the bit of a dumped
        # page that synq does not need is cleared.
        label, hp = rng.choice(hot)
        hot_pfns = {p for _, p in hot}
        clear = [p for p in range(hp) if not k.dumped(p)]
        if clear:
            pfn = rng.choice(clear)
            return Mutation(mid, "K-bitmap", "kdump", f"bitmap 2: bit of the undumped pfn {pfn:#x} set (later "
                            f"descriptors shift by one, e.g. that of pfn {hp:#x}, {label})", whole(k.size),
                            bit_patch(k, 2, pfn, 1))
        pfn = rng.choice([p for p in range(hp) if p not in hot_pfns] or [hp])
        return Mutation(mid, "K-bitmap", "kdump", f"bitmap 2: bit of the dumped pfn {pfn:#x} cleared (later "
                        f"descriptors shift by one, e.g. that of pfn {hp:#x}, {label})", whole(k.size),
                        bit_patch(k, 2, pfn, 0))
    if choice == "block":
        which = rng.choice((1, 2))
        base = k.bitmap_off + (k.half if which == 2 else 0)
        start = rng.randrange(0, k.half, 512)
        old = bytes(k.logical[base + start:base + start + 512])
        new, how = garble(rng, old)
        return Mutation(mid, "K-bitmap", "kdump", f"bitmap {which}, bytes {start:#x}..+512: {how}", whole(k.size),
                        k.logical_patch(base + start, new))
    patches, where = [], []
    for _ in range(rng.randint(1, 8)):
        which = rng.choice((1, 2))
        pfn = rng.randrange(k.half * 8)
        base = k.bitmap_off + (k.half if which == 2 else 0)
        cur = patches_value(k, patches, base + (pfn >> 3))
        patches.append((base + (pfn >> 3), cur ^ (1 << (pfn & 7))))
        where.append(f"{which}:{pfn:#x}")
    out = []
    for loff, val in patches:
        out += k.logical_patch(loff, bytes([val]))
    return Mutation(mid, "K-bitmap", "kdump", "bitmap bits flipped (bitmap:pfn) " + " ".join(where), whole(k.size),
                    out)


def patches_value(k, patches, loff):
    for lo, v in reversed(patches):
        if lo == loff:
            return v
    return k.logical[loff]


def m_descriptor(rng, mid, k, hot):
    if rng.random() < 0.75:
        label, pfn = rng.choice(hot)
    else:
        pfn = random_dumped_pfn(rng, k)
        label = "a random page"
    loff = k.desc_loff(pfn)
    off, size, flags, pflags = k.desc(pfn)
    choice = rng.choice(("offset", "offset", "size", "size", "flags", "flags", "page_flags", "random", "zero"))
    what = f"page descriptor of pfn {pfn:#x} ({label}; offset {off:#x} size {size} flags {flags:#x}): "
    if choice == "offset":
        for _ in range(100):
            v = interesting(rng, off, 64)
            # Never another page's data: that would be a valid image of other memory (see the docstring).
            if v not in k.data_offsets:
                break
        return Mutation(mid, "K-desc", "kdump", what + f"offset -> {v:#x}", whole(k.size),
                        k.logical_patch(loff, struct.pack("<Q", v)))
    if choice == "size":
        v = interesting(rng, size, 32)
        return Mutation(mid, "K-desc", "kdump", what + f"size -> {v:#x}", whole(k.size),
                        k.logical_patch(loff + 8, struct.pack("<I", v)))
    if choice == "flags":
        v = rng.choice((0, 2, 4, 0x20, 1 | 2, 0x10, 0xFFFFFFFF, interesting(rng, flags, 32)))
        if v == flags:
            v = flags ^ 0x1
        if v == 0 and size == PAGE:
            v = 0x40  # raw -> an unknown bit (raw with 4096 bytes would be a valid encoding)
        return Mutation(mid, "K-desc", "kdump", what + f"flags -> {v:#x}", whole(k.size),
                        k.logical_patch(loff + 12, struct.pack("<I", v)))
    if choice == "page_flags":
        v = interesting(rng, pflags, 64)
        return Mutation(mid, "K-desc", "kdump", what + f"page_flags -> {v:#x} (unused by readers)", whole(k.size),
                        k.logical_patch(loff + 16, struct.pack("<Q", v)))
    if choice == "random":
        return Mutation(mid, "K-desc", "kdump", what + "24 random bytes", whole(k.size),
                        k.logical_patch(loff, rng.randbytes(24)))
    return Mutation(mid, "K-desc", "kdump", what + "24 zero bytes", whole(k.size), k.logical_patch(loff, bytes(24)))


def m_page_data(rng, mid, k, hot):
    if rng.random() < 0.8:
        picked = pick_hot(rng, hot, k, want_compressed=True)
    else:
        picked = None
    if picked is None:
        while True:
            pfn = random_dumped_pfn(rng, k)
            if k.desc(pfn)[2] & 1:
                break
        label = "a random page"
    else:
        label, pfn = picked
    off, size, flags, _ = k.desc(pfn)
    shared = sum(1 for d in k.descs if d[0] == off)
    old = bytes(k.logical[off:off + size])
    new, how = garble(rng, old)
    note = f", data shared by {shared} descriptors" if shared > 1 else ""
    return Mutation(mid, "K-data", "kdump", f"zlib data of pfn {pfn:#x} ({label}; {size} bytes at {off:#x}{note}): "
                    + how, whole(k.size), k.logical_patch(off, new))


def m_kdump_notes(rng, mid, k, hot):
    area = bytes(k.logical[k.off_note:k.off_note + k.size_note])
    notes, pos = [], 0
    while pos + 12 <= len(area):
        namesz, descsz, ntype = struct.unpack_from("<III", area, pos)
        notes.append((pos, namesz, descsz, ntype, area[pos + 12:pos + 12 + namesz].rstrip(b"\0")))
        pos += 12 + ((namesz + 3) & ~3) + ((descsz + 3) & ~3)
    pos, namesz, descsz, ntype, name = rng.choice(notes)
    return note_mutation(rng, mid, "K-note", "kdump", k.size, k.off_note + pos, namesz, descsz, ntype, name,
                         lambda at, data: k.logical_patch(at, data), "note area")


def note_mutation(rng, mid, family, source, size, at, namesz, descsz, ntype, name, patch, where):
    choice = rng.choice(("namesz", "descsz", "descsz", "type", "name", "header"))
    what = f"{where}: note {name.decode(errors='replace')}/{ntype} (namesz {namesz}, descsz {descsz}) at {at:#x}: "
    if choice in ("namesz", "descsz", "type"):
        off = {"namesz": 0, "descsz": 4, "type": 8}[choice]
        data, o, v = field_patch(rng, {"namesz": namesz, "descsz": descsz, "type": ntype}[choice].to_bytes(4, "little"), 32)
        return Mutation(mid, family, source, what + f"{choice} -> {v:#x}", whole(size), patch(at + off, data))
    if choice == "name" and namesz > 1:
        i = rng.randrange(min(namesz, len(name) or 1))
        nb = bytearray(name or b"\0")
        nb[i % len(nb)] ^= 1 << rng.randrange(7)
        return Mutation(mid, family, source, what + f"name byte {i} changed", whole(size), patch(at + 12 + i % len(nb),
                                                                                                  bytes([nb[i % len(nb)]])))
    return Mutation(mid, family, source, what + "12 random header bytes", whole(size), patch(at, rng.randbytes(12)))


def m_kdump_vmcoreinfo(rng, mid, k, hot):
    text = bytes(k.logical[k.off_vmcoreinfo:k.off_vmcoreinfo + k.size_vmcoreinfo]).rstrip(b"\0")
    new, desc = text_edit(rng, text)
    return Mutation(mid, "K-vmci", "kdump", "VMCOREINFO text: " + desc, whole(k.size),
                    k.logical_patch(k.off_vmcoreinfo, new))


def m_kdump_cut(rng, mid, k, hot):
    r = rng.random()
    if r < 0.35:
        n = rng.randrange(1, k.size)
        why = "random point"
    elif r < 0.5:
        n = rng.choice((0, 1, 15, 16, PAGE - 1, PAGE, PAGE + 8, PAGE + 16, PAGE + 17, k.size - 16, k.size - 17,
                        k.size - 1, k.end_marker + 8))
        why = "edge"
    else:
        # Just before, inside or just after a record that holds something synq needs.
        i, which = hot_record(rng, k, hot)
        o, s, p = k.records[i]
        n = rng.choice((p - 16, p - 8, p, p + 1, p + s // 2, p + s - 1, p + s))
        why = f"at {which}"
    n = max(0, min(n, k.size - 1))
    return Mutation(mid, "K-cut", "kdump", f"cut at {n} of {k.size} bytes ({why})", [("src", 0, n)], cut=True)


# --- ELF families ---------------------------------------------------------------------------------------

EHDR_FIELDS = (("e_ident[EI_CLASS]", 4, 8), ("e_ident[EI_DATA]", 5, 8), ("e_ident[EI_VERSION]", 6, 8),
               ("e_ident[EI_OSABI]", 7, 8), ("e_type", 16, 16), ("e_machine", 18, 16), ("e_version", 20, 32),
               ("e_entry", 24, 64), ("e_phoff", 32, 64), ("e_phoff", 32, 64), ("e_shoff", 40, 64),
               ("e_flags", 48, 32), ("e_ehsize", 52, 16), ("e_phentsize", 54, 16), ("e_phnum", 56, 16),
               ("e_phnum", 56, 16), ("e_shentsize", 58, 16), ("e_shnum", 60, 16), ("e_shstrndx", 62, 16))


def read_at(path, pos, n):
    with open(path, "rb") as f:
        f.seek(pos)
        return f.read(n)


def m_elf_header(rng, mid, e, k, hot):
    if rng.random() < 0.1:
        i = rng.randrange(4)
        return Mutation(mid, "E-ehdr", "elf", f"ELF magic byte {i} changed", whole(e.size),
                        [(i, bytes([b"\x7fELF"[i] ^ (1 << rng.randrange(8))]))])
    name, off, width = rng.choice(EHDR_FIELDS)
    data, o, v = field_patch(rng, read_at(e.path, off, width // 8), width)
    return Mutation(mid, "E-ehdr", "elf", f"ELF header {name} {o:#x} -> {v:#x}", whole(e.size), [(off, data)])


PHDR_FIELDS = (("p_type", 0, 32), ("p_flags", 4, 32), ("p_offset", 8, 64), ("p_offset", 8, 64),
               ("p_vaddr", 16, 64), ("p_paddr", 24, 64), ("p_paddr", 24, 64), ("p_filesz", 32, 64),
               ("p_filesz", 32, 64), ("p_memsz", 40, 64), ("p_memsz", 40, 64), ("p_align", 48, 64))


def m_elf_phdr(rng, mid, e, k, hot):
    i = rng.choice([j for j, p in enumerate(e.phdrs) if p[0] == 1] * 3 + list(range(e.phnum)))
    name, off, width = rng.choice(PHDR_FIELDS)
    at = e.phoff + 56 * i + off
    kind = {1: "PT_LOAD", 4: "PT_NOTE"}.get(e.phdrs[i][0], str(e.phdrs[i][0]))
    if rng.random() < 0.1:
        return Mutation(mid, "E-phdr", "elf", f"program header {i} ({kind}): 56 random bytes", whole(e.size),
                        [(e.phoff + 56 * i, rng.randbytes(56))])
    data, o, v = field_patch(rng, read_at(e.path, at, width // 8), width)
    if name == "p_paddr" and kind == "PT_LOAD":
        # A whole PT_LOAD moved by whole pages would be the image of other memory only if the page tables
        # moved with it; they do not, so this stays inconsistent (and detectable). Keep as is.
        pass
    return Mutation(mid, "E-phdr", "elf", f"program header {i} ({kind}) {name} {o:#x} -> {v:#x}", whole(e.size),
                    [(at, data)])


def m_elf_notes(rng, mid, e, k, hot):
    pos, namesz, descsz, ntype, name, _ = rng.choice(e.notes)
    return note_mutation(rng, mid, "E-note", "elf", e.size, pos, namesz, descsz, ntype, name,
                         lambda at, data: [(at, data)], "PT_NOTE")


def m_elf_vmcoreinfo(rng, mid, e, k, hot):
    pos, n = e.vmcoreinfo
    new, desc = text_edit(rng, read_at(e.path, pos, n))
    return Mutation(mid, "E-vmci", "elf", "VMCOREINFO text: " + desc, whole(e.size), [(pos, new)])


def m_elf_cut(rng, mid, e, k, hot):
    r = rng.random()
    loads = [p for p in e.phdrs if p[0] == 1]
    if r < 0.3:
        n = rng.randrange(1, e.size)
        why = "random point"
    elif r < 0.55:
        notes_end = max(p[2] + p[5] for p in e.phdrs if p[0] == 4)
        n = rng.choice((0, 1, 63, 64, e.phoff, e.phoff + 56, e.phoff + 56 * e.phnum - 1, notes_end - 1, notes_end,
                        loads[0][2], loads[0][2] + 1, loads[-1][2], e.size - 1, e.size - PAGE))
        why = "edge"
    else:
        label, pfn = rng.choice(hot)
        fo = e.file_offset(pfn << 12)
        n = fo + rng.choice((0, 1, PAGE // 2, PAGE - 1)) if fo is not None else e.size - 1
        why = f"inside or just before pfn {pfn:#x} ({label})"
    n = max(0, min(n, e.size - 1))
    # QEMU ends the file with a section-header string table that no segment covers: a cut that keeps every
    # PT_LOAD and PT_NOTE byte loses nothing a reader needs, so there exit 0 must simply be right.
    seg_end = max(p[2] + p[5] for p in e.phdrs if p[0] in (1, 4))
    if n >= seg_end:
        return Mutation(mid, "E-cut", "elf", f"cut at {n} of {e.size} bytes ({why}; every segment kept, only the "
                        "trailing section-header string table cut)", [("src", 0, n)])
    return Mutation(mid, "E-cut", "elf", f"cut at {n} of {e.size} bytes ({why})", [("src", 0, n)], cut=True)


KDUMP_FAMILIES = (m_flat_header, m_flat_record, m_kdump_header, m_kdump_sub, m_bitmap, m_descriptor, m_page_data,
                  m_kdump_notes, m_kdump_vmcoreinfo, m_kdump_cut)
ELF_FAMILIES = (m_elf_header, m_elf_phdr, m_elf_notes, m_elf_vmcoreinfo, m_elf_cut)
# The kdump families get twice the turns: the compressed format has far more structure to get wrong.
ROTATION = [(f, "kdump") for f in KDUMP_FAMILIES[:5]] + [(f, "elf") for f in ELF_FAMILIES[:3]] + \
           [(f, "kdump") for f in KDUMP_FAMILIES[5:]] + [(f, "elf") for f in ELF_FAMILIES[3:]] + \
           [(f, "kdump") for f in (m_flat_record, m_bitmap, m_descriptor, m_page_data, m_kdump_vmcoreinfo,
                                   m_kdump_cut)]


def make_recipe(seed, mid, k, e, hot):
    rng = random.Random(f"synq-mutate:{seed}:{mid}")
    fn, src = ROTATION[mid % len(ROTATION)]
    if src == "kdump":
        return fn(rng, mid, k, hot)
    return fn(rng, mid, e, k, hot)


# ---------------------------------------------------------------------------------------------------------
# Making the copy, running synq.

def build_copy(m, src_path, dst):
    fd_in = os.open(src_path, os.O_RDONLY)
    fd = os.open(dst, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        for seg in m.segments:
            if seg[0] == "bytes":
                os.write(fd, seg[1])
                continue
            _, off, n = seg
            while n > 0:
                c = os.copy_file_range(fd_in, fd, n, off)
                if c <= 0:
                    raise MutateError(f"copy_file_range returned {c} at {off}")
                off += c
                n -= c
        for pos, data in m.patches:
            os.pwrite(fd, data, pos)
        os.fchmod(fd, 0o400)
    finally:
        os.close(fd)
        os.close(fd_in)


def run_limited(argv, out_path, err_path):
    """Runs argv under /usr/bin/time (stdin /dev/null, stdout/stderr to files, RLIMIT_AS, its own session) and
    returns (exit code or -signal, wall seconds, peak RSS KiB, timed_out). The peak RSS is GNU time's %M, the
    ru_maxrss its wait4() gets for synq alone: a process forked straight from this script would inherit the
    script's own high-water RSS (Linux carries it across fork and exec), so /usr/bin/time, a small process,
    stands in between. On the time limit the whole session is killed."""
    rss_path = out_path + ".rss"
    t0 = time.monotonic()
    pid = os.fork()
    if pid == 0:
        try:
            os.setsid()
            fd0 = os.open(os.devnull, os.O_RDONLY)
            fd1 = os.open(out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            fd2 = os.open(err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            os.dup2(fd0, 0)
            os.dup2(fd1, 1)
            os.dup2(fd2, 2)
            resource.setrlimit(resource.RLIMIT_AS, (AS_LIMIT, AS_LIMIT))
            os.execv(TIME_BIN, [TIME_BIN, "-o", rss_path, "-f", "%M"] + argv)
        finally:
            os._exit(127)
    timed_out = False
    while True:
        wpid, status = os.waitpid(pid, os.WNOHANG)
        if wpid == pid:
            break
        if time.monotonic() - t0 > LIMIT_S:
            timed_out = True
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
            _, status = os.waitpid(pid, 0)
            break
        time.sleep(POLL_S)
    wall = time.monotonic() - t0
    rc = os.waitstatus_to_exitcode(status)
    lines = (check.read_text(rss_path) or "").splitlines()
    with contextlib.suppress(FileNotFoundError):
        os.unlink(rss_path)
    rss = int(lines[-1]) if lines and lines[-1].strip().isdigit() else 0
    for l in lines:
        if l.startswith("Command terminated by signal "):
            rc = -int(l.split()[-1])
    if not timed_out and not lines:
        raise MutateError(f"{TIME_BIN} reported nothing (exit {rc}); stderr: {(check.read_text(err_path) or '')[:300]}")
    return rc, wall, rss, timed_out


def judge_run(rc, timed_out, rss, out, err, cut, truth, release):
    """(outcome class, detail)."""
    first = next((l for l in err.splitlines() if l.strip()), "(no stderr)")
    if "panicked" in err:
        return "panic", next(l for l in err.splitlines() if "panicked" in l)
    if timed_out:
        return "timeout", f"killed after {LIMIT_S:.0f} s; {first}"
    if rc < 0:
        return "signal", f"signal {-rc}; {first}"
    if rss > LIMIT_RSS_KIB:
        return "rss", f"peak RSS {rss / 1024:.0f} MiB; exit {rc}; {first}"
    if rc == 1:
        if not any(l.startswith("synq: ") for l in err.splitlines()):
            return "exit1-bad", f"exit 1 without a 'synq: ' line: {first}"
        if out.strip():
            return "exit1-bad", f"exit 1 but stdout has {len(out)} bytes"
        return "exit 1 refused", first
    if rc not in (0, 2):
        return "exit-other", f"exit {rc}: {first}"
    try:
        doc = json.loads(out)
        ls, ws = doc["listeners"], doc["warnings"]
        if not isinstance(ls, list) or not isinstance(ws, list) or not isinstance(doc.get("totals"), dict):
            raise TypeError("listeners / warnings not lists, or no totals")
    except (ValueError, KeyError, TypeError) as e:
        return ("exit2-bad" if rc == 2 else "exit0-wrong"), f"exit {rc} without valid JSON ({e}): {out[:120]!r}"
    detail = f"{len(ls)} listeners, {len(ws)} warnings" + (f" (first: {str(ws[0])[:200]})" if ws else "")
    if rc == 2:
        return ("exit 2 with warnings", detail) if ws else ("exit2-bad", "exit 2 without a warning")
    if cut:
        return "exit0-cut", "a cut dump reported as complete: " + detail
    f = check.Failures()
    with contextlib.redirect_stdout(io.StringIO()):
        got, _ = check.synq_groups(doc, f, "mutation")
        check.compare_groups("/proc", truth, "synq", got, f, "mutation")
    rel = doc.get("kernel", {}).get("release") if isinstance(doc.get("kernel"), dict) else None
    if ws:
        return "exit0-wrong", "exit 0 with warnings: " + detail
    if f.items:
        return "exit0-wrong", "answer differs from the ground truth: " + f.items[0][:300]
    if rel != release:
        # The listeners are right, the kernel it names is not (check_dump.py's damage() fails this too).
        return "exit0-release", f"listeners equal to the ground truth, but kernel.release {rel!r} (the guest's: " \
                                f"{release!r}), no warning"
    return "exit 0 equal", detail


def parse_ids(text, count):
    if not text:
        return list(range(count))
    ids = []
    for part in text.split(","):
        if "-" in part:
            a, b = part.split("-", 1)
            ids += range(int(a), int(b) + 1)
        else:
            ids.append(int(part))
    return ids


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--count", type=int, default=int(os.environ.get("SYNQ_MUTATIONS", DEFAULT_COUNT)))
    ap.add_argument("--seed", type=int, default=int(os.environ.get("SYNQ_MUTATE_SEED", DEFAULT_SEED)))
    ap.add_argument("--only", help="mutation ids: 5,17,40-45 (default: 0..count-1)")
    ap.add_argument("--keep", action="store_true", default=os.environ.get("SYNQ_KEEP_DUMPS", "0") == "1",
                    help="keep the mutated copies (vmcore.mutant-NNNNN next to the dumps)")
    ap.add_argument("--list", action="store_true", help="print the recipes only")
    ap.add_argument("--allow", action="append", choices=FAIL_CLASSES,
                    default=os.environ.get("SYNQ_MUTATE_ALLOW", "").split() or None,
                    help="report this failure class but do not fail on it (repeatable)")
    ap.add_argument("outdir")
    ap.add_argument("kdump")
    ap.add_argument("elf")
    a = ap.parse_args()
    allowed = set(a.allow or ())
    bad = allowed - set(FAIL_CLASSES)
    if bad:
        ap.error(f"--allow / SYNQ_MUTATE_ALLOW: unknown classes {sorted(bad)} (known: {' '.join(FAIL_CLASSES)})")
    t_start = time.monotonic()
    results = os.path.join(a.outdir, "results")
    release = (check.read_text(os.path.join(results, "release")) or "").strip()
    host = check_dump.read_kv(os.path.join(a.outdir, "host.txt"))
    with contextlib.redirect_stdout(io.StringIO()):
        tfails = check.Failures()
        truth_info, _ = check_dump.check_truth(results, release, tfails, "truth", host)
    if truth_info is None or tfails.items:
        print(f"mutate: FAIL: the guest's ground truth is not usable: {tfails.items[:2]}")
        return 1
    truth = truth_info[0]
    try:
        k = Kdump(a.kdump)
        e = Elf(a.elf)
    except (OSError, MutateError, struct.error, zlib.error) as ex:
        print(f"mutate: FAIL: cannot read the intact dumps: {ex}")
        return 1
    vi = check_dump.vmcoreinfo_dict(bytes(k.logical[k.off_vmcoreinfo:k.off_vmcoreinfo + k.size_vmcoreinfo])
                                    .rstrip(b"\0").decode(errors="replace"))
    side = [] if "SYMBOL(kallsyms_names)" in vi else [
        "--btf", os.path.join(results, "side", "btf"), "--kallsyms", os.path.join(results, "side", "kallsyms")]
    synq = check_dump.synq_bin()
    mdir = os.path.join(a.outdir, "mutate")
    os.makedirs(mdir, exist_ok=True)
    tmp_out, tmp_err = os.path.join(mdir, "run.out"), os.path.join(mdir, "run.err")

    # The intact dumps first: they must give the ground truth, else nothing below means anything.
    base = {}
    for label, path in (("kdump", a.kdump), ("elf", a.elf)):
        rc, wall, rss, to = run_limited([synq, "--core", os.path.abspath(path), "--json"] + side, tmp_out, tmp_err)
        out, err = check.read_text(tmp_out) or "", check.read_text(tmp_err) or ""
        cls, detail = judge_run(rc, to, rss, out, err, False, truth, release)
        print(f"mutate: intact {label}: {cls}, {wall:.2f} s, peak RSS {rss / 1024:.1f} MiB: {detail}")
        if cls != "exit 0 equal":
            print(f"mutate: FAIL: synq does not give the ground truth on the intact {label} dump")
            return 1
        base[label] = json.loads(out)
    layout_out = os.path.join(mdir, "layout.json")
    rc, _, _, _ = run_limited([synq, "layout", "--json", "--core", os.path.abspath(a.kdump)] + side, layout_out,
                              tmp_err)
    layout = json.loads(check.read_text(layout_out) or "{}") if rc == 0 else {}
    try:
        hot = hot_pages(k, vi, results, base["kdump"], layout)
    except (MutateError, KeyError, ValueError, struct.error, zlib.error, OSError) as ex:
        print(f"mutate: FAIL: cannot find the pages synq needs in the intact kdump: {ex}")
        return 1
    with open(os.path.join(mdir, "hot-pages.txt"), "w") as f:
        f.writelines(f"{pfn:#x} {label}\n" for label, pfn in hot)
    ids = parse_ids(a.only, a.count)
    print(f"mutate: seed {a.seed}, {len(ids)} mutations of {os.path.basename(a.kdump)} ({k.size} bytes, "
          f"{len(k.records)} flattened records, {k.n_desc} page descriptors) and {os.path.basename(a.elf)} "
          f"({e.size} bytes, {e.phnum} program headers, {len(e.notes)} notes); {len(hot)} pages synq needs "
          f"(mutate/hot-pages.txt); limits {LIMIT_S:.0f} s, {LIMIT_RSS_KIB // 1024} MiB; side files: "
          f"{' '.join(side) or 'none'}")
    if a.list:
        for mid in ids:
            m = make_recipe(a.seed, mid, k, e, hot)
            print(f"{mid:05d} {m.family:10s} {m.what}")
        return 0

    counts = {c: 0 for c in OK_CLASSES + FAIL_CLASSES}
    per_family = {}
    failures = []
    walls, rsss = [], []
    tsv = open(os.path.join(mdir, "mutations.tsv"), "w")
    tsv.write("id\tfamily\tsource\texit\tseconds\tpeak_rss_kib\toutcome\tmutation\tdetail\n")
    copy_dir = os.path.dirname(os.path.abspath(a.kdump))
    t_copy = 0.0
    for mid in ids:
        copy = os.path.join(copy_dir, f"vmcore.mutant-{mid:05d}")
        with contextlib.suppress(FileNotFoundError):
            os.chmod(copy, 0o600)
            os.unlink(copy)
        m = None
        try:
            m = make_recipe(a.seed, mid, k, e, hot)
            tc = time.monotonic()
            build_copy(m, a.kdump if m.source == "kdump" else a.elf, copy)
            t_copy += time.monotonic() - tc
            rc, wall, rss, to = run_limited([synq, "--core", copy, "--json"] + side, tmp_out, tmp_err)
            out, err = check.read_text(tmp_out) or "", check.read_text(tmp_err) or ""
            cls, detail = judge_run(rc, to, rss, out, err, m.cut, truth, release)
        except (OSError, MutateError, struct.error, ValueError, IndexError, KeyError) as ex:
            rc, wall, rss, out, err = "-", 0.0, 0, "", ""
            cls, detail = "harness", f"could not make or run the mutation: {ex!r}"
        finally:
            if not a.keep:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(copy)
        family = m.family if m else ROTATION[mid % len(ROTATION)][0].__name__
        what = m.what if m else "?"
        counts[cls] += 1
        per_family.setdefault(family, {}).setdefault(cls, 0)
        per_family[family][cls] += 1
        walls.append((wall, mid))
        rsss.append((rss, mid))
        tsv.write(f"{mid}\t{family}\t{m.source if m else '?'}\t{rc}\t{wall:.3f}\t{rss}\t{cls}\t{what}\t"
                  f"{detail.replace(chr(9), ' ').replace(chr(10), ' ')[:400]}\n")
        if cls in FAIL_CLASSES:
            if cls not in allowed:
                failures.append(mid)
            first = next((l for l in err.splitlines() if l.strip()), "(no stderr)")
            print(f"mutate: {'ALLOWED' if cls in allowed else 'FAIL'} {cls}: seed {a.seed} id {mid} [{family}] {what}: exit {rc}, {wall:.2f} s, "
                  f"peak RSS {rss / 1024:.1f} MiB: {detail} | stderr: {first[:300]}")
            with open(os.path.join(mdir, f"fail-{mid:05d}.txt"), "w") as f:
                f.write(f"seed={a.seed}\nid={mid}\nfamily={family}\nmutation={what}\noutcome={cls}\n"
                        f"exit={rc}\nseconds={wall:.3f}\npeak_rss_kib={rss}\ndetail={detail}\n"
                        f"reproduce=python3 tests/realkernel/mutate_dumps.py --seed {a.seed} --only {mid} --keep "
                        f"{a.outdir} {a.kdump} {a.elf}\n")
            with open(os.path.join(mdir, f"fail-{mid:05d}.err"), "w") as f:
                f.write(err)
    tsv.close()
    for p in (tmp_out, tmp_err):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(p)
    n = len(ids)
    walls.sort()
    rsss.sort()
    print("mutate: per family (outcome: count):")
    for fam in sorted(per_family):
        print(f"mutate:   {fam:10s} " + ", ".join(f"{c}: {v}" for c, v in sorted(per_family[fam].items())))
    if n:
        print(f"mutate: synq wall time: median {walls[n // 2][0]:.3f} s, longest {walls[-1][0]:.3f} s (id "
              f"{walls[-1][1]}); peak RSS: median {rsss[n // 2][0] / 1024:.1f} MiB, largest "
              f"{rsss[-1][0] / 1024:.1f} MiB (id {rsss[-1][1]}); copies made in {t_copy:.1f} s")
    nfail = sum(counts[c] for c in FAIL_CLASSES)
    print(f"mutate: {n} run (seed {a.seed}): " + ", ".join(f"{c} {counts[c]}" for c in OK_CLASSES)
          + f"; failures {nfail} (" + ", ".join(f"{c} {counts[c]}" for c in FAIL_CLASSES) + ")"
          + (f" of which allowed: {' '.join(sorted(allowed))}" if allowed else "")
          + f"; {time.monotonic() - t_start:.0f} s in all")
    if failures:
        print(f"mutate: FAILED: ids {','.join(map(str, failures))} (seed {a.seed}); details in {mdir}/fail-*.txt")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
