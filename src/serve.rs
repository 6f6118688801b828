//! `synq serve`: a resident Prometheus exporter over one [`Prepared`] session.
//!
//! It binds its socket and opens its source (the live kernel, or `--core FILE`) first; then it drops every
//! capability, becomes `--user` (when root), sets `no_new_privs` and a seccomp filter that allows only
//! reading memory through the open descriptors and talking on the already bound socket. Reading
//! `/proc/kcore` through the open descriptor needs no capability.
//!
//! The server is one thread and one connection at a time: a request head of at most 8 KiB, read and written
//! with 5-second timeouts; `GET /metrics` (the text format), `GET /` (a page linking to it), `HEAD` of
//! both; every response closes its connection. One walk at a time, at most one per `--min-interval`: a
//! scrape in between gets the last result, so concurrent and frequent scrapes share one walk. The owners of
//! the listeners (every process's open files, the costliest part of a walk on a busy host) are looked up again
//! when a listener appears whose owners are not known, and at least every minute. HTTP requests
//! are parsed by `httparse` (the parser under hyper): a whole HTTP server crate would bring threads that
//! start after the seccomp filter is in place, or no per-connection timeouts; this loop needs neither.

use std::borrow::Cow;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::app::{Options, Outcome, Prepared, Wants};
use crate::metrics::{self, Scrape};
use crate::privdrop::{self, Profile, User};
use crate::session::{Error, Session};

/// The default `--listen`: loopback only.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9813";

/// How long a scrape may reuse the owners found by an earlier walk (a new listener is looked up at once).
const OWNERS_MAX_AGE: Duration = Duration::from_secs(60);

/// The largest request head read.
const MAX_HEAD: usize = 8 << 10;
/// Per connection: reading the request, and writing the response.
const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// `synq serve`'s settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServeOptions {
    pub listen: String,
    pub user: String,
    pub min_interval: Duration,
}

impl Default for ServeOptions {
    fn default() -> ServeOptions {
        ServeOptions {
            listen: DEFAULT_LISTEN.into(),
            user: "nobody".into(),
            min_interval: Duration::from_secs(5),
        }
    }
}

/// The last walk's exposition, shared by the scrapes until `--min-interval` has passed.
struct Cached {
    at: Instant,
    status: u16,
    body: String,
}

/// The server's state between connections.
pub struct Server {
    prepared: Prepared,
    /// The exposition, kept between walks: while the listeners stay the same, a walk only changes its values.
    exposition: metrics::Exposition,
    min_interval: Duration,
    cached: Option<Cached>,
    warnings_total: u64,
    /// Walks done (for the log).
    pub walks: u64,
}

impl Server {
    /// The exposition: the cached one, or a new walk when the last is `min_interval` old.
    fn metrics(&mut self) -> (u16, &str) {
        let fresh = self
            .cached
            .as_ref()
            .is_some_and(|c| c.at.elapsed() < self.min_interval);
        if !fresh {
            let started = Instant::now();
            self.walks += 1;
            // The last body's buffer is written over: a 10,000-listener exposition is megabytes.
            let mut body = self.cached.take().map(|c| c.body).unwrap_or_default();
            body.clear();
            let status = match self.prepared.collect() {
                Ok(rep) => {
                    self.warnings_total += rep.warnings.len() as u64;
                    if let Some(first) = rep.warnings.first() {
                        eprintln!(
                            "synq: walk {}: {} warning(s), the first: {first}",
                            self.walks,
                            rep.warnings.len()
                        );
                    }
                    let scrape = Scrape {
                        duration: started.elapsed(),
                        warnings_total: self.warnings_total,
                    };
                    self.exposition.render_into(&rep, scrape, &mut body);
                    200
                }
                Err(e) => {
                    eprintln!("synq: walk {}: {e}", self.walks);
                    body.push_str(&format!("synq: the walk failed: {e}\n"));
                    503
                }
            };
            self.cached = Some(Cached {
                at: Instant::now(),
                status,
                body,
            });
        }
        match &self.cached {
            Some(c) => (c.status, c.body.as_str()),
            None => (500, "synq: no result\n"),
        }
    }

