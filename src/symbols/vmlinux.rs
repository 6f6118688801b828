//! An ELF vmlinux as a side file (`--vmlinux`): link-time symbol addresses from its symbol table and the
//! kernel's BTF from its `.BTF` section. The file is mapped read-only, never read whole (a vmlinux with DWARF
//! is hundreds of megabytes).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use object::{Object, ObjectSection, ObjectSymbol};

#[derive(Debug, thiserror::Error)]
pub enum VmlinuxError {
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error("{path}: not an ELF vmlinux: {msg}")]
    Format { path: PathBuf, msg: String },
}

pub struct Vmlinux {
    path: PathBuf,
    map: memmap2::Mmap,
}

impl Vmlinux {
    pub fn open(path: &Path) -> Result<Vmlinux, VmlinuxError> {
        let io = |err| VmlinuxError::Io {
            path: path.to_path_buf(),
            err,
        };
        let file = crate::input::open_regular(path).map_err(io)?;
        // SAFETY: a read-only private mapping; a concurrent truncation of the file would fault, as with any
        // mapped input, and vmlinux files are not rewritten in place.
        let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
        let v = Vmlinux {
            path: path.to_path_buf(),
            map,
        };
        v.parse()?;
        Ok(v)
    }

    fn parse(&self) -> Result<object::File<'_>, VmlinuxError> {
        object::File::parse(&*self.map).map_err(|e| VmlinuxError::Format {
            path: self.path.clone(),
            msg: e.to_string(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Link-time addresses of `names` (the first definition of each) from the symbol table.
    pub fn symbols(&self, names: &[&str]) -> Result<HashMap<String, u64>, VmlinuxError> {
        let file = self.parse()?;
        let mut out = HashMap::new();
        for sym in file.symbols() {
            let Ok(name) = sym.name() else { continue };
            if names.contains(&name) && !out.contains_key(name) {
                out.insert(name.to_string(), sym.address());
                if out.len() == names.len() {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// The raw BTF of the `.BTF` section, if there is one.
    pub fn btf(&self) -> Result<Option<&[u8]>, VmlinuxError> {
        let file = self.parse()?;
        let Some(section) = file.section_by_name(".BTF") else {
            return Ok(None);
        };
        let range = section.file_range().and_then(|(off, len)| {
            let start = usize::try_from(off).ok()?;
            let end = start.checked_add(usize::try_from(len).ok()?)?;
            Some(start..end)
        });
        Ok(range.and_then(|r| self.map.get(r)))
    }
}
