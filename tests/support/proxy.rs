//! A fault-injecting TCP proxy of our own, between lifeboat and a test peer (moto,
//! Azurite). Its mode can change while it runs:
//! - `Pass`: forward both ways;
//! - `CutAfter(n)`: close any connection once it has carried more than n bytes towards
//!   the peer (a request body cut in the middle);
//! - `Status503(k)`: answer the next k requests with `503 Service Unavailable` itself;
//! - `Stall`: accept and read, never answer.
//! - `LoseResponse(m)`: the next `m.times` requests that `m` matches reach the peer
//!   whole, are done there, and their connection closes before the answer comes back
//!   (the peer did it; the client cannot know);
//! - `Reset(m)`: the next `m.times` requests that `m` matches are never forwarded:
//!   their connection closes at once (the peer never saw them).
//!
//! Matching requests are looked for on every connection, kept-alive ones included, so
//! a mode set while a client holds pooled connections applies to its next request.
// Shared by several test crates, each of which uses a part.
#![allow(dead_code)]

use std::sync::{Arc, Mutex};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Pass,
    CutAfter(usize),
    Status503(usize),
    Stall,
    LoseResponse(Request),
    Reset(Request),
}

/// Which requests a fault applies to, and to how many more of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// The HTTP method (`PUT`, `POST`).
    pub method: &'static str,
    /// A part of the request target (`manifest.json`, `uploadId=`).
    pub target_contains: &'static str,
    /// How many matching requests are hit; the proxy passes everything afterwards.
    pub times: usize,
}

impl Request {
    pub fn new(method: &'static str, target_contains: &'static str, times: usize) -> Request {
        Request {
            method,
            target_contains,
            times,
        }
    }

    /// Whether `chunk`, the first bytes of a request, starts with a matching request line.
    fn matches(&self, chunk: &[u8]) -> bool {
        let head = &chunk[..chunk.len().min(4096)];
        let line = match head.windows(2).position(|w| w == b"\r\n") {
            Some(end) => &head[..end],
            None => head,
        };
        let line = String::from_utf8_lossy(line);
        let mut words = line.split(' ');
        words.next() == Some(self.method)
            && words
                .next()
                .is_some_and(|target| target.contains(self.target_contains))
    }
}

/// What to do with a request the client is sending on a forwarded connection.
enum Fault {
    None,
    LoseResponse,
    Reset,
}

/// Look `chunk` up against the current mode; a hit uses up one of its `times`.
fn fault_for(mode: &Mutex<Mode>, chunk: &[u8]) -> Fault {
    let mut m = mode.lock().unwrap();
    let (req, fault) = match *m {
        Mode::LoseResponse(r) if r.matches(chunk) => (r, Fault::LoseResponse),
        Mode::Reset(r) if r.matches(chunk) => (r, Fault::Reset),
        _ => return Fault::None,
    };
    let left = req.times.saturating_sub(1);
    *m = match (left, &fault) {
        (0, _) => Mode::Pass,
        (times, Fault::LoseResponse) => Mode::LoseResponse(Request { times, ..req }),
        (times, _) => Mode::Reset(Request { times, ..req }),
    };
    fault
}

