//! synq: per-listener TCP SYN and accept queues, read from kernel memory without loading code into the kernel.
//!
//! - [`btf`]: struct layouts from BTF, for every kernel era.
//! - [`kcore`]: memory sources, symbols and address translation.
//! - [`walk`]: the listening-hash walk and queue sums.
//! - [`report`] and [`app`]: output and the command line.

pub mod app;
pub mod btf;
pub mod kcore;
pub mod report;
pub mod walk;
