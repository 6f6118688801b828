//! The processes that hold each listener (issue 8), found the way `/proc/PID/fd` would show them, but from
//! memory, so that it works on dumps: every process (`init_task.tasks`), its open file table, each file
//! that is a socket (`f_op == &socket_file_ops`), and that socket's sock.
//!
//! O(processes + open files), so it runs only when the output shows owners. Bounded: the task list is capped
//! and cycle-checked, each file table is capped, and the whole walk has a budget of file slots; a process
//! whose table cannot be read costs its own entries, with a warning.

use std::collections::{HashMap, HashSet};

use crate::btf::Field;
use crate::btf::owners::OwnersLayout;
use crate::memory::{Memory, read_ptr};

/// Processes listed at most (pid_max is at most 4 Mi).
pub const MAX_TASKS: usize = 1 << 22;
/// File slots of one process read at most (nr_open's default is 1 Mi).
pub const MAX_FDS: u64 = 1 << 20;
/// File slots read in the whole walk.
pub const MAX_SLOTS: u64 = 1 << 24;
/// File-table slots read per read.
const SLOT_CHUNK: u64 = 512;

#[derive(Clone, Copy, Debug)]
pub struct OwnersSymbols {
    pub init_task: u64,
    pub socket_file_ops: u64,
}

/// A process holding a socket.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Owner {
    pub pid: u64,
    pub comm: String,
}

#[derive(Debug, Default)]
pub struct OwnersResult {
    /// Sock address → its owners, each process once, by pid.
    pub owners: HashMap<u64, Vec<Owner>>,
    pub warnings: Vec<String>,
    pub processes: u64,
    pub slots: u64,
}

/// Finds the owners of `wanted`: socks, or the `struct socket`s they hang off (either may be asked for; the
/// result is keyed by what matched). `by_sk`: also read each open socket's `sk` to match it against the
/// socks, for listeners whose `struct socket` is unknown; when every listener's is known, a file matches
/// by its socket alone, and the walk costs one read per open file, not two.
pub fn walk(
    mem: &dyn Memory,
    l: &OwnersLayout,
    syms: OwnersSymbols,
    ptr: u64,
    wanted: &HashSet<u64>,
    by_sk: bool,
) -> OwnersResult {
    let mut out = OwnersResult::default();
    let head = syms.init_task.wrapping_add(l.tasks);
    let mut seen: HashSet<u64> = HashSet::new();
    // Processes sharing one file table (CLONE_FILES) read it once.
    let mut tables: HashMap<u64, Vec<u64>> = HashMap::new();
    let mut task = syms.init_task;
    let mut buf = vec![0u8; usize::try_from(l.task_span).unwrap_or(0)];
    let mut budget = MAX_SLOTS;
    loop {
        if seen.len() >= MAX_TASKS || !seen.insert(task) {
            out.warnings.push(format!(
                "process list: stopped after {} processes (a cycle, or more than {MAX_TASKS}); listener \
                 owners may be incomplete",
                seen.len()
            ));
            break;
        }
        if let Err(e) = mem.read(task, &mut buf) {
            out.warnings.push(format!(
                "process at {task:#x} unreadable ({e}); listener owners may be incomplete"
            ));
            break;
        }
        out.processes += 1;
        let get = |f: Field| f.read(&buf, 0).unwrap_or(0);
        let pid = get(l.tgid);
        let files = get(l.files);
        if files != 0 {
            if let std::collections::hash_map::Entry::Vacant(e) = tables.entry(files) {
                e.insert(table_socks(
                    mem,
                    l,
                    syms,
                    (ptr, by_sk),
                    files,
                    wanted,
                    &mut budget,
                    &mut out,
                ));
            }
            if let Some(socks) = tables.get(&files) {
                let comm = comm_of(&buf, l.comm);
                for &sk in socks {
                    let list = out.owners.entry(sk).or_default();
                    if !list.iter().any(|o| o.pid == pid) {
                        list.push(Owner {
                            pid,
                            comm: comm.clone(),
                        });
                    }
                }
            }
        }
        let Some(next) = Field::bytes(l.tasks, ptr).read(&buf, 0) else {
            break;
        };
        if next == head {
            break;
        }
        task = next.wrapping_sub(l.tasks);
    }
    if budget == 0 {
        out.warnings.push(format!(
            "stopped after {MAX_SLOTS} open-file slots: listener owners may be incomplete"
        ));
    }
    for v in out.owners.values_mut() {
        v.sort();
    }
    out
}

