//! A scriptable HTTP/1.1 server for what real backends won't do on demand:
//! error sequences, `Retry-After`, requests left hanging, reset connections.
//! It records every request (headers, body, when it arrived and was answered)
//! so a test can check what a sink sent and when. Plain threads, loopback only.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How the server answers one request.
#[derive(Debug, Clone)]
pub enum Reply {
    /// Status, extra headers, body, after an optional delay.
    Status { code: u16, headers: Vec<(String, String)>, body: String, delay: Duration },
    /// Read the request and never answer (until the client gives up, or 60 s).
    Hang,
    /// Close the connection with the request unread: the client sees a reset.
    Reset,
}

impl Reply {
    pub fn status(code: u16) -> Reply {
        Reply::Status { code, headers: Vec::new(), body: String::new(), delay: Duration::ZERO }
    }

    pub fn with_body(code: u16, body: &str) -> Reply {
        Reply::Status { code, headers: Vec::new(), body: body.to_string(), delay: Duration::ZERO }
    }

    pub fn with_header(code: u16, name: &str, value: &str) -> Reply {
        Reply::Status {
            code,
            headers: vec![(name.to_string(), value.to_string())],
            body: String::new(),
            delay: Duration::ZERO,
        }
    }

    pub fn delayed(code: u16, delay: Duration) -> Reply {
        Reply::Status { code, headers: Vec::new(), body: String::new(), delay }
    }
}

/// One request as the server saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub arrived: Instant,
    pub answered: Option<Instant>,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub reply: String,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

struct Shared {
    script: Mutex<VecDeque<Reply>>,
    default: Mutex<Reply>,
    requests: Mutex<Vec<Recorded>>,
    stop: AtomicBool,
}

pub struct FaultServer {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl FaultServer {
    /// Answers with `script` in order, then with `default`.
    pub fn start(script: Vec<Reply>, default: Reply) -> FaultServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind fault server");
        listener.set_nonblocking(true).expect("nonblocking listener");
        let addr = listener.local_addr().expect("fault server address");
        let shared = Arc::new(Shared {
            script: Mutex::new(script.into()),
            default: Mutex::new(default),
            requests: Mutex::new(Vec::new()),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        std::thread::spawn(move || {
            while !s.stop.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let s = s.clone();
                        std::thread::spawn(move || serve_connection(stream, &s));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        FaultServer { addr, shared }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn set_default(&self, reply: Reply) {
        *self.shared.default.lock().unwrap() = reply;
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.requests.lock().unwrap().clone()
    }
}

impl Drop for FaultServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
    }
}

fn next_reply(shared: &Shared) -> Reply {
    let scripted = shared.script.lock().unwrap().pop_front();
    scripted.unwrap_or_else(|| shared.default.lock().unwrap().clone())
}

fn serve_connection(stream: TcpStream, shared: &Shared) {
    let _ = stream.set_read_timeout(Some(Duration::from_millis(200)));
    let mut reader = BufReader::new(match stream.try_clone() {
        Ok(s) => s,
        Err(_) => return,
    });
    let mut writer = stream;
    let started = Instant::now();
    // Keep-alive: one request after another until the client closes (bounded).
    while !shared.stop.load(Ordering::Relaxed) && started.elapsed() < Duration::from_secs(300) {
        // Peek, not read: a reset must leave the request unread in the kernel.
        let waiting = if reader.buffer().is_empty() { reader.get_ref().peek(&mut [0u8; 1]) } else { Ok(1) };
        let reply = match waiting {
            Ok(0) => return,
            Ok(_) => next_reply(shared),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => continue,
            Err(_) => return,
        };
        if let Reply::Reset = reply {
            shared.requests.lock().unwrap().push(Recorded {
                arrived: Instant::now(),
                answered: None,
                headers: Vec::new(),
                body: Vec::new(),
                reply: "reset".into(),
            });
            // Unread data in the receive buffer makes close() send RST.
            return;
        }
        let Some((headers, body)) = read_request(&mut reader) else { return };
        let arrived = Instant::now();
        let index = {
            let mut requests = shared.requests.lock().unwrap();
            requests.push(Recorded { arrived, answered: None, headers, body, reply: format!("{reply:?}") });
            requests.len() - 1
        };
        match reply {
            Reply::Status { code, headers, body, delay } => {
                std::thread::sleep(delay);
                let mut out = format!("HTTP/1.1 {code} Scripted\r\ncontent-length: {}\r\n", body.len());
                for (n, v) in headers {
                    out.push_str(&format!("{n}: {v}\r\n"));
                }
                out.push_str("\r\n");
                out.push_str(&body);
                shared.requests.lock().unwrap()[index].answered = Some(Instant::now());
                if writer.write_all(out.as_bytes()).is_err() {
                    return;
                }
            }
            Reply::Hang => {
                let mut scratch = [0u8; 1024];
                while arrived.elapsed() < Duration::from_secs(60) && !shared.stop.load(Ordering::Relaxed) {
                    match reader.read(&mut scratch) {
                        Ok(0) => return,
                        Ok(_) => {}
                        Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                        }
                        Err(_) => return,
                    }
                }
                return;
            }
            Reply::Reset => unreachable!("handled before reading"),
        }
    }
}

/// Header names (lower case) and values.
type Headers = Vec<(String, String)>;

/// Reads one request: lower-case headers and the body (by Content-Length).
fn read_request(reader: &mut BufReader<TcpStream>) -> Option<(Headers, Vec<u8>)> {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut line = String::new();
    let mut headers = Vec::new();
    let mut first = true;
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) => return None,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                if Instant::now() > deadline {
                    return None;
                }
                continue;
            }
            Err(_) => return None,
        }
        let trimmed = line.trim_end();
        if first {
            first = false;
            continue;
        }
        if trimmed.is_empty() {
            break;
        }
        if let Some((n, v)) = trimmed.split_once(':') {
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let length: usize =
        headers.iter().find(|(n, _)| n == "content-length").and_then(|(_, v)| v.parse().ok()).unwrap_or(0);
    let mut body = vec![0u8; length];
    let mut filled = 0;
    while filled < length {
        match reader.read(&mut body[filled..]) {
            Ok(0) => return None,
            Ok(n) => filled += n,
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {
                if Instant::now() > deadline {
                    return None;
                }
            }
            Err(_) => return None,
        }
    }
    Some((headers, body))
}

/// A pipeline `main` from `receivers` into one remote-write sink `stalled`
/// whose backend (`url`, usually a [`FaultServer`] answering
/// [`Reply::Hang`]) never answers in time: queues of one batch, a sink queue
/// of `max_samples` that blocks when full, `batch_samples` per request, one
/// request at a time with `timeout`. The receivers' own sections are the
/// caller's.
pub fn stalled_pipeline_toml(
    receivers: &[&str],
    url: &str,
    max_samples: usize,
    batch_samples: usize,
    timeout: &str,
) -> String {
    let receivers = receivers.iter().map(|r| format!("\"{r}\"")).collect::<Vec<_>>().join(", ");
    format!(
        r#"
[pipelines.main]
receivers = [{receivers}]
sinks = ["stalled"]
ingest_queue_batches = 1
shard_queue_batches = 1

[sinks.stalled]
type = "prometheus_remote_write"
url = "{url}"
queue = {{ type = "memory", max_samples = {max_samples}, when_full = "block" }}
batch = {{ max_samples = {batch_samples}, max_age_ms = 10 }}

[sinks.stalled.request]
timeout = "{timeout}"
concurrency = 1
"#
    )
}
