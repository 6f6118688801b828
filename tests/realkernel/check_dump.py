#!/usr/bin/env python3
"""`synq --core` on a real dump of a test guest, against that guest's ground truth (stdlib only).

Usage: check_dump.py OUTDIR DUMP              run synq on DUMP, record, judge
       check_dump.py --selftest OUTDIR DUMP   negative control on the recorded run of DUMP (no synq run)
       check_dump.py --damage OUTDIR KDUMP ELF   synq --core --json on damaged copies of the two dumps (cut,
                                              garbled header, garbled page descriptors): an error or a
                                              result with warnings, never a panic, a signal or a hang

OUTDIR is what dump.sh made for one kernel (target/realkernel/dump-<id>): results/ (what the guest sent:
mode "dump", release, cpu-la57, mptcp/, basic/ns*/{netns,tcp,tcp6,ss-ltn,expect,kinds}, side/{btf,kallsyms},
vmcoreinfo-kcore) and host.txt (dump.sh's facts: cpu, state_stable, timings). DUMP is one of its dumps
(QEMU dump-guest-memory, paging off: ELF, or kdump-zlib in makedumpfile's flattened format).

The run (recorded in OUTDIR/core-<basename of DUMP>/):
  * the dump's own headers, read here independently of synq: format, PT_LOADs (ELF), disk_dump_header and
    kdump_sub_header (kdump; flattened records reassembled), and its VMCOREINFO note -> dump.txt,
    vmcoreinfo.txt;
  * the side-file decision: a dump whose VMCOREINFO names the kallsyms tables (SYMBOL(kallsyms_names), 6.0+)
    gets NO side file at all; otherwise (5.10) --btf results/side/btf --kallsyms results/side/kallsyms;
  * ${SYNQ_BIN:-target/release/synq} --core DUMP --json [side files] and ... --total
    -> synq-json.{argv,out,err,rc}, synq-total.{argv,out,err,rc};
  * a fingerprint of DUMP before and after synq ran (size, mtime, ctime, mode, inode; sha256 of the whole
    file up to 256 MiB, else of its first and last 64 MiB) -> fingerprint.{before,after}.

The judgement (every item a failure, never a skip):
  * the ground truth is what the fixture built (EXPECT lines vs /proc, sanity floors of "basic", MPTCP
    listener or proven absence of MPTCP; check.py's rules), and the guest's state watch said "same" before and
    after the dumps (host.txt state_stable=yes);
  * the dump: VMCOREINFO present, OSRELEASE = the guest's uname -r, equal to the VMCOREINFO the guest read
    from its /proc/kcore (same boot); KERNELOFFSET = kallsyms _stext - 0xffffffff81000000 (the side file is
    of the same boot); 5-level paging: booted with +la57 -> the guest saw la57 and
    NUMBER(pgtable_l5_enabled)=1, else no la57 and pgtable_l5_enabled absent or 0; kdump: the sub-header's
    phys_base equals NUMBER(phys_base); release >= 6 -> SYMBOL(kallsyms_names) present (else the test
    would not show "no side file");
  * the side files: BTF magic, kallsyms with a real _stext and tcp_hashinfo; passed iff the policy says so;
  * synq: exit 0; JSON of the live shape, no warnings, kernel.release = the guest's; per key (netns, family,
    addr, port) listener count, SYN-queue sum and accept-queue sum equal to /proc; totals; "kind"
    (mptcp-subflow on the declared listener, null elsewhere); max_backlog = ss -ltn Send-Q; syn_young
    between 0 and /proc's young count at the snapshot; --total = the number of st 03 lines;
  * the dump unchanged by synq (fingerprints equal).
arm64 guests (host.txt arch=arm64, page_size, va_bits from the kernel's config): instead of the x86_64 rules
(la57 / pgtable_l5_enabled, KERNELOFFSET from _stext - 0xffffffff81000000, phys_base): the ELF dump's
e_machine is EM_AARCH64 (183); VMCOREINFO has NUMBER(kimage_voffset), NUMBER(VA_BITS) (= CONFIG_ARM64_VA_BITS),
NUMBER(TCR_EL1_T1SZ) (64 - the VA bits in use: VA_BITS, or 48 where the CPU has no 52-bit VA) and PAGESIZE =
the kernel's page size; kallsyms _text - KERNELOFFSET = NUMBER(MODULES_END) (KIMAGE_VADDR, the image's link
address; where kallsyms has no _text, kernels without CONFIG_KALLSYMS_ALL: _stext - the System.map's); the
image rule phys = vaddr - kimage_voffset, read back from the dump by this script: phys(linux_banner) holds
"Linux version <release> ", the booted Image file's bytes at linux_banner - _text; kdump: the
sub-header's phys_base is NUMBER(PHYS_OFFSET) (the start of RAM). A kernel without CONFIG_KALLSYMS_ALL (host.txt
kallsyms_all=n: no tcp_hashinfo in its kallsyms tables) gets --system-map (its real System.map) and nothing else.
Exit status 0 only if everything holds.
"""
import contextlib
import hashlib
import io
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import check  # noqa: E402  (check.py: the ground-truth rules of the live test)
import check_details  # noqa: E402  (the per-listener details, shared with check.py)

START_KERNEL_MAP_TEXT = 0xFFFFFFFF81000000  # x86_64 link address of _stext (__START_KERNEL)
SIDE_FILE_OPTIONS = ("--btf", "--kallsyms", "--system-map", "--vmlinux")
FULL_HASH_LIMIT = 256 << 20
PART_HASH = 64 << 20
SYNQ_TIMEOUT = 300
MAX_FLAT_RECORDS = 10_000_000


class DumpError(Exception):
    pass


EM_AARCH64 = 183


def arch_of(host):
    """The guest's architecture as dump.sh recorded it (host.txt arch=); x86_64 when not said."""
    return host.get("arch") or "x86_64"


# ---------------------------------------------------------------------------------------------------------
# The dump's headers, read independently of synq.

def dump_format(path):
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith(b"\x7fELF"):
        return "elf"
    if head.startswith(b"makedumpfile"):
        return "kdump-flattened"
    if head[:8] in (b"KDUMP   ", b"DISKDUMP"):
        return "kdump"
    raise DumpError(f"unknown dump format, starts {head!r}")


def elf_facts(path):
    """ELF64 LE core: PT_LOAD summary and the VMCOREINFO note."""
    facts = {}
    vmcoreinfo = None
    with open(path, "rb") as f:
        eh = f.read(64)
        if len(eh) < 64 or eh[4] != 2 or eh[5] != 1:
            raise DumpError("not an ELF64 little-endian file")
        e_type, e_machine = struct.unpack_from("<HH", eh, 16)
        e_phoff, = struct.unpack_from("<Q", eh, 32)
        e_phentsize, e_phnum = struct.unpack_from("<HH", eh, 54)
        if e_phnum == 0xFFFF:
            raise DumpError("e_phnum is PN_XNUM (more than 65534 program headers): not handled by this checker")
        if e_phentsize != 56:
            raise DumpError(f"e_phentsize {e_phentsize}")
        facts.update(elf_type=e_type, elf_machine=e_machine, elf_phnum=e_phnum)
        f.seek(e_phoff)
        ph = f.read(56 * e_phnum)
        loads, notes = [], []
        for i in range(e_phnum):
            p_type, _, p_offset, p_vaddr, p_paddr, p_filesz, p_memsz, _ = struct.unpack_from("<IIQQQQQQ", ph, 56 * i)
            if p_type == 1:
                loads.append((p_offset, p_vaddr, p_paddr, p_filesz, p_memsz))
            elif p_type == 4:
                notes.append((p_offset, p_filesz))
        facts["elf_pt_load"] = len(loads)
        facts["elf_pt_load_paddr_ranges"] = " ".join(f"{p:#x}+{m:#x}" for _, _, p, _, m in loads)
        facts["elf_pt_load_nonzero_vaddr"] = sum(1 for l in loads if l[1] != 0)
        facts["elf_pt_load_filesz_lt_memsz"] = sum(1 for l in loads if l[3] < l[4])
        names = []
        for off, size in notes:
            if size > 64 << 20:
                raise DumpError(f"PT_NOTE of {size} bytes")
            f.seek(off)
            data = f.read(size)
            pos = 0
            while pos + 12 <= len(data):
                namesz, descsz, ntype = struct.unpack_from("<III", data, pos)
                pos += 12
                name = data[pos:pos + namesz].rstrip(b"\0").decode(errors="replace")
                pos += (namesz + 3) & ~3
                desc = data[pos:pos + descsz]
                pos += (descsz + 3) & ~3
                names.append(f"{name}/{ntype}")
                if name == "VMCOREINFO":
                    vmcoreinfo = desc.rstrip(b"\0").decode(errors="replace")
        facts["elf_notes"] = " ".join(names)
    return facts, vmcoreinfo


class FlatReader:
    """makedumpfile's flattened format: a 4096-byte header, then records {offset be64, size be64, data},
    ending with offset -1. Reassembles reads at logical offsets."""

    def __init__(self, f):
        self.f = f
        f.seek(0)
        head = f.read(4096)
        typ, ver = struct.unpack_from(">QQ", head, 16)
        if not head.startswith(b"makedumpfile") or typ != 1 or ver != 1:
            raise DumpError(f"flattened header: type {typ} version {ver}")
        self.records = []
        pos = 4096
        size_on_disk = os.fstat(f.fileno()).st_size
        ended = False
        for _ in range(MAX_FLAT_RECORDS):
            f.seek(pos)
            rh = f.read(16)
            if len(rh) < 16:
                break
            off, size = struct.unpack(">qq", rh)
            if off == -1:
                ended = True
                break
            if off < 0 or size < 0 or pos + 16 + size > size_on_disk:
                raise DumpError(f"flattened record at {pos}: offset {off} size {size}")
            self.records.append((off, size, pos + 16))
            pos += 16 + size
        if not ended:
            raise DumpError(f"flattened stream has no end marker after {len(self.records)} records")
        self.logical_size = max((o + s for o, s, _ in self.records), default=0)

    def read(self, off, n):
        buf = bytearray(n)
        got = 0
        for r_off, r_size, fpos in self.records:
            lo, hi = max(off, r_off), min(off + n, r_off + r_size)
            if lo < hi:
                self.f.seek(fpos + lo - r_off)
                buf[lo - off:hi - off] = self.f.read(hi - lo)
                got += hi - lo
        if got < n:
            raise DumpError(f"flattened stream does not cover {n} bytes at {off} ({got} found)")
        return bytes(buf)