    /// Answers one request head.
    pub fn respond(&mut self, head: &[u8]) -> Response<'_> {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(head) {
            Ok(httparse::Status::Complete(_)) => {}
            Ok(httparse::Status::Partial) => {
                return Response::text(400, "incomplete request head\n");
            }
            Err(e) => return Response::text(400, &format!("bad request: {e}\n")),
        }
        let method = req.method.unwrap_or("");
        let head_only = method == "HEAD";
        if method != "GET" && !head_only {
            return Response::text(405, "only GET and HEAD\n").with_header("Allow", "GET, HEAD");
        }
        let path = req.path.unwrap_or("/");
        let path = path.split('?').next().unwrap_or(path);
        let mut resp = match path {
            "/metrics" => {
                let (status, body) = self.metrics();
                let ctype = if status == 200 {
                    metrics::CONTENT_TYPE
                } else {
                    "text/plain; charset=utf-8"
                };
                Response {
                    status,
                    content_type: ctype,
                    body: Cow::Borrowed(body.as_bytes()),
                    extra: Vec::new(),
                }
            }
            "/" => Response {
                status: 200,
                content_type: "text/html; charset=utf-8",
                body: Cow::Borrowed(INDEX.as_bytes()),
                extra: Vec::new(),
            },
            _ => Response::text(404, "not found: the metrics are on /metrics\n"),
        };
        if head_only {
            resp.extra
                .push(("Content-Length".into(), resp.body.len().to_string()));
            resp.body = Cow::Borrowed(&[]);
        }
        resp
    }
}

const INDEX: &str = "<!doctype html>\n<html><head><title>synq</title></head><body>\n<h1>synq</h1>\n<p>TCP listen \
queues read from kernel memory: <a href=\"/metrics\">/metrics</a>.</p>\n</body></html>\n";

/// An HTTP response; its body borrowed from the server's cached exposition where it is one.
pub struct Response<'a> {
    pub status: u16,
    pub content_type: &'static str,
    pub body: Cow<'a, [u8]>,
    extra: Vec<(String, String)>,
}

impl Response<'_> {
    fn text(status: u16, body: &str) -> Response<'static> {
        Response {
            status,
            content_type: "text/plain; charset=utf-8",
            body: Cow::Owned(body.as_bytes().to_vec()),
            extra: Vec::new(),
        }
    }

    fn with_header(mut self, k: &str, v: &str) -> Self {
        self.extra.push((k.into(), v.into()));
        self
    }

    /// The status line and headers, up to the blank line.
    pub fn head(&self) -> Vec<u8> {
        let reason = match self.status {
            200 => "OK",
            400 => "Bad Request",
            404 => "Not Found",
            405 => "Method Not Allowed",
            431 => "Request Header Fields Too Large",
            503 => "Service Unavailable",
            _ => "Internal Server Error",
        };
        let mut head = format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: {}\r\nConnection: close\r\n",
            self.status, self.content_type
        );
        if !self.extra.iter().any(|(k, _)| k == "Content-Length") {
            head.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        for (k, v) in &self.extra {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        head.into_bytes()
    }

    /// The bytes on the wire.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.head();
        out.extend_from_slice(&self.body);
        out
    }
}

/// Reads a request head (up to the blank line) within the timeout and [`MAX_HEAD`]. `Err` holds the
/// response to give instead (or none, when the client went away).
fn read_head(conn: &mut TcpStream) -> Result<Vec<u8>, Option<Response<'static>>> {
    let deadline = Instant::now() + IO_TIMEOUT;
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(None);
        }
        let _ = conn.set_read_timeout(Some(left));
        let n = match conn.read(&mut chunk) {
            Ok(0) | Err(_) => return Err(None),
            Ok(n) => n,
        };
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
        if buf.windows(4).any(|w| w == b"\r\n\r\n") {
            return Ok(buf);
        }
        if buf.len() > MAX_HEAD {
            return Err(Some(Response::text(431, "request head too large\n")));
        }
    }
}

