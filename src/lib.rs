//! synq: per-listener TCP SYN and accept queues, read from kernel memory without loading code into the kernel.
//!
//! The data flows one way: source → translation → symbols and types → layout → walk → report.
//! - [`memory`]: the two memory traits (kernel virtual, physical) and read faults.
//! - [`source`]: the input formats: live kcore, crash dumps.
//! - [`arch`]: address translation for sources that hold physical memory.
//! - [`vmcoreinfo`]: the kernel's self-description; [`discover`]: finding it by scanning a snapshot.
//! - [`symbols`] and [`btf`]: symbol addresses, and struct layouts from BTF.
//! - [`walk`]: the listening-hash walk and queue sums.
//! - [`report`] and [`app`]: output and the commands.

// Panics in dependencies (btf-rs asserts some invariants with `expect`) are contained with `catch_unwind`
// where untrusted input reaches them. A `panic = "abort"` profile would silently turn each of those into an
// abort of the whole run: refuse to build that way.
#[cfg(panic = "abort")]
compile_error!(
    "synq must be built with panic = \"unwind\": catch_unwind contains panics of dependencies on untrusted \
     input (btf-rs), and panic = \"abort\" would make each of them abort the run"
);

pub mod app;
pub mod arch;
pub mod btf;
pub mod discover;
pub mod doctor;
#[doc(hidden)]
pub mod fuzzing;
pub mod input;
pub mod memory;
pub mod metrics;
pub mod privdrop;
pub mod report;
pub mod serve;
pub mod session;
pub mod source;
pub mod symbols;
pub mod target;
pub mod vmcoreinfo;
pub mod walk;
pub mod watch;