class PlainReader:
    def __init__(self, f):
        self.f = f

    def read(self, off, n):
        self.f.seek(off)
        b = self.f.read(n)
        if len(b) != n:
            raise DumpError(f"short read of {n} bytes at {off}")
        return b


def kdump_facts(path, flattened):
    facts = {}
    with open(path, "rb") as f:
        r = FlatReader(f) if flattened else PlainReader(f)
        if flattened:
            facts["flat_records"] = len(r.records)
            facts["flat_logical_size"] = r.logical_size
        h = r.read(0, 464)
        sig = h[:8]
        if sig not in (b"KDUMP   ", b"DISKDUMP"):
            raise DumpError(f"kdump signature {sig!r}")
        version, = struct.unpack_from("<i", h, 8)
        uts = [h[12 + 65 * i:12 + 65 * (i + 1)].split(b"\0")[0].decode(errors="replace") for i in range(6)]
        status, block_size, sub_hdr_size, bitmap_blocks, max_mapnr = struct.unpack_from("<IiiII", h, 424)
        nr_cpus, = struct.unpack_from("<i", h, 460)
        facts.update(kdump_signature=sig.decode().strip(), kdump_header_version=version,
                     kdump_utsname_sysname=uts[0], kdump_utsname_release=uts[2], kdump_utsname_machine=uts[4],
                     kdump_status=status, kdump_block_size=block_size, kdump_sub_hdr_size=sub_hdr_size,
                     kdump_bitmap_blocks=bitmap_blocks, kdump_max_mapnr=max_mapnr, kdump_nr_cpus=nr_cpus)
        if not 512 <= block_size <= 1 << 20:
            raise DumpError(f"kdump block_size {block_size}")
        sub = r.read(block_size, 104 if version >= 6 else 80 if version >= 4 else 48)
        phys_base, dump_level, split = struct.unpack_from("<Qii", sub, 0)
        facts.update(kdump_sub_phys_base=phys_base, kdump_dump_level=dump_level, kdump_split=split)
        vmcoreinfo = None
        if version >= 3:
            off_vi, size_vi = struct.unpack_from("<qQ", sub, 32)
            facts.update(kdump_offset_vmcoreinfo=off_vi, kdump_size_vmcoreinfo=size_vi)
            if off_vi > 0 and 0 < size_vi < 1 << 20:
                vmcoreinfo = r.read(off_vi, size_vi).rstrip(b"\0").decode(errors="replace")
        if version >= 4:
            off_n, size_n = struct.unpack_from("<qQ", sub, 48)
            facts.update(kdump_offset_note=off_n, kdump_size_note=size_n)
        if version >= 6:
            facts["kdump_max_mapnr_64"], = struct.unpack_from("<Q", sub, 96)
    return facts, vmcoreinfo


def phys_reader(path):
    """A function reading n bytes at a physical address of the dump (ELF PT_LOADs by p_paddr; kdump: the
    second bitmap, the page descriptors, zlib pages; flattened records reassembled), and what closes it."""
    import zlib
    fmt = dump_format(path)
    f = open(path, "rb")
    if fmt == "elf":
        eh = f.read(64)
        e_phoff, = struct.unpack_from("<Q", eh, 32)
        _, e_phnum = struct.unpack_from("<HH", eh, 54)
        f.seek(e_phoff)
        ph = f.read(56 * e_phnum)
        loads = []
        for i in range(e_phnum):
            p_type, _, p_offset, _, p_paddr, p_filesz, p_memsz, _ = struct.unpack_from("<IIQQQQQQ", ph, 56 * i)
            if p_type == 1:
                loads.append((p_paddr, p_offset, p_filesz, p_memsz))

        def read(pa, n):
            for p_paddr, p_offset, p_filesz, p_memsz in loads:
                if p_paddr <= pa and pa + n <= p_paddr + p_memsz:
                    f.seek(p_offset + pa - p_paddr)
                    b = f.read(max(0, min(n, p_filesz - (pa - p_paddr))))
                    return b + bytes(n - len(b))
            raise DumpError(f"physical {pa:#x}+{n:#x} is in no PT_LOAD")
        return read, f.close
    r = FlatReader(f) if fmt == "kdump-flattened" else PlainReader(f)
    h = r.read(0, 464)
    _, block_size, sub_hdr_size, bitmap_blocks, _ = struct.unpack_from("<IiiII", h, 424)
    if not 512 <= block_size <= 1 << 20:
        raise DumpError(f"kdump block_size {block_size}")
    bitmap_off = (1 + sub_hdr_size) * block_size
    half = bitmap_blocks * block_size // 2
    bitmap2 = r.read(bitmap_off + half, half)
    start = bitmap_off + bitmap_blocks * block_size

    def page(pfn):
        if pfn >> 3 >= len(bitmap2) or not (bitmap2[pfn >> 3] >> (pfn & 7)) & 1:
            return bytes(block_size)  # not dumped: zeros
        idx = (sum(bin(b).count("1") for b in bitmap2[:pfn >> 3])
               + bin(bitmap2[pfn >> 3] & ((1 << (pfn & 7)) - 1)).count("1"))
        off, size, flags, _ = struct.unpack("<qIIQ", r.read(start + idx * 24, 24))
        data = r.read(off, size)
        if flags & 1:
            data = zlib.decompress(data)
        elif flags:
            raise DumpError(f"page {pfn:#x}: compression flags {flags:#x} not handled by this checker")
        if len(data) != block_size:
            raise DumpError(f"page {pfn:#x}: {len(data)} bytes, block_size {block_size}")
        return data

    def read(pa, n):
        out = b""
        while len(out) < n:
            a = pa + len(out)
            pg = page(a // block_size)
            o = a % block_size
            out += pg[o:o + n - len(out)]
        return out
    return read, f.close


def symbols_of(path, names, offset=0):
    """name -> address (+ offset, mod 2^64) of the first 3-field line naming it in a kallsyms / System.map
    file."""
    syms = {}
    with open(path) as f:
        for line in f:
            p = line.split()
            if len(p) == 3 and p[2] in names and p[2] not in syms:
                syms[p[2]] = (int(p[0], 16) + offset) % (1 << 64)
    return syms


def arm64_image_probe(dump, vi, kallsyms_path, system_map=None, image=None):
    """arm64: reads, through the image rule phys = vaddr - NUMBER(kimage_voffset), linux_banner from the dump,
    and the same bytes of the booted Image file (at linux_banner - _text). Not the Image
    header at _text: the kernel reserves its image from _stext only (arm64_memblock_init), so the 64 KiB
    before it, the header's, are free memory at run time (seen reused on 6.1). The symbols from the guest's kallsyms, or, where that lacks them
    (a kernel without CONFIG_KALLSYMS_ALL), from the System.map plus KERNELOFFSET. Returns facts for dump.txt
    (image_*), or an image_error."""
    try:
        voff = c_int(vi.get("NUMBER(kimage_voffset)", ""))
    except ValueError:
        return {"image_error": f"NUMBER(kimage_voffset) {vi.get('NUMBER(kimage_voffset)')!r}"}
    want = ("_text", "linux_banner")
    try:
        syms = symbols_of(kallsyms_path, want)
        where = "kallsyms"
        if set(syms) != set(want) and system_map:
            syms = {**symbols_of(system_map, want, int(vi.get("KERNELOFFSET", "0"), 16)), **syms}
            where = "kallsyms and System.map + KERNELOFFSET"
    except (OSError, ValueError) as e:
        return {"image_error": f"symbols: {e}"}
    if set(syms) != set(want):
        return {"image_error": f"{where} lacks _text or linux_banner: {sorted(syms)}"}
    facts = {"image_kimage_voffset": f"{voff % (1 << 64):#x}", "image_symbols": where}
    off = (syms["linux_banner"] - syms["_text"]) % (1 << 64)
    try:
        with open(image or "", "rb") as f:
            f.seek(off)
            want = f.read(256).split(b"\0")[0]
        read, close = phys_reader(dump)
        try:
            pb = (syms["linux_banner"] - voff) % (1 << 64)
            raw = read(pb, 256).split(b"\0")[0]
        finally:
            close()
    except (DumpError, OSError, struct.error, ValueError) as e:
        return {**facts, "image_error": f"reading the image through the dump: {e}"}
    banner = raw.split(b"\n")[0].decode(errors="replace")
    facts.update(image_text_vaddr=f"{syms['_text']:#x}", image_banner_vaddr=f"{syms['linux_banner']:#x}",
                 image_banner_paddr=f"{pb:#x}", image_banner=banner[:150],
                 image_banner_in_image="yes" if raw and raw == want else f"no ({len(raw)} vs {len(want)} bytes)")
    return facts


def vmcoreinfo_dict(text):
    d = {}
    for line in (text or "").splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            d[k] = v
    return d


def qemu_hex(text):
    """What QEMU 7.2's qemu_strtou64(text, base 16) makes of a NUMBER() value (mod 2^64)."""
    t = text.strip()
    v = int(t.lstrip("-"), 16)
    return (-v if t.startswith("-") else v) % (1 << 64)


def signed64(v):
    return v - (1 << 64) if v >= 1 << 63 else v


def c_int(text):
    """NUMBER() values: C base 0 (0x.., 0.., decimal), possibly negative."""
    t = text.strip()
    neg = t.startswith("-")
    t = t.lstrip("-")
    if t.lower().startswith("0x"):
        v = int(t, 16)
    elif len(t) > 1 and t.startswith("0"):
        v = int(t, 8)
    else:
        v = int(t)
    return -v if neg else v


# ---------------------------------------------------------------------------------------------------------
# Recording a run.

def fingerprint(path):
    st = os.stat(path)
    h = hashlib.sha256()
    with open(path, "rb") as f:
        if st.st_size <= FULL_HASH_LIMIT:
            what = "sha256 of the whole file"
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        else:
            what = f"sha256 of the first and last {PART_HASH >> 20} MiB"
            left = PART_HASH
            while left:
                b = f.read(min(left, 1 << 20))
                h.update(b)
                left -= len(b)
                if not b:
                    break
            f.seek(st.st_size - PART_HASH)
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "ctime_ns": st.st_ctime_ns,
            "mode": oct(st.st_mode), "inode": st.st_ino, "hash": h.hexdigest(), "hashed": what}


def write(path, text):
    with open(path, "w") as f:
        f.write(text)


def run_dir_of(outdir, dump):
    return os.path.join(outdir, "core-" + os.path.basename(dump))


def synq_bin():
    b = os.environ.get("SYNQ_BIN", "target/release/synq")
    if not os.path.isabs(b):
        b = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", b)
    return os.path.normpath(b)


