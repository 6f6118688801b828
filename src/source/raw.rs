//! Raw physical memory images: LiME's `padded` format, QEMU's `pmemsave`, copies of `/dev/mem` or
//! `/dev/crash`. Byte N of the file is physical address N; there is no header, no magic and no list of
//! what is RAM, so such a file is read as one only when the user says so (`--raw`). Holes (MMIO, reserved
//! ranges) are in the file as whatever the producer wrote there, usually zeros. Reads past the end of the
//! file are not in the image.

use std::any::Any;
use std::ops::Range;

use super::{DumpFormat, FormatKind, PhysSource};
use crate::arch::Machine;
use crate::memory::{PhysMemory, ReadError, read_split};

/// A raw image over the file's bytes.
pub struct Raw<D> {
    data: D,
}

impl<D: AsRef<[u8]>> Raw<D> {
    pub fn new(data: D) -> Raw<D> {
        Raw { data }
    }
}

impl<D: AsRef<[u8]>> PhysMemory for Raw<D> {
    fn read_phys(&self, paddr: u64, buf: &mut [u8]) -> Result<(), ReadError> {
        let file = self.data.as_ref();
        read_split(paddr, buf, |cur, out| {
            // One piece: the file is contiguous; a read running past its end fails at the first byte beyond.
            let start = usize::try_from(cur)
                .ok()
                .filter(|&s| s < file.len())
                .ok_or(ReadError::NotInDump { paddr: cur })?;
            let n = out.len().min(file.len() - start);
            let (Some(dst), Some(src)) = (out.get_mut(..n), file.get(start..start + n)) else {
                return Err(ReadError::NotInDump { paddr: cur });
            };
            dst.copy_from_slice(src);
            Ok(n)
        })
    }
}

impl<D: AsRef<[u8]> + Send + Sync + 'static> PhysSource for Raw<D> {
    fn format(&self) -> DumpFormat {
        DumpFormat::plain(FormatKind::Raw)
    }

    fn vmcoreinfo(&self) -> Option<&str> {
        None
    }

    fn machine(&self) -> Option<Machine> {
        None
    }

    fn page_size(&self) -> u64 {
        4096
    }

    fn phys_ranges(&self) -> Vec<Range<u64>> {
        std::iter::once(0..self.data.as_ref().len() as u64).collect()
    }

    fn warnings(&self) -> &[String] {
        &[]
    }

    fn as_any(&self) -> &dyn Any {
        self
    }
}
