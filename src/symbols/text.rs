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
        // Once an address was non-zero, a line matters only if its last word is a name looked for: a cheaper
        // test than parsing every line (a System.map has ~120,000; 5.10 under emulation spent ~100 ms here).
        if found.saw_nonzero && !last_word_wanted(&line, wanted) {
            continue;
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

/// Whether the line's last whitespace-separated word is one of `wanted` (a module line ends in "[module]").
fn last_word_wanted(line: &[u8], wanted: &[&str]) -> bool {
    let line = line.trim_ascii_end();
    let start = line
        .iter()
        .rposition(u8::is_ascii_whitespace)
        .map_or(0, |i| i + 1);
    let word = line.get(start..).unwrap_or_default();
    wanted.iter().any(|w| w.as_bytes() == word)
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

    /// The shortcut (skip a line whose last word is not wanted once an address was non-zero) finds what
    /// parsing every line finds, on lines of every shape.
    #[test]
    fn the_last_word_shortcut_finds_what_parsing_every_line_finds() {
        let shapes = [
            "ffffffff81000000 T _stext",
            "0000000000000000 A fixed_percpu_data",
            "ffffffff82000000 D tcp_hashinfo",
            "ffffffffc0000000 d tcp_hashinfo\t[evil]",
            "ffffffff82000100 D tcp_hashinfo extra",
            "zzzz D init_net",
            "ffffffff82000200 DD init_net",
            "ffffffff82000300 D init_net   ",
            "ffffffff82000400 R linux_banner\r",
            "ffffffff82000500\tT\tinit_task",
            "tcp_hashinfo",
            "",
            "ffffffff82000600 D _stext_x",
        ];
        let wanted = [
            "_stext",
            "tcp_hashinfo",
            "init_net",
            "linux_banner",
            "init_task",
            "absent",
        ];
        let mut x: u64 = 7;
        for round in 0..200 {
            let mut text = String::new();
            for _ in 0..(round % 40) {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                text.push_str(shapes[(x >> 33) as usize % shapes.len()]);
                text.push('\n');
            }
            let got = scan_reader(text.as_bytes(), &wanted).unwrap();
            // The reference: every line parsed.
            let mut want = Found::default();
            for line in text.split_inclusive('\n') {
                if let Some((addr, name)) = parse_line(line.as_bytes()) {
                    want.saw_nonzero |= addr != 0;
                    if wanted.contains(&name) && !want.symbols.contains_key(name) {
                        want.symbols.insert(name.to_string(), addr);
                        if want.symbols.len() == wanted.len() && want.saw_nonzero {
                            break;
                        }
                    }
                }
            }
            assert_eq!(got.symbols, want.symbols, "{text:?}");
            assert_eq!(got.saw_nonzero, want.saw_nonzero, "{text:?}");
        }
    }

    #[test]
    fn overlong_and_garbage_lines_are_skipped() {
        let mut text = vec![b'f'; 100_000];
        text.extend_from_slice(b"\nnot a line\nffffffff82000000 D tcp_hashinfo\n");
        let f = scan_reader(&text[..], &["tcp_hashinfo"]).unwrap();
        assert_eq!(f.symbols["tcp_hashinfo"], 0xffffffff82000000);
    }
}