def record(outdir, dump):
    """Runs synq on the dump and writes everything the judgement needs into the run directory."""
    rd = run_dir_of(outdir, dump)
    shutil.rmtree(rd, ignore_errors=True)
    os.makedirs(rd)
    write(os.path.join(rd, "dump-path"), os.path.abspath(dump) + "\n")
    results = os.path.join(outdir, "results")
    try:
        fmt = dump_format(dump)
        if fmt == "elf":
            facts, vmcoreinfo = elf_facts(dump)
        else:
            facts, vmcoreinfo = kdump_facts(dump, fmt == "kdump-flattened")
        facts = {"format": fmt, **facts}
    except (DumpError, OSError, struct.error) as e:
        facts, vmcoreinfo = {"format": "unreadable", "error": str(e)}, None
    host = read_kv(os.path.join(outdir, "host.txt"))
    if arch_of(host) == "arm64" and facts.get("format") != "unreadable":
        # The image rule, read back from the dump (the kcore copy's kimage_voffset when the dump has none).
        probe_vi = vmcoreinfo_dict(vmcoreinfo) if vmcoreinfo else vmcoreinfo_dict(
            check.read_text(os.path.join(results, "vmcoreinfo-kcore")))
        facts.update(arm64_image_probe(dump, probe_vi, os.path.join(results, "side", "kallsyms"),
                                       host.get("system_map") if host.get("kallsyms_all") == "n" else None,
                                       host.get("image")))
    write(os.path.join(rd, "dump.txt"), "".join(f"{k}={v}\n" for k, v in facts.items()))
    if vmcoreinfo is not None:
        write(os.path.join(rd, "vmcoreinfo.txt"), vmcoreinfo if vmcoreinfo.endswith("\n") else vmcoreinfo + "\n")

    side = []
    policy_vi = vmcoreinfo_dict(vmcoreinfo)
    if read_kv(os.path.join(outdir, "host.txt")).get("vmcoreinfo_device") == "no":
        # No VMCOREINFO in such a dump: the guest's own (its kcore copy) says whether its kallsyms tables are
        # named there, i.e. whether synq can do without side files once it has found the kernel.
        policy_vi = vmcoreinfo_dict(check.read_text(os.path.join(results, "vmcoreinfo-kcore")))
    if "SYMBOL(kallsyms_names)" not in policy_vi:
        side = ["--btf", os.path.join(results, "side", "btf"), "--kallsyms", os.path.join(results, "side", "kallsyms")]
    # A kernel whose kallsyms tables hold no data symbols (CONFIG_KALLSYMS_ALL off: bookworm's arm64 6.1) gets no
    # side file either: synq finds its BTF and tcp_hashinfo in the image; check_side_files compares the
    # address it found with the real System.map's (fetch-kernels.sh, from the -dbg package; KASLR from
    # VMCOREINFO).
    write(os.path.join(rd, "fingerprint.before"), json.dumps(fingerprint(dump), indent=1) + "\n")
    for name, extra in (("synq-json", ["--json", "--requests"]), ("synq-total", ["--total"])):
        run_recorded(rd, name, [synq_bin(), "--core", os.path.abspath(dump)] + extra + side)
    # `synq layout --core`: the dump's own BTF (or the side BTF for 5.10), compared with the layout of the
    # guest's /sys/kernel/btf/vmlinux copy, which synq reads as a plain file (no dump involved).
    run_recorded(rd, "synq-layout", [synq_bin(), "layout", "--json", "--core", os.path.abspath(dump)] + side)
    run_recorded(rd, "synq-layout-btf",
                 [synq_bin(), "layout", "--json", "--btf", os.path.join(results, "side", "btf")])
    write(os.path.join(rd, "fingerprint.after"), json.dumps(fingerprint(dump), indent=1) + "\n")
    return rd


def run_recorded(rd, name, argv):
    """Runs argv, recording it as rd/name.{argv,out,err,rc} (rc "127": not found, "timeout": killed)."""
    base = os.path.join(rd, name)
    write(base + ".argv", json.dumps(argv) + "\n")
    try:
        p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=SYNQ_TIMEOUT)
        out, err, rc = p.stdout, p.stderr, str(p.returncode)
    except FileNotFoundError as e:
        out, err, rc = b"", str(e).encode(), "127"
    except subprocess.TimeoutExpired as e:
        out, err, rc = e.stdout or b"", (e.stderr or b"") + b"\n(check_dump.py: killed after timeout)", "timeout"
    with open(base + ".out", "wb") as f:
        f.write(out)
    with open(base + ".err", "wb") as f:
        f.write(err)
    write(base + ".rc", rc + "\n")


# ---------------------------------------------------------------------------------------------------------
# The judgement, from recorded files only.

def read_kv(path):
    d = {}
    for line in (check.read_text(path) or "").splitlines():
        if "=" in line:
            k, v = line.split("=", 1)
            d[k] = v
    return d


USAGE_NOTE = "this synq has no working --core yet (issue 3)"


def check_rc(base, label, fails, where, usage_note=USAGE_NOTE):
    """Like check.check_synq_rc, but names a usage error (exit 64 from the argument parser) as such."""
    rc_text = (check.read_text(base + ".rc") or "").strip()
    err = check.read_text(base + ".err") or ""
    if rc_text == "0":
        if err.strip():
            print(f"note {where}: {label} stderr: {err.strip()[:2000]}")
        return True
    if rc_text == "64":
        fails.add(where, f"{label}: synq rejected its command line (usage error, exit 64) — {usage_note}; "
                  f"stderr:\n{err.strip()[:2000]}")
        return False
    if rc_text == "127":
        fails.add(where, f"{label}: synq missing or not executable on the host (SYNQ_BIN): {err.strip()[:500]}")
        return False
    if rc_text == "timeout":
        fails.add(where, f"{label}: did not finish within {SYNQ_TIMEOUT}s; stderr:\n{err.strip()[-2000:]}")
        return False
    return check.check_synq_rc(base, label, fails, where)


def judge(outdir, rd):
    """Returns (failures, summary, release)."""
    fails = check.Failures()
    results = os.path.join(outdir, "results")
    host = read_kv(os.path.join(outdir, "host.txt"))
    status = (check.read_text(os.path.join(results, "status")) or "").strip()
    release = (check.read_text(os.path.join(results, "release")) or "").strip()
    mode = (check.read_text(os.path.join(results, "mode")) or "").strip()
    facts = read_kv(os.path.join(rd, "dump.txt"))
    fmt = facts.get("format", "?")
    where = f"[{release}] {fmt}"
    if status != "OK":
        fails.add(where, f"guest status is {status or 'missing'!r}")
    if mode != "dump":
        fails.add(where, f"guest mode {mode or 'missing'!r}, want 'dump'")
    if not release:
        fails.add(where, "guest release missing")

    truth, young = check_truth(results, release, fails, where, host)
    vi = check_dump_facts(results, rd, release, facts, fails, where, host)
    if arch_of(host) == "arm64":
        check_arm64_image(results, vi, facts, release, fails, where)
    check_side_files(results, rd, vi, release, fails, where, arch_of(host), host)
    check_fingerprints(rd, fails, where)
    summary = None
    if truth is not None:
        summary = check_synq(results, rd, truth, young, release, fails, where,
                             data_symbols=host.get("kallsyms_all") != "n")
    check_layout(rd, fails, where, host.get("kallsyms_all") == "n")
    return fails, summary, release


def check_layout(rd, fails, where, no_data_symbols=False):
    """`synq layout --core DUMP --json` must come from the dump's own BTF (__start_BTF..__stop_BTF) when no
    side BTF is given, and give exactly the offsets of the guest's BTF file read on its own."""
    w = f"{where} layout --core"
    rc = (check.read_text(os.path.join(rd, "synq-layout.rc")) or "").strip()
    rc_btf = (check.read_text(os.path.join(rd, "synq-layout-btf.rc")) or "").strip()
    if rc != "0" or rc_btf != "0":
        fails.add(w, f"exit {rc} (layout --core) and {rc_btf} (layout --btf side/btf), want 0 and 0: "
                  f"{(check.read_text(os.path.join(rd, 'synq-layout.err')) or '').strip()[:300]}")
        return
    try:
        got = json.loads(check.read_text(os.path.join(rd, "synq-layout.out")) or "")
        want = json.loads(check.read_text(os.path.join(rd, "synq-layout-btf.out")) or "")
    except ValueError as e:
        fails.add(w, f"output is not JSON: {e}")
        return
    argv = json.loads(check.read_text(os.path.join(rd, "synq-layout.argv")) or "[]")
    btf = str(got.get("btf", ""))
    if "--btf" in argv:
        given = argv[argv.index("--btf") + 1] if argv.index("--btf") + 1 < len(argv) else None
        if btf != given:
            fails.add(w, f"the layout came from {btf!r}, not from the --btf file given ({given!r})")
    elif "(__start_BTF..__stop_BTF)" not in btf and not (
            no_data_symbols and "(BTF header found between _etext and __init_begin)" in btf):
        fails.add(w, f"the layout came from {btf!r}, not from the dump's own BTF (__start_BTF..__stop_BTF, or "
                  "found by its header where kallsyms lists no data symbols)")
    if got.get("warnings") != []:
        fails.add(w, f"warnings {got.get('warnings')!r} on an intact dump")
    strip = lambda d: {k: v for k, v in d.items() if k not in ("btf", "warnings")}
    if strip(got) != strip(want):
        diff = sorted(k for k in set(got) | set(want) if k not in ("btf", "warnings") and got.get(k) != want.get(k))
        fails.add(w, f"differs from the layout of the guest's BTF file on {diff[:5]}")
    else:
        print(f"info: {w}: {len(strip(got))} layout fields equal the guest's BTF file's; BTF from {btf}")


def ns_dirs_of(results):
    sdir = os.path.join(results, "basic")
    if not os.path.isdir(sdir):
        return []
    return sorted(os.path.join(sdir, d) for d in os.listdir(sdir)
                  if d.startswith("ns") and os.path.isdir(os.path.join(sdir, d)))