pub struct Proxy {
    pub addr: std::net::SocketAddr,
    mode: Arc<Mutex<Mode>>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Proxy {
    /// Start a proxy to `upstream` (host:port) on a thread and runtime of its own, so it
    /// keeps serving while a test blocks on a child process.
    pub fn start(upstream: &str) -> Proxy {
        let mode = Arc::new(Mutex::new(Mode::Pass));
        let (addr_tx, addr_rx) = std::sync::mpsc::channel();
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
        let upstream = upstream.to_string();
        let m = mode.clone();
        std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
                addr_tx.send(listener.local_addr().unwrap()).unwrap();
                loop {
                    tokio::select! {
                        _ = &mut stop_rx => return,
                        accepted = listener.accept() => {
                            let Ok((client, _)) = accepted else { return };
                            let (m, upstream) = (m.clone(), upstream.clone());
                            tokio::spawn(async move {
                                let _ = serve(client, &upstream, m).await;
                            });
                        }
                    }
                }
            });
            runtime.shutdown_background();
        });
        Proxy {
            addr: addr_rx.recv().unwrap(),
            mode,
            stop: Some(stop_tx),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn set(&self, mode: Mode) {
        *self.mode.lock().unwrap() = mode;
    }

    /// The mode now: a counted fault that has been used up reads `Pass`, which is how a
    /// test knows its fault really happened.
    pub fn mode(&self) -> Mode {
        *self.mode.lock().unwrap()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

async fn serve(
    mut client: TcpStream,
    upstream: &str,
    mode: Arc<Mutex<Mode>>,
) -> std::io::Result<()> {
    let current = {
        let mut m = mode.lock().unwrap();
        let now = *m;
        if let Mode::Status503(k) = now {
            *m = if k <= 1 {
                Mode::Pass
            } else {
                Mode::Status503(k - 1)
            };
        }
        now
    };
    match current {
        Mode::Status503(_) => {
            // Read the request head, then refuse it.
            let mut buf = vec![0u8; 64 * 1024];
            let _ =
                tokio::time::timeout(std::time::Duration::from_millis(200), client.read(&mut buf))
                    .await;
            let body = "<Error><Code>ServiceUnavailable</Code><Message>injected</Message></Error>";
            let resp = format!(
                "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/xml\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            client.write_all(resp.as_bytes()).await?;
            client.shutdown().await?;
            Ok(())
        }
        Mode::Stall => {
            let mut buf = vec![0u8; 64 * 1024];
            while client.read(&mut buf).await? > 0 {}
            Ok(())
        }
        Mode::Pass | Mode::CutAfter(_) | Mode::LoseResponse(_) | Mode::Reset(_) => {
            let server = TcpStream::connect(upstream).await?;
            let (mut cr, mut cw) = client.into_split();
            let (mut sr, mut sw) = server.into_split();
            let limit = match current {
                Mode::CutAfter(n) => Some(n),
                _ => None,
            };
            // Set by the upstream direction when a request's answer is to be lost; the
            // flag is set before the request is forwarded, so the answer cannot pass.
            let lose = Arc::new(std::sync::atomic::AtomicBool::new(false));
            let lose_up = lose.clone();
            let up = async move {
                let mut buf = vec![0u8; 64 * 1024];
                let mut sent = 0usize;
                loop {
                    let n = cr.read(&mut buf).await?;
                    if n == 0 {
                        sw.shutdown().await?;
                        return Ok::<_, std::io::Error>(());
                    }
                    match fault_for(&mode, &buf[..n]) {
                        Fault::None => {}
                        Fault::Reset => return Err(std::io::Error::other("reset")),
                        Fault::LoseResponse => {
                            lose_up.store(true, std::sync::atomic::Ordering::SeqCst)
                        }
                    }
                    if let Some(limit) = limit
                        && sent + n > limit
                    {
                        let keep = limit.saturating_sub(sent);
                        sw.write_all(&buf[..keep]).await?;
                        // Cut: both directions close without a response.
                        return Err(std::io::Error::other("cut"));
                    }
                    sw.write_all(&buf[..n]).await?;
                    sent += n;
                }
            };
            let down = async move {
                let mut buf = vec![0u8; 64 * 1024];
                loop {
                    let n = sr.read(&mut buf).await?;
                    if n == 0 {
                        return cw.shutdown().await;
                    }
                    if lose.load(std::sync::atomic::Ordering::SeqCst) {
                        // The peer answered: the answer is dropped with the connection.
                        return Err(std::io::Error::other("answer lost"));
                    }
                    cw.write_all(&buf[..n]).await?;
                }
            };
            tokio::select! {
                r = up => r,
                r = down => r,
            }
        }
    }
}
