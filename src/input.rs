//! Opening the files a user names (`--core`, `--kcore`, `--btf`, `--vmlinux`, `--kallsyms`, `--system-map`,
//! `--vmcoreinfo`) and the kernel's own (`/proc/kcore`, `/sys/kernel/btf/vmlinux`, `/proc/kallsyms`): read-only,
//! never blocking, regular files only. A FIFO given by mistake (or on purpose) would otherwise block `open`
//! until a writer appears; a device or a directory is no input either. The kernel's special files are
//! regular files of procfs and sysfs.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Opens `path` with O_RDONLY | O_NONBLOCK | O_CLOEXEC and checks that it is a regular file. The error for
/// anything else is [`io::ErrorKind::InvalidInput`], saying what it is.
pub fn open_regular(path: &Path) -> io::Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(path)?;
    let ft = file.metadata()?.file_type();
    if ft.is_file() {
        return Ok(file);
    }
    use std::os::unix::fs::FileTypeExt;
    let what = if ft.is_fifo() {
        "a FIFO"
    } else if ft.is_dir() {
        "a directory"
    } else if ft.is_char_device() || ft.is_block_device() {
        "a device"
    } else if ft.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    };
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{what}, not a regular file: give a file (save a stream to a file first)"),
    ))
}

/// At most `max` bytes of a small file (`/proc/version`, a sysctl), opened as [`open_regular`] opens it.
pub fn read_small(path: &Path, max: u64) -> io::Result<Vec<u8>> {
    read_capped(open_regular(path)?, max)
}

/// At most `max` bytes of `file`, from where it stands.
pub fn read_capped(file: File, max: u64) -> io::Result<Vec<u8>> {
    use io::Read;
    let mut bytes = Vec::new();
    file.take(max).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// Whether `err` is [`open_regular`]'s refusal of a file that is not regular.
pub fn is_not_regular(err: &io::Error) -> bool {
    err.kind() == io::ErrorKind::InvalidInput
}