def check_truth(results, release, fails, where, host, stable=None):
    """The ground truth of the basic scenario, as built and standing during the dumps. `stable`, when given,
    replaces host.txt's state watch: (True, "") or (False, why the state did not hold still)."""
    w = where + " ground truth"
    if stable is not None:
        if not stable[0]:
            fails.add(w, stable[1])
    elif host.get("state_stable") != "yes":
        fails.add(w, f"the guest's state watch did not show the ground truth unchanged around the dumps "
                  f"(host.txt state_stable={host.get('state_stable')!r}, before {host.get('state_before_dumps')!r}, "
                  f"after {host.get('state_after_dumps')!r})")
    ns_dirs = ns_dirs_of(results)
    if len(ns_dirs) < 2:
        fails.add(w, f"expected >= 2 namespace snapshots in {results}/basic, found {len(ns_dirs)}")
        return None, None
    try:
        mptcp = check.mptcp_state(results, release, fails)
        young = {}
        truth, total = check.ground_truth(ns_dirs, "", fails, w, young)
        expected = check.expected_from_fixture(ns_dirs, fails, w)
        kinds = check.kinds_from_fixture(ns_dirs, fails, w)
    except (OSError, ValueError) as e:
        fails.add(w, f"cannot read the ground truth: {e}")
        return None, None
    check.compare_groups("fixture", expected, "/proc", truth, fails, w + " (scenario as built)")
    check.sanity("basic", truth, fails, w)
    mptcp_keys = [k for k, v in kinds.items() if v == check.MPTCP_KIND]
    if mptcp is True and not mptcp_keys:
        fails.add(w, "kernel has MPTCP but the scenario declares no MPTCP listener (no KIND line)")
    elif mptcp is False and mptcp_keys:
        fails.add(w, f"kernel without MPTCP, yet the fixture declared MPTCP listeners: {mptcp_keys}")
    for k in mptcp_keys:
        if not truth.get(k) or truth[k][0] != 1:
            fails.add(w, f"MPTCP listener {check.fmt_key(k)}: /proc shows {check.fmt_row(truth.get(k))}, "
                      "want exactly one listener")
    return (truth, total, kinds, ns_dirs, mptcp_keys), young


def check_dump_facts(results, rd, release, facts, fails, where, host):
    """The dump's own headers and VMCOREINFO (read by this script, not by synq). Returns VMCOREINFO as a dict."""
    w = where + " dump"
    fmt = facts.get("format")
    if fmt not in ("elf", "kdump", "kdump-flattened"):
        fails.add(w, f"dump not readable by this checker: {facts.get('error', fmt)}")
        return {}
    text = check.read_text(os.path.join(rd, "vmcoreinfo.txt"))
    if host.get("vmcoreinfo_device") == "no":
        # Booted without -device vmcoreinfo (dump.sh's SYNQ_NOVMCI_KERNELS): the dump must carry no VMCOREINFO
        # (synq has to find the kernel by scanning); what is checked of the guest's own VMCOREINFO is its kcore
        # copy, which also decides the side files.
        if text:
            fails.add(w, "the dump carries VMCOREINFO though the guest was booted without -device vmcoreinfo")
            return {}
        vi = vmcoreinfo_dict(check.read_text(os.path.join(results, "vmcoreinfo-kcore")))
        print(f"info: {where}: no VMCOREINFO in the dump, as booted (no -device vmcoreinfo): synq must find the "
              f"kernel by scanning; ELF: {facts.get('elf_pt_load')} PT_LOADs, notes {facts.get('elf_notes')}")
        check_vmcoreinfo_facts(results, vi, release, fails, w, where, host, "guest's kcore copy")
        return vi
    if not text:
        fails.add(w, "the dump carries no VMCOREINFO (was -device vmcoreinfo given and qemu_fw_cfg loaded?)")
        return {}
    vi = vmcoreinfo_dict(text)
    arm64 = arch_of(host) == "arm64"
    if arm64:
        print(f"info: {where}: VMCOREINFO: OSRELEASE={vi.get('OSRELEASE')} PAGESIZE={vi.get('PAGESIZE')} "
              f"KERNELOFFSET={vi.get('KERNELOFFSET')} "
              + " ".join(f"{k}={vi.get(k)}" for k in ARM64_NUMBERS) +
              f" SYMBOL(kallsyms_names)={'present' if 'SYMBOL(kallsyms_names)' in vi else 'absent'} "
              f"SYMBOL(swapper_pg_dir)={vi.get('SYMBOL(swapper_pg_dir)')} ({len(vi)} keys)")
    else:
        print(f"info: {where}: VMCOREINFO: OSRELEASE={vi.get('OSRELEASE')} NUMBER(phys_base)={vi.get('NUMBER(phys_base)')} "
              f"KERNELOFFSET={vi.get('KERNELOFFSET')} NUMBER(pgtable_l5_enabled)={vi.get('NUMBER(pgtable_l5_enabled)')} "
              f"SYMBOL(kallsyms_names)={'present' if 'SYMBOL(kallsyms_names)' in vi else 'absent'} "
              f"SYMBOL(swapper_pg_dir)={vi.get('SYMBOL(swapper_pg_dir)')} ({len(vi)} keys)")
    if fmt == "elf":
        print(f"info: {where}: ELF: {facts.get('elf_pt_load')} PT_LOADs (paddr+memsz: "
              f"{facts.get('elf_pt_load_paddr_ranges')}), {facts.get('elf_pt_load_nonzero_vaddr')} with vaddr != 0, "
              f"notes {facts.get('elf_notes')}")
    else:
        print(f"info: {where}: kdump: signature {facts.get('kdump_signature')!r} header_version "
              f"{facts.get('kdump_header_version')} block_size {facts.get('kdump_block_size')} max_mapnr "
              f"{facts.get('kdump_max_mapnr')} sub-header phys_base {facts.get('kdump_sub_phys_base')} dump_level "
              f"{facts.get('kdump_dump_level')} utsname release {facts.get('kdump_utsname_release')!r} machine "
              f"{facts.get('kdump_utsname_machine')!r}" +
              (f"; flattened: {facts.get('flat_records')} records, logical size {facts.get('flat_logical_size')}"
               if fmt == "kdump-flattened" else ""))
    if fmt != "elf" and arm64:
        # arm64 has no NUMBER(phys_base): QEMU writes PHYS_OFFSET, the start of RAM, into the sub-header.
        try:
            sub_pb = int(facts.get("kdump_sub_phys_base", ""))
            po = c_int(vi.get("NUMBER(PHYS_OFFSET)", ""))
        except ValueError:
            fails.add(w, f"phys_base unreadable: sub-header {facts.get('kdump_sub_phys_base')!r}, "
                      f"VMCOREINFO NUMBER(PHYS_OFFSET) {vi.get('NUMBER(PHYS_OFFSET)')!r}")
        else:
            if sub_pb != po:
                fails.add(w, f"kdump sub-header phys_base {sub_pb:#x} != VMCOREINFO NUMBER(PHYS_OFFSET) {po:#x}")
            else:
                print(f"info: {where}: kdump sub-header phys_base {sub_pb:#x} = VMCOREINFO NUMBER(PHYS_OFFSET)")
    elif fmt != "elf":
        try:
            sub_pb = int(facts.get("kdump_sub_phys_base", ""))
            text_pb = vi.get("NUMBER(phys_base)", "")
            vi_pb = c_int(text_pb)
            if signed64(sub_pb) == vi_pb:
                print(f"info: {where}: kdump sub-header phys_base {vi_pb} = VMCOREINFO NUMBER(phys_base)")
            elif sub_pb == qemu_hex(text_pb):
                # QEMU 7.2 (dump.c, vmcoreinfo_update_phys_base) parses the decimal NUMBER(phys_base) with base 16.
                print(f"info: {where}: kdump sub-header phys_base {sub_pb:#x} is VMCOREINFO's decimal "
                      f"NUMBER(phys_base)={text_pb} read as hex (QEMU 7.2 parses it with base 16): a reader must "
                      f"take phys_base from VMCOREINFO ({vi_pb:#x}), not from this sub-header")
            else:
                fails.add(w, f"kdump sub-header phys_base {sub_pb:#x} is neither VMCOREINFO NUMBER(phys_base) "
                          f"{text_pb} nor that text read as hex (QEMU 7.2's misparse)")
        except ValueError:
            fails.add(w, f"phys_base unreadable: sub-header {facts.get('kdump_sub_phys_base')!r}, "
                      f"VMCOREINFO {vi.get('NUMBER(phys_base)')!r}")
    check_vmcoreinfo_facts(results, vi, release, fails, w, where, host, "dump")
    return vi


# The arm64 VMCOREINFO numbers a reader translates with (arch/arm64/kernel/vmcore_info.c).
ARM64_NUMBERS = ("NUMBER(VA_BITS)", "NUMBER(kimage_voffset)", "NUMBER(PHYS_OFFSET)", "NUMBER(TCR_EL1_T1SZ)",
                 "NUMBER(KERNELPACMASK)", "NUMBER(MODULES_VADDR)", "NUMBER(MODULES_END)", "NUMBER(VMALLOC_START)",
                 "NUMBER(VMALLOC_END)", "NUMBER(VMEMMAP_START)", "NUMBER(VMEMMAP_END)")


def check_arm64_vmcoreinfo(vi, fails, w, where, host, what):
    """arm64: the numbers a reader needs, and the page size and VA bits of the kernel's config."""
    for k in ("NUMBER(kimage_voffset)", "NUMBER(VA_BITS)", "NUMBER(TCR_EL1_T1SZ)"):
        if k not in vi:
            fails.add(w, f"arm64 VMCOREINFO of the {what} lacks {k}")
    page = host.get("page_size", "")
    if not page or vi.get("PAGESIZE") != page:
        fails.add(w, f"VMCOREINFO PAGESIZE {vi.get('PAGESIZE')!r} != the kernel's page size {page!r} (its config)")
    va = host.get("va_bits", "")
    try:
        va_bits, t1sz = c_int(vi.get("NUMBER(VA_BITS)", "")), c_int(vi.get("NUMBER(TCR_EL1_T1SZ)", ""))
    except ValueError:
        fails.add(w, f"NUMBER(VA_BITS) {vi.get('NUMBER(VA_BITS)')!r} or NUMBER(TCR_EL1_T1SZ) "
                  f"{vi.get('NUMBER(TCR_EL1_T1SZ)')!r} unreadable")
        return
    if str(va_bits) != va:
        fails.add(w, f"VMCOREINFO NUMBER(VA_BITS)={va_bits} != CONFIG_ARM64_VA_BITS={va!r}")
    if 64 - t1sz not in (va_bits, 48):
        fails.add(w, f"NUMBER(TCR_EL1_T1SZ)={t1sz}: {64 - t1sz} VA bits in use, neither VA_BITS {va_bits} nor 48")
    pac = vi.get("NUMBER(KERNELPACMASK)")
    print(f"info: {where}: arm64: PAGESIZE={vi.get('PAGESIZE')}, VA_BITS={va_bits} (config {va}), "
          f"TCR_EL1_T1SZ={t1sz} ({64 - t1sz} VA bits in use), kimage_voffset={vi.get('NUMBER(kimage_voffset)')}, "
          f"PHYS_OFFSET={vi.get('NUMBER(PHYS_OFFSET)')}, KERNELPACMASK={pac if pac is not None else 'absent'}")