fn handle(server: &mut Server, mut conn: TcpStream) {
    let _ = conn.set_nonblocking(false);
    let _ = conn.set_write_timeout(Some(IO_TIMEOUT));
    let resp = match read_head(&mut conn) {
        Ok(head) => server.respond(&head),
        Err(Some(r)) => r,
        Err(None) => return,
    };
    // The head, then the body from where it lies (no copy of a megabytes-long exposition).
    let _ = conn
        .write_all(&resp.head())
        .and_then(|()| conn.write_all(&resp.body));
    let _ = conn.flush();
    let _ = conn.shutdown(std::net::Shutdown::Both);
}

/// Waits up to `ms` for a connection on `l`.
fn readable(l: &TcpListener, ms: i32) -> bool {
    let mut p = libc::pollfd {
        fd: l.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd, count 1.
    unsafe { libc::poll(&mut p, 1, ms) > 0 }
}

/// `synq serve`.
pub fn run(opts: &Options, session: Session) -> Result<Outcome, Error> {
    let so = &opts.serve;
    let stop = crate::watch::stop_flag()?;
    let listener = TcpListener::bind(&so.listen).map_err(|e| {
        Error::Serve(format!(
            "cannot listen on {}: {e} — give a free host:port with --listen (below 1024 needs root)",
            so.listen
        ))
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::Serve(format!("{}: {e}", so.listen)))?;
    let local = listener
        .local_addr()
        .map(|a| a.to_string())
        .unwrap_or_else(|_| so.listen.clone());
    // SAFETY: geteuid has no preconditions and cannot fail.
    let root = unsafe { libc::geteuid() } == 0;
    let user = if root {
        Some(User::lookup(&so.user).map_err(Error::Serve)?)
    } else {
        None
    };
    let wants = Wants {
        namespaces: true,
        owners: true,
        requests: false,
    };
    let mut dropped = None;
    let mut prepared = Prepared::new(session, wants, || {
        let d = privdrop::drop_privileges_with(Profile::Serve, user);
        if let Ok(d) = &d {
            dropped = Some(d.clone());
        }
        d
    })?;
    // The owners walk reads every process's open files: on a busy host the costliest part of a scrape.
    prepared.reuse_owners(OWNERS_MAX_AGE);
    let who = match dropped.as_ref().and_then(|d| d.user) {
        Some(u) => format!("uid {} gid {}", u.uid, u.gid),
        // SAFETY: getuid has no preconditions and cannot fail.
        None => format!("uid {} (not root: no user switch)", unsafe {
            libc::getuid()
        }),
    };
    eprintln!(
        "synq: serving http://{local}/metrics as {who}, without capabilities; at most one walk per {}s",
        so.min_interval.as_secs_f64()
    );
    let mut server = Server {
        prepared,
        exposition: metrics::Exposition::new(opts.metrics.clone()),
        min_interval: so.min_interval,
        cached: None,
        warnings_total: 0,
        walks: 0,
    };
    serve_until(&mut server, &listener, &stop);
    eprintln!("synq: stopped after {} walk(s)", server.walks);
    Ok(Outcome {
        stdout: String::new(),
        warnings: Vec::new(),
        status: 0,
    })
}

fn serve_until(server: &mut Server, listener: &TcpListener, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        if !readable(listener, 200) {
            continue;
        }
        match listener.accept() {
            Ok((conn, _)) => handle(server, conn),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => {
                // Out of descriptors, say: do not spin.
                eprintln!("synq: accept: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_say_their_length_and_close() {
        let r = Response::text(404, "nope\n").to_bytes();
        let s = String::from_utf8(r).unwrap_or_default();
        assert!(s.starts_with("HTTP/1.1 404 Not Found\r\n"), "{s}");
        assert!(s.contains("Content-Length: 5\r\n") && s.contains("Connection: close\r\n"));
        assert!(s.ends_with("\r\n\r\nnope\n"));
    }
}