/// The wanted socks open in the file table `files` (a `struct files_struct *`).
#[allow(clippy::too_many_arguments)]
fn table_socks(
    mem: &dyn Memory,
    l: &OwnersLayout,
    syms: OwnersSymbols,
    (ptr, by_sk): (u64, bool),
    files: u64,
    wanted: &HashSet<u64>,
    budget: &mut u64,
    out: &mut OwnersResult,
) -> Vec<u64> {
    let mut socks = Vec::new();
    // Socks already listed: a table can hold 100,000 listeners (a Vec search per file made that quadratic,
    // 15 s under emulation).
    let mut listed = HashSet::new();
    let fdt = match read_field(mem, files, l.fdt) {
        Ok(p) if p != 0 => p,
        Ok(_) => return socks,
        Err(e) => {
            out.warnings
                .push(format!("file table {files:#x} unreadable ({e})"));
            return socks;
        }
    };
    let (max_fds, fd) = match (read_field(mem, fdt, l.max_fds), read_field(mem, fdt, l.fd)) {
        (Ok(m), Ok(f)) => (m.min(MAX_FDS), f),
        (Err(e), _) | (_, Err(e)) => {
            out.warnings
                .push(format!("file table {fdt:#x} unreadable ({e})"));
            return socks;
        }
    };
    let file_end = l.f_op.end().max(l.private_data.end());
    let mut file_buf = vec![0u8; usize::try_from(file_end).unwrap_or(0)];
    let mut first = 0;
    while first < max_fds && *budget > 0 {
        let n = (max_fds - first).min(SLOT_CHUNK).min(*budget);
        *budget -= n;
        out.slots += n;
        let mut slots = vec![0u8; usize::try_from(n * ptr).unwrap_or(0)];
        if let Err(e) = mem.read(fd.wrapping_add(first * ptr), &mut slots) {
            out.warnings.push(format!(
                "open files {first}.. of file table {fdt:#x} unreadable ({e})"
            ));
            break;
        }
        for i in 0..n {
            let file = Field::bytes(i * ptr, ptr).read(&slots, 0).unwrap_or(0);
            if file == 0 || mem.read(file, &mut file_buf).is_err() {
                continue;
            }
            if l.f_op.read(&file_buf, 0) != Some(syms.socket_file_ops) {
                continue;
            }
            let socket = l.private_data.read(&file_buf, 0).unwrap_or(0);
            if socket == 0 {
                continue;
            }
            if wanted.contains(&socket) {
                if listed.insert(socket) {
                    socks.push(socket);
                }
                continue;
            }
            if !by_sk {
                continue;
            }
            if let Ok(sk) = read_ptr(mem, socket.wrapping_add(l.sk.offset()), ptr)
                && wanted.contains(&sk)
                && listed.insert(sk)
            {
                socks.push(sk);
            }
        }
        first += n;
    }
    socks
}

fn read_field(mem: &dyn Memory, base: u64, f: Field) -> Result<u64, crate::memory::ReadError> {
    let mut b = [0u8; 8];
    let len = usize::try_from(f.size()).unwrap_or(8).min(8);
    let slot = b.get_mut(..len).unwrap_or(&mut []);
    mem.read(base.wrapping_add(f.offset()), slot)?;
    Ok(f.read(slot, f.offset()).unwrap_or(0))
}