def check_arm64_image(results, vi, facts, release, fails, where):
    """arm64: what the image rule (phys = vaddr - kimage_voffset) read from the dump (record's image_* facts):
    the arm64 Image header at phys(_text), the banner at phys(linux_banner); and the ELF's machine."""
    w = where + " dump"
    if facts.get("format") == "elf":
        if facts.get("elf_machine") != str(EM_AARCH64):
            fails.add(w, f"ELF e_machine {facts.get('elf_machine')!r}, want {EM_AARCH64} (EM_AARCH64)")
        else:
            print(f"info: {where}: ELF e_machine {EM_AARCH64} (EM_AARCH64)")
    if not vi:
        return
    if "image_error" in facts:
        fails.add(w, f"arm64 image rule: {facts['image_error']}")
        return
    n = len(fails.items)
    try:
        voff = c_int(vi.get("NUMBER(kimage_voffset)", ""))
        vb = int(facts.get("image_banner_vaddr", ""), 16)
        pb = int(facts.get("image_banner_paddr", ""), 16)
    except ValueError:
        fails.add(w, f"arm64 image rule: facts missing: {facts.get('image_banner_vaddr')!r} "
                  f"{facts.get('image_banner_paddr')!r} kimage_voffset {vi.get('NUMBER(kimage_voffset)')!r}")
        return
    if (vb - voff) % (1 << 64) != pb:
        fails.add(w, f"arm64 image rule: linux_banner {vb:#x} - kimage_voffset {voff % (1 << 64):#x} = "
                  f"{(vb - voff) % (1 << 64):#x}, but it was read at {pb:#x}")
    want = f"Linux version {release} "
    if not facts.get("image_banner", "").startswith(want):
        fails.add(w, f"arm64 image rule: linux_banner at {pb:#x} reads {facts.get('image_banner', '')[:60]!r}, "
                  f"want {want!r}...")
    if facts.get("image_banner_in_image") != "yes":
        fails.add(w, f"arm64 image rule: the banner read at phys {pb:#x} is not the booted Image's at _text + "
                  f"{(vb - int(facts.get('image_text_vaddr', '0'), 16)) % (1 << 64):#x}: "
                  f"{facts.get('image_banner_in_image')!r}")
    if len(fails.items) == n:
        print(f"info: {where}: arm64 image rule: linux_banner {vb:#x} - kimage_voffset = phys {pb:#x}: "
              f"{facts.get('image_banner', '')[:48]!r}..., the booted Image's bytes (symbols from "
              f"{facts.get('image_symbols')})")


def check_vmcoreinfo_facts(results, vi, release, fails, w, where, host, what):
    """What an image's VMCOREINFO (dict) must say about the guest it came from: OSRELEASE, the same text as
    the guest's /proc/kcore note (same boot), 5-level paging as booted, the kallsyms tables on >= 6.0."""
    if vi.get("OSRELEASE") != release:
        fails.add(w, f"VMCOREINFO OSRELEASE {vi.get('OSRELEASE')!r} != the guest's uname -r {release!r}")
    kcore = vmcoreinfo_dict(check.read_text(os.path.join(results, "vmcoreinfo-kcore")))
    if not kcore:
        fails.add(w, "the guest recorded no VMCOREINFO from its /proc/kcore")
    else:
        a = {k: v for k, v in vi.items() if k != "CRASHTIME"}
        b = {k: v for k, v in kcore.items() if k != "CRASHTIME"}
        diff = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
        if diff:
            fails.add(w, f"VMCOREINFO of the {what} differs from the guest's /proc/kcore one on {len(diff)} keys: "
                      + "; ".join(f"{k}: dump {a.get(k)!r} kcore {b.get(k)!r}" for k in diff[:6]))
    # 5-level paging (x86_64); arm64: its own numbers.
    cpu = host.get("cpu", "")
    la57 = (check.read_text(os.path.join(results, "cpu-la57")) or "").strip()
    l5 = vi.get("NUMBER(pgtable_l5_enabled)")
    if arch_of(host) == "arm64":
        check_arm64_vmcoreinfo(vi, fails, w, where, host, what)
    elif "+la57" in cpu:
        if la57 != "yes" or l5 != "1":
            fails.add(w, f"booted with -cpu {cpu}: want la57 in the guest's /proc/cpuinfo and "
                      f"NUMBER(pgtable_l5_enabled)=1; got cpuinfo la57 {la57!r}, pgtable_l5_enabled {l5!r}")
        else:
            print(f"info: {where}: 5-level paging: -cpu {cpu}, guest cpuinfo la57 yes, NUMBER(pgtable_l5_enabled)=1")
    elif cpu:
        if la57 != "no" or l5 not in (None, "0"):
            fails.add(w, f"booted with -cpu {cpu}: want no la57 and pgtable_l5_enabled absent or 0; got cpuinfo "
                      f"la57 {la57!r}, pgtable_l5_enabled {l5!r}")
        else:
            l5_text = "NUMBER(pgtable_l5_enabled) absent" if l5 is None else f"NUMBER(pgtable_l5_enabled)={l5}"
            print(f"info: {where}: 4-level paging: -cpu {cpu}, guest cpuinfo la57 no, {l5_text}")
    else:
        fails.add(w, "host.txt does not say which -cpu the guest had")
    m = re.match(r"(\d+)\.", release)
    if m and int(m.group(1)) >= 6 and "SYMBOL(kallsyms_names)" not in vi:
        fails.add(w, f"kernel {release} (>= 6.0) without SYMBOL(kallsyms_names) in VMCOREINFO: the "
                  f"no-side-file case cannot be tested on this {what}")


def check_side_files(results, rd, vi, release, fails, where, arch="x86_64", host=None):
    w = where + " side files"
    side = os.path.join(results, "side")
    btf_path, ks_path = os.path.join(side, "btf"), os.path.join(side, "kallsyms")
    try:
        with open(btf_path, "rb") as f:
            magic = f.read(2)
        if magic != b"\x9f\xeb":
            fails.add(w, f"{btf_path} does not start with the BTF magic 0xeb9f: {magic!r}")
    except OSError as e:
        fails.add(w, f"BTF copy unreadable: {e}")
    stext = tcp_hashinfo = text = None
    try:
        with open(ks_path) as f:
            for line in f:
                p = line.split()
                if len(p) == 3 and p[2] == "_stext" and stext is None:
                    stext = int(p[0], 16)
                elif len(p) == 3 and p[2] == "tcp_hashinfo" and tcp_hashinfo is None:
                    tcp_hashinfo = int(p[0], 16)
                elif len(p) == 3 and p[2] == "_text" and text is None:
                    text = int(p[0], 16)
    except (OSError, ValueError) as e:
        fails.add(w, f"kallsyms copy unreadable: {e}")
    no_all = (host or {}).get("kallsyms_all") == "n"
    smap = {}
    if no_all:
        # Without CONFIG_KALLSYMS_ALL, /proc/kallsyms has no data symbol: tcp_hashinfo must be in the System.map.
        try:
            smap = symbols_of((host or {}).get("system_map", ""), ("_stext", "tcp_hashinfo"))
        except (OSError, ValueError) as e:
            fails.add(w, f"System.map of a kernel without CONFIG_KALLSYMS_ALL unreadable: {e}")
        if tcp_hashinfo is not None or "tcp_hashinfo" not in smap:
            fails.add(w, f"kernel without CONFIG_KALLSYMS_ALL: want tcp_hashinfo in the System.map "
                      f"({'yes' if 'tcp_hashinfo' in smap else 'no'}) and not in kallsyms ({tcp_hashinfo!r})")
        else:
            print(f"info: {where}: no CONFIG_KALLSYMS_ALL: tcp_hashinfo not in the guest's kallsyms, "
                  f"in the System.map at {smap['tcp_hashinfo']:#x}")
    if not stext or not (tcp_hashinfo or no_all):
        fails.add(w, f"kallsyms copy lacks real addresses: _stext {stext!r}, tcp_hashinfo {tcp_hashinfo!r}")
    elif vi:
        try:
            koff = int(vi.get("KERNELOFFSET", ""), 16)
        except ValueError:
            fails.add(w, f"VMCOREINFO KERNELOFFSET {vi.get('KERNELOFFSET')!r} (KASLR is on in these kernels)")
        else:
            if arch == "arm64" and "_stext" in smap:
                # The System.map's link address of _stext, as on x86_64.
                if stext - smap["_stext"] != koff:
                    fails.add(w, f"kallsyms _stext {stext:#x} - System.map _stext {smap['_stext']:#x} != VMCOREINFO "
                              f"KERNELOFFSET {koff:#x}: side files of another boot?")
                else:
                    print(f"info: {where}: kallsyms _stext {stext:#x} - System.map _stext {smap['_stext']:#x} = "
                          f"KERNELOFFSET {koff:#x}")
            elif arch == "arm64":
                # arm64: KERNELOFFSET = kimage_vaddr - KIMAGE_VADDR, the image's link address, which is
                # MODULES_END (arch/arm64/include/asm/memory.h) and _text's (vmlinux.lds.S).
                try:
                    kimage_vaddr = c_int(vi.get("NUMBER(MODULES_END)", ""))
                except ValueError:
                    fails.add(w, f"VMCOREINFO NUMBER(MODULES_END) {vi.get('NUMBER(MODULES_END)')!r} (KIMAGE_VADDR)")
                else:
                    if text is None or (text - koff) % (1 << 64) != kimage_vaddr:
                        fails.add(w, f"kallsyms _text {text if text is None else hex(text)} - VMCOREINFO KERNELOFFSET "
                                  f"{koff:#x} != KIMAGE_VADDR (NUMBER(MODULES_END)) {kimage_vaddr:#x}: "
                                  "side files of another boot?")
                    else:
                        print(f"info: {where}: kallsyms _text {text:#x} - KERNELOFFSET {koff:#x} = KIMAGE_VADDR "
                              f"{kimage_vaddr:#x} (NUMBER(MODULES_END))")
            elif stext - START_KERNEL_MAP_TEXT != koff:
                fails.add(w, f"kallsyms _stext {stext:#x} - {START_KERNEL_MAP_TEXT:#x} = "
                          f"{stext - START_KERNEL_MAP_TEXT:#x} != VMCOREINFO KERNELOFFSET {koff:#x}: "
                          "side files of another boot?")
    # The policy: self-describing dumps get no side file at all.
    try:
        argvs = [json.loads(check.read_text(os.path.join(rd, n + ".argv")) or "null") for n in ("synq-json", "synq-total")]
    except json.JSONDecodeError as e:
        fails.add(w, f"recorded synq command line unreadable: {e}")
        return
    if not all(isinstance(a, list) for a in argvs):
        fails.add(w, "synq command lines not recorded")
        return
    self_describing = "SYMBOL(kallsyms_names)" in vi
    if self_describing and no_all:
        # No side file; synq must have found tcp_hashinfo where the System.map (+ KERNELOFFSET) puts it.
        for a in argvs:
            given = [o for o in a if o in SIDE_FILE_OPTIONS]
            if given:
                fails.add(w, f"kernel without CONFIG_KALLSYMS_ALL: synq gets no side file, got {given}: {a}")
        try:
            kernel = json.loads(check.read_text(os.path.join(rd, "synq-json.out")) or "{}").get("kernel", {})
        except json.JSONDecodeError:
            kernel = {}
        m = re.search(r"tcp_hashinfo found in the kernel's data[^:]*: (0x[0-9a-f]+)", str(kernel.get("symbols", "")))
        try:
            want = (smap["tcp_hashinfo"] + int(vi.get("KERNELOFFSET", ""), 16)) % (1 << 64)
        except (KeyError, ValueError):
            want = None
        if not m or want is None or int(m.group(1), 16) != want:
            fails.add(w, f"kernel without CONFIG_KALLSYMS_ALL: synq's tcp_hashinfo "
                      f"({m.group(1) if m else 'not reported as found in the kernel data'}) != System.map + "
                      f"KERNELOFFSET ({want if want is None else hex(want)}); kernel.symbols {kernel.get('symbols')!r}")
        else:
            print(f"info: {where}: side files: none; synq found tcp_hashinfo in the kernel's data at {want:#x} = "
                  f"System.map + KERNELOFFSET")
        return
    for a in argvs:
        given = [o for o in a if o in SIDE_FILE_OPTIONS]
        if self_describing and given:
            fails.add(w, f"the dump's VMCOREINFO names the kallsyms tables, yet synq got side files {given}: {a}")
        if not self_describing and not {"--btf", "--kallsyms"} <= set(given):
            fails.add(w, f"the dump has no kallsyms in VMCOREINFO: synq must get --btf and --kallsyms: {a}")
    print(f"info: {where}: side files: " + ("none (kallsyms tables named in VMCOREINFO)" if self_describing
                                            else "--btf results/side/btf --kallsyms results/side/kallsyms"))


