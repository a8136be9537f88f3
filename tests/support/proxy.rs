//! A fault-injecting TCP proxy of our own, between lifeboat and a test peer (moto,
//! Azurite). Its mode can change while it runs:
//! - `Pass`: forward both ways;
//! - `CutAfter(n)`: close any connection once it has carried more than n bytes towards
//!   the peer (a request body cut in the middle);
//! - `Status503(k)`: answer the next k requests with `503 Service Unavailable` itself;
//! - `Stall`: accept and read, never answer.
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
        Mode::Pass | Mode::CutAfter(_) => {
            let server = TcpStream::connect(upstream).await?;
            let (mut cr, mut cw) = client.into_split();
            let (mut sr, mut sw) = server.into_split();
            let limit = match current {
                Mode::CutAfter(n) => Some(n),
                _ => None,
            };
            let up = async move {
                let mut buf = vec![0u8; 64 * 1024];
                let mut sent = 0usize;
                loop {
                    let n = cr.read(&mut buf).await?;
                    if n == 0 {
                        sw.shutdown().await?;
                        return Ok::<_, std::io::Error>(());
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
                tokio::io::copy(&mut sr, &mut cw).await?;
                cw.shutdown().await
            };
            tokio::select! {
                r = up => r,
                r = down => r,
            }
        }
    }
}
