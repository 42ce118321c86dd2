//! A connection to rrdcached (unix socket or TCP) speaking its text protocol:
//! `BATCH` blocks and single commands. Reconnecting is the caller's choice:
//! after any error the connection is dropped and a new one made.

use std::path::PathBuf;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UnixStream};

use super::encode::{parse_batch_error, parse_status};

/// Where rrdcached listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Address {
    Unix(PathBuf),
    Tcp(String),
}

impl Address {
    /// `unix:/path` or `tcp:host:port`.
    pub fn parse(s: &str) -> Result<Address, String> {
        if let Some(path) = s.strip_prefix("unix:") {
            if path.is_empty() {
                return Err(format!("address {s:?}: empty socket path"));
            }
            return Ok(Address::Unix(PathBuf::from(path)));
        }
        if let Some(hostport) = s.strip_prefix("tcp:") {
            let port_ok = hostport.rsplit_once(':').is_some_and(|(h, p)| !h.is_empty() && p.parse::<u16>().is_ok());
            if !port_ok {
                return Err(format!("address {s:?}: expected tcp:host:port"));
            }
            return Ok(Address::Tcp(hostport.to_string()));
        }
        Err(format!("address {s:?} must start with unix: or tcp:"))
    }
}

impl std::fmt::Display for Address {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Address::Unix(p) => write!(f, "unix:{}", p.display()),
            Address::Tcp(a) => write!(f, "tcp:{a}"),
        }
    }
}

/// Longest reply line accepted; rrdcached's own lines are under 8 KiB.
const MAX_LINE_BYTES: usize = 64 * 1024;
/// Most detail lines one reply may announce (a `LIST` of two million files).
const MAX_REPLY_LINES: usize = 2_000_000;

/// One reply: the status line and its detail lines.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reply {
    /// Negative: an error; otherwise how many detail lines followed.
    pub code: i64,
    pub message: String,
    pub lines: Vec<String>,
}

trait Stream: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Stream for T {}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("connecting to rrdcached at {address}: {source}")]
    Connect { address: String, source: std::io::Error },
    #[error("talking to rrdcached at {address}: {source}")]
    Io { address: String, source: std::io::Error },
    #[error("rrdcached at {address} did not answer within {timeout:?}")]
    Timeout { address: String, timeout: Duration },
    /// `line`: the bytes answered, escaped (`\xNN` for any that are not printable ASCII).
    #[error("rrdcached at {address} answered \"{line}\" to {context}")]
    Protocol { address: String, context: String, line: String },
}

/// One open connection.
pub struct Connection {
    stream: BufReader<Box<dyn Stream>>,
    address: String,
    line: String,
    bytes: Vec<u8>,
    /// The last `BATCH` got past "Go ahead": its commands may have been applied.
    commands_sent: bool,
}

impl Connection {
    pub async fn connect(address: &Address, timeout: Duration) -> Result<Connection, ClientError> {
        let name = address.to_string();
        let connect = async {
            let stream: Box<dyn Stream> = match address {
                Address::Unix(p) => Box::new(UnixStream::connect(p).await?),
                Address::Tcp(a) => {
                    let s = TcpStream::connect(a).await?;
                    s.set_nodelay(true)?;
                    Box::new(s)
                }
            };
            Ok::<_, std::io::Error>(stream)
        };
        match tokio::time::timeout(timeout, connect).await {
            Err(_) => Err(ClientError::Timeout { address: name, timeout }),
            Ok(Err(source)) => Err(ClientError::Connect { address: name, source }),
            Ok(Ok(stream)) => Ok(Connection::over(stream, name)),
        }
    }

    /// A connection over an already open stream; `address` names the peer in errors.
    /// [`Connection::connect`] uses it, and so does the rrdcached reply fuzz target.
    pub fn over(stream: impl AsyncRead + AsyncWrite + Send + Unpin + 'static, address: String) -> Connection {
        let stream: Box<dyn Stream> = Box::new(stream);
        Connection {
            stream: BufReader::new(stream),
            address,
            line: String::new(),
            bytes: Vec::new(),
            commands_sent: false,
        }
    }

    /// Runs `commands` (newline-terminated lines) as one `BATCH`; returns the
    /// failed commands as `(number, message)`, numbered from 1.
    pub async fn batch(&mut self, commands: &[u8], timeout: Duration) -> Result<Vec<(usize, String)>, ClientError> {
        let address = self.address.clone();
        match tokio::time::timeout(timeout, self.batch_inner(commands)).await {
            Err(_) => Err(ClientError::Timeout { address, timeout }),
            Ok(r) => r,
        }
    }