def check_fingerprints(rd, fails, where, what="dump"):
    w = where + " read-only"
    try:
        before = json.loads(check.read_text(os.path.join(rd, "fingerprint.before")) or "")
        after = json.loads(check.read_text(os.path.join(rd, "fingerprint.after")) or "")
    except json.JSONDecodeError as e:
        fails.add(w, f"fingerprints not recorded: {e}")
        return
    if before != after:
        diff = [k for k in sorted(set(before) | set(after)) if before.get(k) != after.get(k)]
        fails.add(w, f"the {what} changed while synq ran: " + "; ".join(
            f"{k}: {before.get(k)!r} -> {after.get(k)!r}" for k in diff))
    else:
        print(f"info: {where}: {what} unchanged by synq (size {before.get('size')}, mtime_ns, ctime_ns, mode "
              f"{before.get('mode')}, {before.get('hashed')})")


# Warnings a live memory snapshot may rightly cause: the task list moved while it was imaged (a process
# exited, its memory reused), so the owners walk met a torn list. The queues are still compared exactly.
TORN_TASK_LIST = ("process list:", "listener owners may be incomplete")


def _torn_only(base):
    """True when synq exited 2 and every warning of its JSON is a torn task list's."""
    if (check.read_text(base + ".rc") or "").strip() != "2":
        return False
    try:
        doc = json.loads(check.read_text(base + ".out") or "")
    except json.JSONDecodeError:
        return False
    ws = doc.get("warnings") if isinstance(doc, dict) else None
    return bool(ws) and all(any(t in str(x) for t in TORN_TASK_LIST) for x in ws)


def check_synq(results, rd, truth_info, young, release, fails, where, usage_note=USAGE_NOTE, live_image=False,
               data_symbols=True):
    """live_image: a snapshot taken while the kernel ran (LiME, AVML): its pages were copied at different
    moments, so a torn task list (warned, exit 2) is accepted and request timers are not compared with
    jiffies (read at another moment). data_symbols=False: the kernel's kallsyms lists no data symbols
    (check_details.check)."""
    truth, total_req, kinds, ns_dirs, mptcp_keys = truth_info
    n_truth = sum(v[0] for v in truth.values())
    syn_truth = sum(v[1] for v in truth.values())
    acc_truth = sum(v[2] for v in truth.values())
    summary = f"{len(truth)} keys, {n_truth} listeners, {len({k[0] for k in truth})} netns, syn {syn_truth}, acc {acc_truth}"
    print(f"truth {where}: {summary}")
    nfail = len(fails.items)
    w = where + " synq --core --json"
    base = os.path.join(rd, "synq-json")
    torn = live_image and _torn_only(base)
    if torn:
        print(f"info: {where}: synq exited 2 on a torn task list (the snapshot was taken live): "
              f"{(check.read_text(base + '.out') or '')[-300:]!r}")
    if torn or check_rc(base, "synq", fails, w, usage_note):
        text = check.read_text(base + ".out") or ""
        try:
            doc = json.loads(text)
        except json.JSONDecodeError as e:
            fails.add(w, f"output is not JSON ({e}); starts: {text[:300]!r}")
            doc = None
        if doc is not None:
            if not (isinstance(doc, dict) and isinstance(doc.get("listeners"), list)
                    and isinstance(doc.get("totals"), dict) and isinstance(doc.get("kernel"), dict)
                    and isinstance(doc.get("warnings"), list)):
                fails.add(w, "lacks listeners (list) / totals / kernel (objects) / warnings (list); top-level: "
                          f"{list(doc) if isinstance(doc, dict) else type(doc).__name__}")
            else:
                ws = [x for x in doc["warnings"] if not (torn and any(t in str(x) for t in TORN_TASK_LIST))]
                if ws:
                    fails.add(w, "warnings:\n  " + "\n  ".join(map(str, ws)))
                rel = doc["kernel"].get("release")
                if rel != release:
                    fails.add(w, f"kernel.release {rel!r} != the guest's uname -r {release!r}")
                got, got_bl = check.synq_groups(doc, fails, w)
                n_label, n_null = check.check_kinds(doc, kinds, fails, w)
                check.compare_groups("/proc", truth, "synq", got, fails, w + " (per key)")
                # No /proc snapshot exists at the dump's instant: young counts only fall, so 0..snapshot.
                check.check_young(doc, young, {}, fails, w)
                t = doc["totals"]
                for f, v in {"listeners": n_truth, "syn_queue": syn_truth, "accept_queue": acc_truth}.items():
                    if t.get(f) != v:
                        fails.add(w, f"totals.{f} = {t.get(f)!r}, ground truth {v}")
                if t.get("listeners") != len(doc["listeners"]):
                    fails.add(w, f"totals.listeners {t.get('listeners')!r} != len(listeners) {len(doc['listeners'])}")
                ss = check.ss_backlogs(ns_dirs)
                if ss is None:
                    fails.add(w, "no ss -ltn snapshot to compare max_backlog with")
                else:
                    bad = [k for k in sorted(set(ss) | set(got_bl)) if ss.get(k) != got_bl.get(k)]
                    if bad:
                        fails.add(w, f"max_backlog differs from ss -ltn Send-Q on {len(bad)} keys, e.g. " + "; ".join(
                            f"{check.fmt_key(k)}: ss {ss.get(k)} synq {got_bl.get(k)}" for k in bad[:5]))
                # Drops are stable by then (the fixture closed the clients it had dropped): the dump must show
                # the ground truth recorded before it.
                details = check_details.check(doc, os.path.join(results, "basic"), ns_dirs, fails, w,
                                              after_suffix=".none", atomic=not live_image,
                                              data_symbols=data_symbols)
                print(f"info: {where}: kinds: {n_label} {check.MPTCP_KIND}, {n_null} null; symbols from "
                      f"{doc['kernel'].get('symbols')!r}")
                print(f"info: {where}: {details}")
    w = where + " synq --core --total"
    base = os.path.join(rd, "synq-total")
    if check_rc(base, "synq", fails, w, usage_note):
        out = (check.read_text(base + ".out") or "").strip()
        if not re.fullmatch(r"\d+", out):
            fails.add(w, f"printed {out[:200]!r}, not a single integer")
        elif int(out) != total_req:
            fails.add(w, f"= {out}, ground truth {total_req} st 03 lines in all namespaces")
    return summary if len(fails.items) == nfail else None


# ---------------------------------------------------------------------------------------------------------
# Selftest: planted defects in copies of the recorded run must fail.

def _json_plant(fn):
    def plant(path):
        with open(path) as f:
            doc = json.load(f)
        fn(doc)
        with open(path, "w") as f:
            json.dump(doc, f)
    return plant


def _edit(fn):
    def plant(path):
        write(path, fn(check.read_text(path) or ""))
    return plant


def _set_line(key, value):
    """Replaces (or adds, or with value None removes) the KEY=... line of a key=value file."""
    def fn(text):
        lines = [l for l in text.splitlines() if not l.startswith(key + "=")]
        if value is not None:
            lines.append(f"{key}={value}")
        return "\n".join(lines) + "\n"
    return _edit(fn)


def _bump_max_backlog(doc):
    doc["listeners"][0]["max_backlog"] += 1


def _release(doc):
    doc["kernel"]["release"] = "0.0.0-selftest"


def _bump_layout(doc):
    k = next(k for k, v in sorted(doc.items()) if isinstance(v, int) and not isinstance(v, bool))
    doc[k] += 8


def _host_btf(doc):
    doc["btf"] = "/sys/kernel/btf/vmlinux"


def _fp_hash(doc):
    doc["hash"] = "0" * 64


def _fp_mtime(doc):
    doc["mtime_ns"] += 1


def _add_side_file(path):
    a = json.loads(check.read_text(path))
    write(path, json.dumps(a + ["--btf", "/sys/kernel/btf/vmlinux"]) + "\n")


@_edit
def _shift_found_hashinfo(text):
    return re.sub(r"(tcp_hashinfo found in the kernel's data[^:]*: )0x([0-9a-f]+)",
                  lambda m: f"{m.group(1)}{int(m.group(2), 16) + 8:#x}", text)


def _drop_arg(opt):
    def plant(path):
        a = json.loads(check.read_text(path))
        i = a.index(opt)
        write(path, json.dumps(a[:i] + a[i + 2:]) + "\n")
    return plant


