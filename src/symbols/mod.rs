//! Kernel symbol addresses: the kernel's own in-memory kallsyms tables, `/proc/kallsyms` and System.map
//! text files, and an ELF vmlinux.

pub mod kallsyms_mem;
pub mod text;
pub mod vmlinux;
