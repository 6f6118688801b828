#!/usr/bin/env python3
"""The walk synq does, done with drgn on a crash dump, without DWARF (for bench/dump-bench.sh).

Usage: drgn_walk.py DUMP KALLSYMS LAYOUT_JSON

DUMP: an ELF or kdump-compressed vmcore (drgn opens kdump only when its wheel has libkdumpfile).
KALLSYMS: the guest's /proc/kallsyms (side file), loaded into drgn as its only symbol source.
LAYOUT_JSON: `synq layout --btf BTF --json` of the guest's BTF: drgn has no BTF type support, so the
offsets come from there and the walk uses raw reads (prog.read / prog.read_u64).

Walks tcp_hashinfo's listening table (lhash2 on 5.19+, listening_hash before) following the
(nulls) lists, keeps TCP_LISTEN sockets of AF_INET/AF_INET6, and sums the SYN queue (qlen at
qlen_offset, a 32-bit atomic). Prints one JSON line: drgn version, total, listener count, and
perf_counter timings (open, symbols, walk, all) in ms. Exit 1 with the failing step on stderr.
"""
import json
import os
import struct
import sys
import time

T0 = time.perf_counter()
import drgn  # noqa: E402  (import time is part of what is measured)

TCP_LISTEN = 10
AF_INET, AF_INET6 = 2, 10
MAX_CHAIN = 100_000


def load_kallsyms(prog, path):
    """drgn's own /proc/kallsyms parser (drgn.helpers.linux.kallsyms), else a plain parse."""
    try:
        from drgn.helpers.linux.kallsyms import _load_proc_kallsyms

        try:
            index = _load_proc_kallsyms(path, False)
        except TypeError:
            index = _load_proc_kallsyms(path)
        how = "drgn _load_proc_kallsyms"
    except Exception as e:  # noqa: BLE001
        syms = []
        with open(path) as f:
            for line in f:
                parts = line.split()
                if len(parts) < 3 or len(parts) > 3:
                    continue
                kind = drgn.SymbolKind.FUNC if parts[1] in "tTwW" else drgn.SymbolKind.OBJECT
                binding = drgn.SymbolBinding.GLOBAL if parts[1].isupper() else drgn.SymbolBinding.LOCAL
                syms.append(drgn.Symbol(parts[2], int(parts[0], 16), 0, binding, kind))
        index = drgn.SymbolIndex(syms)
        how = f"python parse into drgn.SymbolIndex ({type(e).__name__}: {e})"
    prog.register_symbol_finder("kallsyms-file", index, enable_index=0)
    return how


def main():
    dump, kallsyms, layout_path = sys.argv[1:4]
    with open(layout_path) as f:
        lay = json.load(f)
    step = "open the dump (Program.set_core_dump)"
    try:
        platform = "from the dump"
        prog = drgn.Program()
        try:
            prog.set_core_dump(dump)
        except Exception as e:  # noqa: BLE001
            # QEMU's kdump-compressed dumps leave the utsname empty except `machine`: libkdumpfile then
            # finds no architecture ("KDUMP_ATTR_ARCH_NAME: Key has no value"). Tell drgn the architecture
            # (DRGN_ARCH: x86_64, the default, or aarch64; the failed attempt stays in the timings).
            if "ARCH_NAME" not in str(e):
                raise
            arch = os.environ.get("DRGN_ARCH", "x86_64")
            platform = f"explicit {arch} (default failed: {e})"
            prog = drgn.Program(drgn.Platform(
                drgn.Architecture.AARCH64 if arch == "aarch64" else drgn.Architecture.X86_64,
                drgn.PlatformFlags.IS_64_BIT | drgn.PlatformFlags.IS_LITTLE_ENDIAN))
            prog.set_core_dump(dump)
        t_open = time.perf_counter()
        step = "load the kallsyms file"
        how = load_kallsyms(prog, kallsyms)
        step = "look up tcp_hashinfo"
        hashinfo = prog.symbol("tcp_hashinfo").address
        t_sym = time.perf_counter()
        step = "walk the listening table"
        total, listeners, buckets = walk(prog, lay, hashinfo)
        t_walk = time.perf_counter()
    except Exception as e:  # noqa: BLE001
        print(f"drgn_walk: {step} failed: {type(e).__name__}: {e}", file=sys.stderr)
        sys.exit(1)
    ms = lambda a, b: round((b - a) * 1000, 2)  # noqa: E731
    print(json.dumps({
        "drgn": drgn.__version__,
        "kallsyms_loader": how,
        "flags": str(prog.flags),
        "platform": platform,
        "table": lay["table"],
        "buckets": buckets,
        "listeners": listeners,
        "total": total,
        "ms_import_open": ms(T0, t_open),
        "ms_symbols": ms(t_open, t_sym),
        "ms_walk": ms(t_sym, t_walk),
        "ms_all": ms(T0, t_walk),
    }))


def walk(prog, lay, hashinfo):
    ps = lay["pointer_size"]
    assert ps == 8, "64-bit only"
    if lay["table"] == "lhash2":
        base = prog.read_u64(hashinfo + lay["lhash2_offset"])
        mask = prog.read_u32(hashinfo + lay["lhash2_mask_offset"])
        buckets = mask + 1
    else:
        base = hashinfo + lay["listening_hash_offset"]
        buckets = lay["listening_hash_buckets"]
    bsize, hoff, link = lay["bucket_size"], lay["bucket_head_offset"], lay["link_offset"]
    span = lay["sock_read_bytes"]
    st, fam, qoff = lay["state_offset"], lay["family_offset"], lay["qlen_offset"]
    heads = prog.read(base, buckets * bsize)
    total = listeners = 0
    for i in range(buckets):
        (node,) = struct.unpack_from("<Q", heads, i * bsize + hoff)
        seen = set()
        while node and not node & 1:
            sk = node - link
            if sk in seen or len(seen) > MAX_CHAIN:
                raise RuntimeError(f"bucket {i}: cycle or runaway chain at {sk:#x}")
            seen.add(sk)
            b = prog.read(sk, span)
            # hlist(_nulls)_node.next is the node's first member.
            (node,) = struct.unpack_from("<Q", b, link)
            if b[st] != TCP_LISTEN:
                continue
            if struct.unpack_from("<H", b, fam)[0] not in (AF_INET, AF_INET6):
                continue
            listeners += 1
            total += struct.unpack_from("<I", b, qoff)[0]
    return total, listeners, buckets


if __name__ == "__main__":
    main()