def _drop_kallsyms_arg(path):
    a = json.loads(check.read_text(path))
    i = a.index("--kallsyms")
    write(path, json.dumps(a[:i] + a[i + 2:]) + "\n")


def _bump_expect(text):
    lines = text.splitlines()
    p = lines[0].split()
    p[5] = str(int(p[5]) + 1)
    lines[0] = " ".join(p)
    return "\n".join(lines) + "\n"


def selftest_cases(outdir, rd):
    """name -> (path relative to the copy of OUTDIR, planting function, text a failure must contain)."""
    r = os.path.basename(rd)
    vi = vmcoreinfo_dict(check.read_text(os.path.join(rd, "vmcoreinfo.txt")))
    host = read_kv(os.path.join(outdir, "host.txt"))
    facts = read_kv(os.path.join(rd, "dump.txt"))
    la57 = "+la57" in host.get("cpu", "")
    arm64 = arch_of(host) == "arm64"
    mptcp = (check.read_text(os.path.join(outdir, "results", "mptcp", "sysctl")) or "").strip() not in ("", "absent")
    j = f"{r}/synq-json.out"
    novmci = host.get("vmcoreinfo_device") == "no"
    # Booted without -device vmcoreinfo: the dump has none; the guest's kcore copy stands in for it.
    vfile = "results/vmcoreinfo-kcore" if novmci else f"{r}/vmcoreinfo.txt"
    if novmci:
        vi = vmcoreinfo_dict(check.read_text(os.path.join(outdir, vfile)))
    cases = {
        "syn_queue +1 on one key": (j, _json_plant(check._bump_syn), "per key"),
        "accept entry moved between keys": (j, _json_plant(check._move_acc), "per key"),
        "one listener dropped (totals adjusted)": (j, _json_plant(check._drop_listener), "per key"),
        "wrong netns on one listener": (j, _json_plant(check._wrong_netns), "per key"),
        "a warning": (j, _json_plant(check._warn), "warnings"),
        "kernel.release wrong": (j, _json_plant(_release), "kernel.release"),
        "max_backlog +1": (j, _json_plant(_bump_max_backlog), "max_backlog"),
        "kind field missing": (j, _json_plant(check._kind_missing), "kind"),
        "--total off by one": (f"{r}/synq-total.out", check._bump_total, "--total"),
        "exit code 2 (partial)": (f"{r}/synq-json.rc", check._write("2\n"), "exit 2"),
        "dump bytes changed": (f"{r}/fingerprint.after", _json_plant(_fp_hash), "read-only"),
        "dump mtime changed": (f"{r}/fingerprint.after", _json_plant(_fp_mtime), "read-only"),
        "OSRELEASE of another kernel": (vfile, _set_line("OSRELEASE", "0.0.0-selftest"), "OSRELEASE"),
        "KERNELOFFSET of another boot": (vfile,
                                         _set_line("KERNELOFFSET", "%x" % (int(vi.get("KERNELOFFSET", "0"), 16) + 0x200000)),
                                         "KERNELOFFSET"),
        "no VMCOREINFO in the dump": (f"{r}/vmcoreinfo.txt", check._write(""), "VMCOREINFO"),
        "VMCOREINFO in a dump booted without -device vmcoreinfo": (
            f"{r}/vmcoreinfo.txt", check._write("OSRELEASE=x\n"), "without -device vmcoreinfo"),
        "state moved around the dumps": ("host.txt", _set_line("state_stable", "no"), "state watch"),
        "fixture EXPECT differs from /proc": ("results/basic/ns1/expect", _edit(_bump_expect), "scenario as built"),
        "kallsyms side file without addresses": ("results/side/kallsyms", check._write("0000000000000000 T _stext\n"),
                                                 "side files"),
        "layout --core off by one field": (f"{r}/synq-layout.out", _json_plant(_bump_layout), "layout --core"),
        "layout --core from the host's BTF": (f"{r}/synq-layout.out", _json_plant(_host_btf), "layout --core"),
    }
    if novmci:
        del cases["no VMCOREINFO in the dump"]
    else:
        del cases["VMCOREINFO in a dump booted without -device vmcoreinfo"]
    if arm64:
        other = "65536" if vi.get("PAGESIZE") != "65536" else "4096"
        cases["PAGESIZE of another page size"] = (vfile, _set_line("PAGESIZE", other), "PAGESIZE")
        cases["no TCR_EL1_T1SZ in VMCOREINFO"] = (vfile, _set_line("NUMBER(TCR_EL1_T1SZ)", None), "TCR_EL1_T1SZ")
        cases["VA_BITS other than the config's"] = ("host.txt", _set_line("va_bits", "39"), "VA_BITS")
        cases["the banner differs from the Image's"] = (
            f"{r}/dump.txt", _set_line("image_banner_in_image", "no"), "arm64 image rule")
        cases["kimage_voffset off by one page"] = (
            vfile, _set_line("NUMBER(kimage_voffset)",
                             "%#x" % ((c_int(vi.get("NUMBER(kimage_voffset)", "0")) + 0x1000) % (1 << 64))),
            "arm64 image rule")
        cases["banner of another kernel"] = (f"{r}/dump.txt", _set_line("image_banner", "Linux version 0.0.0 "),
                                             "arm64 image rule")
        if facts.get("format") == "elf":
            cases["ELF e_machine x86-64 (62) on an arm64 dump"] = (f"{r}/dump.txt", _set_line("elf_machine", "62"),
                                                                   "e_machine")
    elif la57:
        cases["pgtable_l5_enabled=0 on a +la57 boot"] = (vfile, _set_line("NUMBER(pgtable_l5_enabled)", "0"),
                                                         "pgtable_l5_enabled")
        cases["no la57 in the guest's cpuinfo on a +la57 boot"] = ("results/cpu-la57", check._write("no\n"), "la57")
    else:
        cases["pgtable_l5_enabled=1 on a -la57 boot"] = (vfile, _set_line("NUMBER(pgtable_l5_enabled)", "1"),
                                                         "pgtable_l5_enabled")
    if host.get("kallsyms_all") == "n":
        cases["--btf added for a kernel without KALLSYMS_ALL"] = (f"{r}/synq-json.argv", _add_side_file, "side files")
        cases["owners invented without data symbols"] = (f"{r}/synq-json.out", _json_plant(
            lambda d: d["listeners"][0].update(owners=[{"pid": 1, "comm": "init"}])), "owners")
        cases["tcp_hashinfo found 8 bytes off (no KALLSYMS_ALL)"] = (f"{r}/synq-json.out", _shift_found_hashinfo,
                                                                     "tcp_hashinfo")
    elif "SYMBOL(kallsyms_names)" in vi:
        cases["side file given to a self-describing dump"] = (f"{r}/synq-json.argv", _add_side_file, "side files")
        cases["kallsyms tables missing from VMCOREINFO of a 6.x dump"] = (
            vfile, _set_line("SYMBOL(kallsyms_names)", None), "kallsyms_names")
    else:
        cases["no --kallsyms for a dump without kallsyms tables"] = (f"{r}/synq-total.argv", _drop_kallsyms_arg,
                                                                    "side files")
    if mptcp:
        cases["kind null on the MPTCP subflow"] = (j, _json_plant(check._kind_mptcp_to_null), "kind")
    else:
        cases["kind mptcp-subflow on a plain listener"] = (j, _json_plant(check._kind_plain_to_mptcp), "kind")
    if facts.get("format", "").startswith("kdump"):
        cases["sub-header phys_base differs from VMCOREINFO"] = (
            f"{r}/dump.txt", _set_line("kdump_sub_phys_base", str(int(facts.get("kdump_sub_phys_base", "0")) + 4096)),
            "phys_base")
    return cases


def quiet_judge(outdir, rd):
    with contextlib.redirect_stdout(io.StringIO()):
        return judge(outdir, rd)


def plant_and_judge(outdir, rd, cases, judge_fn):
    """Each case planted in a fresh copy of OUTDIR's results/ and host.txt and of the run directory rd;
    judge_fn(copy of OUTDIR, copy of rd) must then fail, on an item containing the case's text. Returns the
    cases that were not detected (or could not be planted)."""
    missed = []
    with tempfile.TemporaryDirectory() as tmp:
        for name, (rel, plant, must) in cases.items():
            d = os.path.join(tmp, "o")
            shutil.rmtree(d, ignore_errors=True)
            os.makedirs(d)
            shutil.copytree(os.path.join(outdir, "results"), os.path.join(d, "results"))
            shutil.copy(os.path.join(outdir, "host.txt"), os.path.join(d, "host.txt"))
            drd = os.path.join(d, os.path.basename(rd))
            shutil.copytree(rd, drd)
            try:
                plant(os.path.join(d, rel))
            except (OSError, ValueError, KeyError, StopIteration, IndexError, TypeError) as e:
                missed.append(f"{name} (could not plant: {e!r})")
                continue
            f = judge_fn(d, drd)[0]
            if not f.items:
                missed.append(name)
            elif must and not any(must in item for item in f.items):
                missed.append(f"{name} (failed, but not on {must!r}: {f.items[:2]})")
    return missed


def selftest(outdir, dump):
    rd = run_dir_of(outdir, dump)
    if not os.path.isdir(rd):
        print(f"selftest: no recorded run in {rd}; run check_dump.py {outdir} {dump} first")
        return 1
    fails, _, _ = quiet_judge(outdir, rd)
    if fails.items:
        print(f"selftest: the recorded run does not pass to begin with ({len(fails.items)} failures, first: "
              f"{fails.items[0][:300]}); run the plain check first")
        return 1
    cases = selftest_cases(outdir, rd)
    missed = plant_and_judge(outdir, rd, cases, quiet_judge)
    if missed:
        print(f"selftest: FAILED: planted defects NOT detected: {missed}")
        return 1
    print(f"selftest: OK: all {len(cases)} planted defects detected")
    return 0


# ---------------------------------------------------------------------------------------------------------
# Damaged copies (issue 3, "Truncated and corrupted dumps"): each must give a clear error or a partial result
# with warnings, never a panic, a signal or a hang.

DAMAGE_TIMEOUT = 20
DAMAGE_BLOCK = 4096


def copy_prefix(src, dst, n):
    """dst = the first n bytes of src (copy_file_range where the kernel has it)."""
    with open(src, "rb") as fi, open(dst, "wb") as fo:
        left = n
        while left:
            try:
                k = os.copy_file_range(fi.fileno(), fo.fileno(), left)
            except (OSError, AttributeError):
                k = 0
            if k <= 0:
                b = fi.read(min(left, 8 << 20))
                if not b:
                    break
                fo.write(b)
                k = len(b)
            left -= k