    /// Whether the last [`Connection::batch`] sent its commands (even if it then failed).
    pub fn commands_sent(&self) -> bool {
        self.commands_sent
    }

    async fn batch_inner(&mut self, commands: &[u8]) -> Result<Vec<(usize, String)>, ClientError> {
        self.commands_sent = false;
        self.write(b"BATCH\n").await?;
        let (code, _) = self.status("BATCH").await?;
        if code != 0 {
            return Err(self.protocol("BATCH"));
        }
        self.commands_sent = true;
        self.write(commands).await?;
        self.write(b".\n").await?;
        let (count, _) = self.status("the end of a BATCH").await?;
        // Sized by what arrives, not by the count the peer claims (found by fuzzing: a
        // reply of "1111111119 errors" asked for a 35 GB vector).
        let mut errors = Vec::new();
        for _ in 0..count.max(0) {
            self.read_line().await?;
            let parsed = parse_batch_error(&self.line).map(|(n, m)| (n, m.to_string()));
            match parsed {
                Some(e) => errors.push(e),
                None => return Err(self.protocol("a BATCH error line")),
            }
        }
        Ok(errors)
    }

    /// One command that answers a status line (e.g. `FLUSH`); `(code, message)`.
    pub async fn command(&mut self, line: &str, timeout: Duration) -> Result<(i64, String), ClientError> {
        let mut replies = self.pipeline(std::slice::from_ref(&line), timeout).await?;
        let reply = replies.pop().unwrap_or_default();
        Ok((reply.code, reply.message))
    }

    /// Sends `commands` (one line each, without newline) back to back, then
    /// reads their replies in order: one round trip for many commands (the
    /// read side sends `INFO` and `FETCH` for hundreds of files this way).
    /// A reply's detail lines are kept; bytes that are not UTF-8 are replaced.
    pub async fn pipeline<S: AsRef<str>>(
        &mut self,
        commands: &[S],
        timeout: Duration,
    ) -> Result<Vec<Reply>, ClientError> {
        let address = self.address.clone();
        let run = async {
            let mut out = Vec::with_capacity(commands.iter().map(|c| c.as_ref().len() + 1).sum());
            for c in commands {
                out.extend_from_slice(c.as_ref().trim_end_matches('\n').as_bytes());
                out.push(b'\n');
            }
            self.write(&out).await?;
            let mut replies = Vec::with_capacity(commands.len());
            for (i, command) in commands.iter().enumerate() {
                let (code, message) = match self.status("a command").await {
                    Ok(status) => status,
                    // Name the command whose reply was unusable (and where it stood in the pipeline).
                    Err(ClientError::Protocol { address, line, .. }) => {
                        let command: String = command.as_ref().trim_end().chars().take(200).collect();
                        let context = format!("command {} of {} ({command:?})", i + 1, commands.len());
                        return Err(ClientError::Protocol { address, context, line });
                    }
                    Err(e) => return Err(e),
                };
                let message = message.to_string();
                // Positive codes announce that many lines of detail.
                let count = usize::try_from(code).unwrap_or(0);
                if count > MAX_REPLY_LINES {
                    return Err(self.protocol("a reply with too many lines"));
                }
                let mut lines = Vec::with_capacity(count.min(4096));
                for _ in 0..count {
                    self.read_line().await?;
                    lines.push(self.line.trim_end_matches(['\r', '\n']).to_string());
                }
                replies.push(Reply { code, message, lines });
            }
            Ok(replies)
        };
        match tokio::time::timeout(timeout, run).await {
            Err(_) => Err(ClientError::Timeout { address, timeout }),
            Ok(r) => r,
        }
    }

    async fn write(&mut self, bytes: &[u8]) -> Result<(), ClientError> {
        let w = self.stream.get_mut();
        let r = async {
            w.write_all(bytes).await?;
            w.flush().await
        }
        .await;
        r.map_err(|source| ClientError::Io { address: self.address.clone(), source })
    }

