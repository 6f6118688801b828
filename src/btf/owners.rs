//! Where the owners of a socket are found (issue 8): the process list, each process's file table, and the
//! socket behind an open file, from BTF.
//!
//! `init_task.tasks` links every thread-group leader (a process); `task->files->fdt` is the open file table
//! (`max_fds` slots of `struct file *`); a file whose `f_op` is `&socket_file_ops` has a `struct socket *` as
//! its `private_data`, and `socket->sk` is the sock the listening walk reports. Threads share their leader's
//! table, so walking leaders lists each process once.

use super::Btf;

use super::Field;
use super::field_of;
use super::types::{find_member, find_struct};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OwnersLayout {
    /// `task_struct.tasks` (the list node), `.tgid`, `.comm` (its byte offset and length), `.files`.
    pub tasks: u64,
    pub tgid: Field,
    pub comm: (u64, u64),
    pub files: Field,
    /// Bytes of `task_struct` to read to get every field above.
    pub task_span: u64,
    /// `files_struct.fdt`.
    pub fdt: Field,
    /// `fdtable.max_fds` and `.fd` (a `struct file **`).
    pub max_fds: Field,
    pub fd: Field,
    /// `file.f_op` and `.private_data`.
    pub f_op: Field,
    pub private_data: Field,
    /// `socket.sk`.
    pub sk: Field,
}

impl OwnersLayout {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "tasks_offset": self.tasks,
            "tgid_offset": self.tgid.offset(),
            "comm_offset": self.comm.0,
            "files_offset": self.files.offset(),
            "fdt_offset": self.fdt.offset(),
            "max_fds_offset": self.max_fds.offset(),
            "fd_offset": self.fd.offset(),
            "f_op_offset": self.f_op.offset(),
            "private_data_offset": self.private_data.offset(),
            "socket_sk_offset": self.sk.offset(),
        })
    }
}

/// Resolves the owners layout; `None` when the BTF lacks any part of the chain.
pub fn resolve(btf: &Btf, ptr_size: u64) -> Option<OwnersLayout> {
    let member = |s: &btf_rs::Struct, name: &str| -> Option<Field> {
        field_of(btf, find_member(btf, s, name).ok()??, ptr_size).ok()
    };
    let task = find_struct(btf, "task_struct").ok()?;
    let tasks = member(&task, "tasks")?.offset();
    let tgid = member(&task, "tgid")?;
    let comm = member(&task, "comm")?;
    let files = member(&task, "files")?;
    let files_struct = find_struct(btf, "files_struct").ok()?;
    let fdt = member(&files_struct, "fdt")?;
    let fdtable = find_struct(btf, "fdtable").ok()?;
    let max_fds = member(&fdtable, "max_fds")?;
    let fd = member(&fdtable, "fd")?;
    let file = find_struct(btf, "file").ok()?;
    let f_op = member(&file, "f_op")?;
    let private_data = member(&file, "private_data")?;
    let socket = find_struct(btf, "socket").ok()?;
    let sk = member(&socket, "sk")?;
    let comm_len = comm.size();
    if !(1..=64).contains(&comm_len) || comm.bit_offset % 8 != 0 {
        return None;
    }
    let task_span = [tasks + 2 * ptr_size, tgid.end(), comm.end(), files.end()]
        .into_iter()
        .max()
        .unwrap_or(0);
    let pointers_ok = [files, fdt, fd, f_op, private_data, sk]
        .iter()
        .all(|f| f.size() == ptr_size && f.bit_offset % 8 == 0);
    if task_span > 1 << 16 || !pointers_ok {
        return None;
    }
    Some(OwnersLayout {
        tasks,
        tgid,
        comm: (comm.offset(), comm_len),
        files,
        task_span,
        fdt,
        max_fds,
        fd,
        f_op,
        private_data,
        sk,
    })
}