def logical_writer(path, flattened):
    """A function writing bytes at a logical offset of a copy (through the flattened records if any), and the
    reader of the copy's logical content."""
    f = open(path, "r+b")
    r = FlatReader(f) if flattened else PlainReader(f)

    def put(off, data):
        """Overwrites what the copy holds of [off, off + len(data)); returns how many bytes that was."""
        if not flattened:
            f.seek(off)
            f.write(data)
            return len(data)
        done = 0
        for r_off, r_size, fpos in r.records:
            lo, hi = max(off, r_off), min(off + len(data), r_off + r_size)
            if lo < hi:
                f.seek(fpos + lo - r_off)
                f.write(data[lo - off:hi - off])
                done += hi - lo
        return done
    return f, r, put


def garble_kdump(src, dst, what, vi):
    """A full copy of the kdump file src with deterministic pseudo-random bytes over: "header" the
    disk_dump_header (bytes 8..4095 of block 0, as far as the stream holds them; the signature kept);
    "descriptors" three 4 KiB blocks of the page-descriptor area (at 1/4, 1/2, 3/4 of it); "swapper" the 4 KiB
    block of that area holding the descriptor of the page of SYMBOL(swapper_pg_dir) (the page-table root).
    Returns a description of what was overwritten."""
    import random
    rng = random.Random("synq-damage-" + what)
    copy_prefix(src, dst, os.path.getsize(src))
    f, r, put = logical_writer(dst, dump_format(src) == "kdump-flattened")
    with f:
        h = r.read(0, 464)
        _, block_size, sub_hdr_size, bitmap_blocks, _ = struct.unpack_from("<IiiII", h, 424)
        if what == "header":
            n = put(8, rng.randbytes(DAMAGE_BLOCK - 8))
            return f"disk_dump_header: {n} bytes after the signature random"
        bitmap_off = (1 + sub_hdr_size) * block_size
        half = bitmap_blocks * block_size // 2
        bitmap2 = r.read(bitmap_off + half, half)
        n_desc = sum(bin(b).count("1") for b in bitmap2)
        start = bitmap_off + bitmap_blocks * block_size
        area = n_desc * 24
        if what == "descriptors":
            offs = [start + (area * k // 4) // DAMAGE_BLOCK * DAMAGE_BLOCK for k in (1, 2, 3)]
        elif "NUMBER(kimage_voffset)" in vi:
            # arm64 kernel image: phys = vaddr - kimage_voffset; pfns count block_size pages.
            pfn = ((int(vi["SYMBOL(swapper_pg_dir)"], 16) - c_int(vi["NUMBER(kimage_voffset)"])) % (1 << 64)) // block_size
        else:
            # x86_64 kernel image: phys = vaddr - __START_KERNEL_map + phys_base.
            pfn = (int(vi["SYMBOL(swapper_pg_dir)"], 16) - 0xFFFFFFFF80000000 + c_int(vi["NUMBER(phys_base)"])) >> 12
            if not (bitmap2[pfn >> 3] >> (pfn & 7)) & 1:
                raise DumpError(f"pfn {pfn:#x} of swapper_pg_dir is not in the dump")
            idx = sum(bin(b).count("1") for b in bitmap2[:pfn >> 3]) + bin(bitmap2[pfn >> 3] & ((1 << (pfn & 7)) - 1)).count("1")
            offs = [(start + idx * 24) // DAMAGE_BLOCK * DAMAGE_BLOCK]
        n = sum(put(o, rng.randbytes(DAMAGE_BLOCK)) for o in offs)
        return (f"{n_desc} page descriptors at {start:#x}+{area:#x}; {n} bytes random at "
                + ", ".join(f"{o:#x}" for o in offs))


def damage_cases(kdump, elf):
    """(name, source, kind, argument): kind "cut" (argument: new size) or "garble" (argument: what)."""
    cases = []
    for label, src, points in (
            ("kdump-zlib", kdump, ("4KiB", "1MiB", "10%", "50%", "90%", "size-1")),
            ("elf", elf, ("4KiB", "1MiB", "50%"))):
        size = os.path.getsize(src)
        for p in points:
            n = {"4KiB": 4096, "1MiB": 1 << 20, "size-1": size - 1}.get(p) or size * int(p[:-1]) // 100
            if 0 < n < size:
                cases.append((f"{label} cut at {p} ({n} of {size} bytes)", src, "cut", n))
    cases.append(("kdump-zlib garbled header", kdump, "garble", "header"))
    cases.append(("kdump-zlib garbled page descriptors", kdump, "garble", "descriptors"))
    cases.append(("kdump-zlib garbled page descriptors around swapper_pg_dir's", kdump, "garble", "swapper"))
    return cases


def damage(outdir, kdump, elf):
    """Runs synq --core --json on damaged copies of the kernel's dumps (next to them, removed afterwards unless
    SYNQ_KEEP_DUMPS=1). Prints one line per case; exit status 0 only if every case behaves."""
    results = os.path.join(outdir, "results")
    release = (check.read_text(os.path.join(results, "release")) or "").strip()
    host = read_kv(os.path.join(outdir, "host.txt"))
    with contextlib.redirect_stdout(io.StringIO()):
        tfails = check.Failures()
        truth_info, _ = check_truth(results, release, tfails, "truth", host)
    if truth_info is None:
        print(f"damage: FAIL: no ground truth to compare with: {tfails.items[:1]}")
        return 1
    truth = truth_info[0]
    vi = vmcoreinfo_dict(check.read_text(os.path.join(run_dir_of(outdir, kdump), "vmcoreinfo.txt")))
    side = [] if "SYMBOL(kallsyms_names)" in vi else [
        "--btf", os.path.join(results, "side", "btf"), "--kallsyms", os.path.join(results, "side", "kallsyms")]
    keep = os.environ.get("SYNQ_KEEP_DUMPS", "0") == "1"
    bad = 0
    cases = damage_cases(kdump, elf)
    for i, (name, src, kind, arg) in enumerate(cases):
        copy = os.path.join(os.path.dirname(os.path.abspath(kdump)), f"vmcore.damage-{i:02d}")
        note = ""
        try:
            if kind == "cut":
                copy_prefix(src, copy, arg)
            else:
                note = garble_kdump(src, copy, arg, vi)
            os.chmod(copy, 0o400)
            argv = ["timeout", "-k", "5", str(DAMAGE_TIMEOUT), synq_bin(), "--core", copy, "--json"] + side
            p = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True)
        except (OSError, DumpError, struct.error, KeyError, ValueError, IndexError) as e:
            print(f"damage: {name}: FAIL: could not make or run the copy: {e}")
            bad += 1
            continue
        finally:
            if not keep:
                with contextlib.suppress(OSError):
                    os.unlink(copy)
        rc, err = p.returncode, p.stderr.decode(errors="replace")
        first = next((l for l in err.splitlines() if l.strip()), "")
        problem = None
        detail = first or "(no stderr)"
        if "panicked" in err:
            problem = "panicked: " + next(l for l in err.splitlines() if "panicked" in l)
        elif rc == 124 or rc == 137:
            problem = f"did not finish within {DAMAGE_TIMEOUT}s"
        elif rc < 0 or rc >= 128:
            problem = f"killed by signal {-rc if rc < 0 else rc - 128}"
        elif rc == 1:
            if not any(l.startswith("synq: ") for l in err.splitlines()):
                problem = "exit 1 without a 'synq: ' message on stderr"
            elif p.stdout.strip():
                problem = f"exit 1 but printed on stdout: {p.stdout[:200]!r}"
        elif rc in (0, 2):
            try:
                doc = json.loads(p.stdout)
                ls, ws = doc["listeners"], doc["warnings"]
                if not isinstance(ls, list) or not isinstance(ws, list) or not isinstance(doc.get("totals"), dict):
                    raise TypeError("listeners / warnings not lists, or no totals")
            except (ValueError, KeyError, TypeError) as e:
                problem = f"exit {rc} without valid JSON ({e}); stdout starts {p.stdout[:200]!r}"
            else:
                detail = f"{len(ls)} listeners, {len(ws)} warnings"
                if ws:
                    detail += f" (first: {str(ws[0])[:160]})"
                f = check.Failures()
                with contextlib.redirect_stdout(io.StringIO()):
                    got, _ = check.synq_groups(doc, f, "damage")
                    check.compare_groups("/proc", truth, "synq", got, f, "damage")
                    if doc.get("kernel", {}).get("release") != release:
                        f.add("damage", f"kernel.release {doc.get('kernel', {}).get('release')!r}")
                if rc == 0 and kind == "cut":
                    # A cut file lacks part of what its headers promise: never a complete answer.
                    problem = "a truncated dump reported as complete (exit 0, no warning)"
                elif rc == 0 and (ws or f.items):
                    problem = ("exit 0 with warnings" if ws else
                               "exit 0 but the result differs from the ground truth: " + f.items[0][:300])
                elif rc == 2 and not ws:
                    problem = "exit 2 without a warning"
                elif rc == 0:
                    detail += ", equal to the ground truth"
        else:
            problem = f"unexpected exit status {rc}"
        print(f"damage: {name}: exit {rc}, {detail}" + (f" [{note}]" if note else "")
              + (f" -- FAIL: {problem}" if problem else ""))
        if problem:
            bad += 1
            if err.strip():
                print("  stderr: " + err.strip()[-1500:].replace("\n", "\n  stderr: "))
    print(f"damage: {len(cases) - bad} of {len(cases)} cases OK" + (" (copies kept)" if keep else ""))
    return 1 if bad else 0


def main():
    args = sys.argv[1:]
    if len(args) == 3 and args[0] == "--selftest":
        return selftest(args[1], args[2])
    if len(args) == 4 and args[0] == "--damage":
        return damage(args[1], args[2], args[3])
    if len(args) != 2 or args[0].startswith("-"):
        print(__doc__, file=sys.stderr)
        return 2
    outdir, dump = args
    if not os.path.isdir(os.path.join(outdir, "results")):
        print(f"check_dump.py: {outdir}/results missing: OUTDIR is dump.sh's target/realkernel/dump-<id>",
              file=sys.stderr)
        return 2
    if not os.path.isfile(dump):
        print(f"check_dump.py: {dump}: no such dump", file=sys.stderr)
        return 2
    rd = record(outdir, dump)
    fails, summary, release = judge(outdir, rd)
    fmt = read_kv(os.path.join(rd, "dump.txt")).get("format", "?")
    if fails.items:
        print(f"check: FAILED [{release or '?'}] {fmt} {dump}: {len(fails.items)} problem(s)")
        return 1
    print(f"check: OK [{release}] {fmt}: synq --core equals the ground truth ({summary}); dump unchanged")
    return 0


if __name__ == "__main__":
    sys.exit(main())