    async fn read_line(&mut self) -> Result<(), ClientError> {
        self.line.clear();
        self.bytes.clear();
        let limited = (&mut self.stream).take(MAX_LINE_BYTES as u64 + 1);
        let mut limited = limited;
        match limited.read_until(b'\n', &mut self.bytes).await {
            Ok(0) => Err(ClientError::Io {
                address: self.address.clone(),
                source: std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed by rrdcached"),
            }),
            Ok(_) if self.bytes.len() > MAX_LINE_BYTES => {
                self.bytes.truncate(80);
                Err(self.protocol("a line longer than 64 KiB"))
            }
            Ok(_) => {
                self.line.push_str(&String::from_utf8_lossy(&self.bytes));
                Ok(())
            }
            Err(source) => Err(ClientError::Io { address: self.address.clone(), source }),
        }
    }

    async fn status(&mut self, context: &'static str) -> Result<(i64, &str), ClientError> {
        self.read_line().await?;
        if parse_status(&self.line).is_none() {
            return Err(self.protocol(context));
        }
        Ok(parse_status(&self.line).unwrap_or((0, "")))
    }

    /// The last line read did not fit `context`. The line is quoted from its bytes, escaped,
    /// so that a reply that is not text shows what it was.
    fn protocol(&self, context: &str) -> ClientError {
        let raw = self.bytes.strip_suffix(b"\n").unwrap_or(&self.bytes);
        let shown = &raw[..raw.len().min(200)];
        ClientError::Protocol {
            address: self.address.clone(),
            context: context.to_string(),
            line: shown.escape_ascii().to_string(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse() {
        assert_eq!(Address::parse("unix:/run/r.sock"), Ok(Address::Unix("/run/r.sock".into())));
        assert_eq!(Address::parse("tcp:127.0.0.1:42217"), Ok(Address::Tcp("127.0.0.1:42217".into())));
        assert!(Address::parse("tcp:127.0.0.1").is_err());
        assert!(Address::parse("/run/r.sock").is_err());
        assert!(Address::parse("unix:").is_err());
    }

    /// Regression (fuzz/regressions/rrdcached_reply/): the error count a peer announces
    /// must not size an allocation; the reply ends early, which is an I/O error.
    #[tokio::test]
    async fn a_huge_error_count_is_not_trusted() {
        let reply: &[u8] = b"0 Go ahead.\n9223372036854775807 errors\n1 No such file: /a.rrd\n";
        let mut c = Connection::over(tokio::io::join(reply, tokio::io::sink()), "scripted".into());
        let e = c.batch(b"UPDATE /a.rrd 1:1\n", Duration::from_secs(5)).await.unwrap_err();
        assert!(matches!(e, ClientError::Io { .. }), "{e}");
        assert!(c.commands_sent());
    }

    /// A reply that is not a status line names the command it answered, and its bytes are
    /// shown escaped (CI once saw rrdcached answer three bytes of binary).
    #[tokio::test]
    async fn an_unusable_reply_names_its_command() {
        let reply: &[u8] = b"0 Info for /a.rrd follows\nZ\xe9\x7f\n";
        let mut c = Connection::over(tokio::io::join(reply, tokio::io::sink()), "scripted".into());
        let e = c.pipeline(&["INFO /a.rrd", "FETCH /a.rrd AVERAGE 1 2"], Duration::from_secs(5)).await.unwrap_err();
        assert_eq!(
            e.to_string(),
            r#"rrdcached at scripted answered "Z\xe9\x7f" to command 2 of 2 ("FETCH /a.rrd AVERAGE 1 2")"#
        );
    }

    #[tokio::test]
    async fn batch_reads_numbered_errors() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("s");
        let listener = tokio::net::UnixListener::bind(&sock).unwrap();
        // A scripted peer: answers BATCH, swallows the commands, reports one error.
        tokio::spawn(async move {
            let (s, _) = listener.accept().await.unwrap();
            let mut s = BufReader::new(s);
            let mut line = String::new();
            s.read_line(&mut line).await.unwrap();
            s.get_mut().write_all(b"0 Go ahead.\n").await.unwrap();
            loop {
                line.clear();
                s.read_line(&mut line).await.unwrap();
                if line == ".\n" {
                    break;
                }
            }
            s.get_mut().write_all(b"1 errors\n2 No such file: /b/x.rrd\n").await.unwrap();
        });
        let mut c = Connection::connect(&Address::Unix(sock), Duration::from_secs(5)).await.unwrap();
        let errors = c.batch(b"UPDATE a 1:1\nUPDATE x 1:1\n", Duration::from_secs(5)).await.unwrap();
        assert_eq!(errors, vec![(2, "No such file: /b/x.rrd".to_string())]);
    }
}
