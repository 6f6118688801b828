//! Kernel virtual → physical address translation, one file per architecture.

pub mod x86_64;