fn comm_of(buf: &[u8], (off, len): (u64, u64)) -> String {
    let start = usize::try_from(off).unwrap_or(usize::MAX);
    let end = start.saturating_add(usize::try_from(len).unwrap_or(0));
    let bytes = buf.get(start..end).unwrap_or(&[]);
    let bytes = bytes.split(|&b| b == 0).next().unwrap_or(&[]);
    String::from_utf8_lossy(bytes).into_owned()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::memory::Flat;

    /// Memory as one flat buffer at `BASE`.
    const BASE: u64 = 0x1000_0000;

    fn layout() -> OwnersLayout {
        OwnersLayout {
            tasks: 0,
            tgid: Field::bytes(16, 4),
            comm: (24, 16),
            files: Field::bytes(40, 8),
            task_span: 48,
            fdt: Field::bytes(0, 8),
            max_fds: Field::bytes(0, 4),
            fd: Field::bytes(8, 8),
            f_op: Field::bytes(0, 8),
            private_data: Field::bytes(8, 8),
            sk: Field::bytes(0, 8),
        }
    }

    const OPS: u64 = 0xdead_0000;

    fn syms(init_task: u64) -> OwnersSymbols {
        OwnersSymbols {
            init_task,
            socket_file_ops: OPS,
        }
    }

    /// Tasks at BASE + 0x1000 * i (i = 0 is init_task), linked in a ring; task 1 and 2 share one file
    /// table holding the socket of sock 0x5000_0000 twice and one non-socket file.
    fn image(ring: bool) -> Flat {
        let mut m = Flat::zeroed(BASE, 0x10000);
        let task = |i: u64| BASE + 0x1000 * i;
        for i in 0..3 {
            let next = if i == 2 {
                if ring { task(0) } else { task(1) }
            } else {
                task(i + 1)
            };
            m.put(task(i), next, 8);
            m.put(task(i) + 16, 100 + i, 8);
            m.put(task(i) + 24, u64::from_le_bytes(*b"worker\0\0"), 8);
        }
        let files = BASE + 0x8000;
        m.put(task(1) + 40, files, 8);
        m.put(task(2) + 40, files, 8);
        let fdt = BASE + 0x8100;
        m.put(files, fdt, 8);
        let fd = BASE + 0x8200;
        m.put(fdt, 3, 8);
        m.put(fdt + 8, fd, 8);
        let (sock_file, other_file, socket) = (BASE + 0x9000, BASE + 0x9100, BASE + 0x9200);
        m.put(fd, sock_file, 8);
        m.put(fd + 8, other_file, 8);
        m.put(fd + 16, sock_file, 8);
        m.put(sock_file, OPS, 8);
        m.put(sock_file + 8, socket, 8);
        m.put(other_file, 0x1234, 8);
        m.put(other_file + 8, socket, 8);
        m.put(socket, 0x5000_0000, 8);
        m
    }

    #[test]
    fn each_process_once_per_listener_and_only_socket_files() {
        let m = image(true);
        let wanted = HashSet::from([0x5000_0000]);
        let syms = syms(BASE);
        let r = walk(&m, &layout(), syms, 8, &wanted, true);
        assert!(r.warnings.is_empty(), "{:?}", r.warnings);
        assert_eq!(r.processes, 3);
        let pids: Vec<u64> = r.owners[&0x5000_0000].iter().map(|o| o.pid).collect();
        assert_eq!(pids, vec![101, 102]);
        assert_eq!(r.owners[&0x5000_0000][0].comm, "worker");
        // The shared table is read once: 3 slots, not 6.
        assert_eq!(r.slots, 3);
    }

    /// Without `by_sk` a file matches by its struct socket only: the sock (reached through socket->sk) is
    /// not found, the socket is.
    #[test]
    fn without_by_sk_files_match_by_their_socket() {
        let m = image(true);
        let syms = syms(BASE);
        let r = walk(&m, &layout(), syms, 8, &HashSet::from([0x5000_0000]), false);
        assert!(r.owners.is_empty(), "{:?}", r.owners);
        let socket = BASE + 0x9200;
        let r = walk(&m, &layout(), syms, 8, &HashSet::from([socket]), false);
        let pids: Vec<u64> = r.owners[&socket].iter().map(|o| o.pid).collect();
        assert_eq!(pids, vec![101, 102]);
    }

    #[test]
    fn a_task_list_that_never_returns_to_init_task_is_cut_with_a_warning() {
        let m = image(false);
        let syms = syms(BASE);
        let r = walk(&m, &layout(), syms, 8, &HashSet::from([0x5000_0000]), true);
        assert_eq!(r.processes, 3);
        assert!(
            r.warnings.iter().any(|w| w.contains("cycle")),
            "{:?}",
            r.warnings
        );
    }

    #[test]
    fn an_unreadable_task_ends_the_walk_with_a_warning() {
        let m = image(true);
        let syms = syms(BASE + 0x100_0000);
        let r = walk(&m, &layout(), syms, 8, &HashSet::new(), true);
        assert_eq!(r.processes, 0);
        assert!(
            r.warnings.iter().any(|w| w.contains("unreadable")),
            "{:?}",
            r.warnings
        );
    }
}
