//! Any bytes rrdcached might answer the sink's client: it must not panic or allocate by what a
//! reply claims, must turn a reply it cannot read into a protocol or I/O error, and
//! must report exactly the failed commands a well-formed `BATCH` answer lists.
#![no_main]

use std::io;
use std::pin::Pin;
use std::sync::OnceLock;
use std::task::{Context, Poll};
use std::time::Duration;

use libfuzzer_sys::fuzz_target;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tsrelay::sinks::rrdcached::client::{ClientError, Connection};
use tsrelay::sinks::rrdcached::encode::{parse_batch_error, parse_status};

/// A peer that answers with fixed bytes (then end of stream) and swallows what it is sent.
struct Scripted {
    reply: Vec<u8>,
    at: usize,
}

impl AsyncRead for Scripted {
    fn poll_read(mut self: Pin<&mut Self>, _: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let n = buf.remaining().min(self.reply.len() - self.at);
        let at = self.at;
        buf.put_slice(&self.reply[at..at + n]);
        self.at += n;
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Scripted {
    fn poll_write(self: Pin<&mut Self>, _: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Builder::new_current_thread().enable_time().build().expect("a runtime"))
}

const TIMEOUT: Duration = Duration::from_secs(60);

fuzz_target!(|data: &[u8]| {
    let Some((&mode, reply)) = data.split_first() else { return };
    let mut c = Connection::over(Scripted { reply: reply.to_vec(), at: 0 }, "fuzz".into());
    // Invalid UTF-8 fails the read as an I/O error; only valid text is checked further.
    let text = std::str::from_utf8(reply).ok();
    let lines: Vec<&str> = text.map_or(vec![], |t| t.split_inclusive('\n').collect());

    if mode % 2 == 0 {
        let result = runtime().block_on(c.batch(b"UPDATE /a.rrd 1:1\nUPDATE /b.rrd 1:2\n", TIMEOUT));
        if text.is_none() {
            return;
        }
        let go_ahead = lines.first().and_then(|l| parse_status(l)).is_some_and(|(code, _)| code == 0);
        assert_eq!(c.commands_sent(), go_ahead);
        match result {
            Ok(errors) => {
                assert!(go_ahead);
                let (count, _) = parse_status(lines[1]).expect("a status line after the commands");
                assert_eq!(errors.len() as i64, count.max(0));
                for (e, line) in errors.iter().zip(&lines[2..]) {
                    let (n, message) = parse_batch_error(line).expect("an error line");
                    assert_eq!((e.0, e.1.as_str()), (n, message));
                }
            }
            Err(ClientError::Timeout { .. }) => panic!("a reply that ends cannot time out"),
            Err(_) => {}
        }
    } else {
        match runtime().block_on(c.command("FLUSH /a.rrd", TIMEOUT)) {
            Ok(_) if text.is_none() => {}
            Ok((code, message)) => {
                let (want, text) = parse_status(lines[0]).expect("a status line");
                assert_eq!((code, message.as_str()), (want, text));
                assert!(lines.len() as i64 > code.max(0), "{code} detail lines announced, {} read", lines.len() - 1);
            }
            Err(ClientError::Timeout { .. }) => panic!("a reply that ends cannot time out"),
            Err(_) => {}
        }
    }
});
