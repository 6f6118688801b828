//! Symbol lookup in `/proc/kallsyms` and System.map files ("ADDR TYPE NAME [MODULE]" lines).
//!
//! synq needs a handful of symbols, so the file is streamed and reading stops as soon as every wanted symbol
//! has been seen: no table of 200,000 names is built.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

/// Lines longer than this are not symbol lines (kernel names are at most 512 bytes).
const MAX_LINE: usize = 4096;
/// Stop after this many bytes: /proc/kallsyms of a big distribution kernel with modules is ~20 MiB.
const MAX_BYTES: u64 = 1 << 30;

#[derive(Debug, thiserror::Error)]
pub enum SymbolError {
    #[error("{path}: {err}")]
    Io { path: PathBuf, err: std::io::Error },
    #[error(
        "{0}: every address reads as 0 — kptr_restrict hides kallsyms addresses (run as root with \
         kernel.kptr_restrict ≤ 1, or pass --system-map)"
    )]
    Restricted(PathBuf),
}

/// What a scan found: the wanted symbols (first vmlinux definition of each) and whether any address was
/// non-zero.
#[derive(Debug, Default)]
pub struct Found {
    pub symbols: HashMap<String, u64>,
    pub saw_nonzero: bool,
}

/// Scans a kallsyms/System.map file for `wanted`. Module symbols (with a `[module]` column) are ignored.
pub fn scan(path: &Path, wanted: &[&str]) -> Result<Found, SymbolError> {
    let file = crate::input::open_regular(path).map_err(|err| SymbolError::Io {
        path: path.to_path_buf(),
        err,
    })?;
    let reader = BufReader::with_capacity(1 << 16, file.take(MAX_BYTES));
    let found = scan_reader(reader, wanted).map_err(|err| SymbolError::Io {
        path: path.to_path_buf(),
        err,
    })?;
    Ok(found)
}

/// The same scan over any reader (tests feed it byte slices).
pub fn scan_reader<R: BufRead>(mut reader: R, wanted: &[&str]) -> std::io::Result<Found> {
    let mut found = Found::default();
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        let n = read_line_capped(&mut reader, &mut line)?;
        if n == 0 {
            break;
        }
        let Some((addr, name)) = parse_line(&line) else {
            continue;
        };
        if addr != 0 {
            found.saw_nonzero = true;
        }
        if wanted.contains(&name) && !found.symbols.contains_key(name) {
            found.symbols.insert(name.to_string(), addr);
            if found.symbols.len() == wanted.len() && found.saw_nonzero {
                break;
            }
        }
    }
    Ok(found)
}

/// Reads one line into `buf`, keeping at most `MAX_LINE` bytes of it. Returns the bytes consumed.
fn read_line_capped<R: BufRead>(reader: &mut R, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    let mut total = 0;
    loop {
        let avail = reader.fill_buf()?;
        if avail.is_empty() {
            return Ok(total);
        }
        let (chunk, done) = match memchr_newline(avail) {
            Some(i) => (avail.get(..=i).unwrap_or(avail), true),
            None => (avail, false),
        };
        let len = chunk.len();
        if buf.len() < MAX_LINE {
            let keep = (MAX_LINE - buf.len()).min(len);
            buf.extend_from_slice(chunk.get(..keep).unwrap_or(chunk));
        }
        reader.consume(len);
        total += len;
        if done {
            return Ok(total);
        }
    }
}

fn memchr_newline(b: &[u8]) -> Option<usize> {
    b.iter().position(|&c| c == b'\n')
}

/// "ffffffff81000000 T _stext" → (addr, "_stext"); lines with a module column are skipped.
fn parse_line(line: &[u8]) -> Option<(u64, &str)> {
    let text = std::str::from_utf8(line).ok()?;
    let mut parts = text.split_ascii_whitespace();
    let addr = u64::from_str_radix(parts.next()?, 16).ok()?;
    let kind = parts.next()?;
    if kind.len() != 1 {
        return None;
    }
    let name = parts.next()?;
    if parts.next().is_some() {
        return None; // "[module]"
    }
    Some((addr, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stops_at_module_symbols_and_keeps_first_definition() {
        let text = b"ffffffff81000000 T _stext\nffffffff82000000 D tcp_hashinfo\n\
                     ffffffffc0000000 d tcp_hashinfo\t[evil]\n";
        let f = scan_reader(&text[..], &["_stext", "tcp_hashinfo"]).unwrap();
        assert_eq!(f.symbols["tcp_hashinfo"], 0xffffffff82000000);
        assert_eq!(f.symbols["_stext"], 0xffffffff81000000);
        assert!(f.saw_nonzero);
    }

    #[test]
    fn all_zero_addresses_are_reported_as_such() {
        let text = b"0000000000000000 T _stext\n0000000000000000 D tcp_hashinfo\n";
        let f = scan_reader(&text[..], &["tcp_hashinfo"]).unwrap();
        assert_eq!(f.symbols["tcp_hashinfo"], 0);
        assert!(!f.saw_nonzero);
    }

    #[test]
    fn overlong_and_garbage_lines_are_skipped() {
        let mut text = vec![b'f'; 100_000];
        text.extend_from_slice(b"\nnot a line\nffffffff82000000 D tcp_hashinfo\n");
        let f = scan_reader(&text[..], &["tcp_hashinfo"]).unwrap();
        assert_eq!(f.symbols["tcp_hashinfo"], 0xffffffff82000000);
    }
}
