//! A minimal RESP2 client over TCP: enough for PING, AUTH, INFO, BGSAVE and SHUTDOWN.
//! The password travels only inside the connection, never on a command line.

use std::io::{self, BufReader, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// A reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`.
    Status(String),
    /// `-ERR ...`: the server refused the command.
    Error(String),
    /// `:42`.
    Int(i64),
    /// `$...`; `None` for the null bulk string.
    Bulk(Option<Vec<u8>>),
    /// `*...`; `None` for the null array.
    Array(Option<Vec<Reply>>),
}

impl Reply {
    /// The reply as text (status, bulk, integer), or the server's error.
    pub fn text(self) -> Result<String, String> {
        match self {
            Reply::Status(s) => Ok(s),
            Reply::Bulk(Some(b)) => Ok(String::from_utf8_lossy(&b).into_owned()),
            Reply::Bulk(None) | Reply::Array(None) => Ok(String::new()),
            Reply::Int(i) => Ok(i.to_string()),
            Reply::Error(e) => Err(e),
            Reply::Array(Some(_)) => Err("unexpected array reply".into()),
        }
    }
}

/// One connection.
pub struct Conn {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

/// Bulk strings and arrays larger than this are refused (a wrong port, not Redis).
const MAX_BULK: i64 = 512 << 20;
/// The longest reply line (status, error, length) a peer may send.
const MAX_LINE: u64 = 64 << 10;
/// How deeply arrays may nest; lifeboat's commands get flat or two-level replies.
const MAX_DEPTH: usize = 32;

impl Conn {
    /// Connect to `host:port`; reads and writes time out after `timeout`.
    pub fn connect(host: &str, port: u16, timeout: Duration) -> io::Result<Conn> {
        let mut last = None;
        for addr in (host, port).to_socket_addrs()? {
            match TcpStream::connect_timeout(&addr, timeout) {
                Ok(s) => {
                    s.set_read_timeout(Some(timeout))?;
                    s.set_write_timeout(Some(timeout))?;
                    s.set_nodelay(true)?;
                    return Ok(Conn {
                        reader: BufReader::new(s.try_clone()?),
                        writer: s,
                    });
                }
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "no address")))
    }

    /// Send one command and read its reply.
    pub fn call(&mut self, args: &[&[u8]]) -> io::Result<Reply> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
            out.extend_from_slice(a);
            out.extend_from_slice(b"\r\n");
        }
        self.writer.write_all(&out)?;
        self.read_reply()
    }

    /// `call` with text arguments.
    pub fn cmd(&mut self, args: &[&str]) -> io::Result<Reply> {
        let args: Vec<&[u8]> = args.iter().map(|a| a.as_bytes()).collect();
        self.call(&args)
    }

    fn line(&mut self) -> io::Result<String> {
        let mut line = Vec::new();
        // A peer that never sends a line end must not grow this without bound.
        io::BufRead::read_until(
            &mut io::Read::take(&mut self.reader, MAX_LINE + 2),
            b'\n',
            &mut line,
        )?;
        if line.len() as u64 > MAX_LINE && !line.ends_with(b"\n") {
            return Err(bad("a reply line longer than 64 KiB"));
        }
        if line.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            ));
        }
        if !line.ends_with(b"\r\n") {
            return Err(bad("a reply line without CRLF"));
        }
        line.truncate(line.len() - 2);
        Ok(String::from_utf8_lossy(&line).into_owned())
    }

    fn read_reply(&mut self) -> io::Result<Reply> {
        self.read_nested(0)
    }

    fn read_nested(&mut self, depth: usize) -> io::Result<Reply> {
        if depth > MAX_DEPTH {
            return Err(bad("replies nested deeper than 32 levels"));
        }
        let line = self.line()?;
        let (kind, rest) = line.split_at(line.chars().next().map_or(0, char::len_utf8));
        let number = |s: &str| s.parse::<i64>().map_err(|_| bad("a bad length or integer"));
        Ok(match kind {
            "+" => Reply::Status(rest.to_string()),
            "-" => Reply::Error(rest.to_string()),
            ":" => Reply::Int(number(rest)?),
            "$" => {
                let n = number(rest)?;
                if n < 0 {
                    return Ok(Reply::Bulk(None));
                }
                if n > MAX_BULK {
                    return Err(bad("a bulk reply larger than 512 MiB"));
                }
                // Grown as the bytes arrive, not allocated from the length a peer
                // claims.
                let want = n as u64 + 2;
                let mut b = Vec::with_capacity((want as usize).min(1 << 20));
                io::Read::read_to_end(&mut io::Read::take(&mut self.reader, want), &mut b)?;
                if b.len() as u64 != want {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the server closed the connection inside a reply",
                    ));
                }
                b.truncate(n as usize);
                Reply::Bulk(Some(b))
            }
            "*" => {
                let n = number(rest)?;
                if n < 0 {
                    return Ok(Reply::Array(None));
                }
                if n > MAX_BULK {
                    return Err(bad("an array reply too large"));
                }
                let mut items = Vec::with_capacity(n.min(1024) as usize);
                for _ in 0..n {
                    items.push(self.read_nested(depth + 1)?);
                }
                Reply::Array(Some(items))
            }
            _ => return Err(bad("not a RESP reply (is this a Redis port?)")),
        })
    }
}

fn bad(what: &str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// `name:value` lines of an INFO reply, for one field.
pub fn info_field<'a>(info: &'a str, name: &str) -> Option<&'a str> {
    info.lines().find_map(|l| {
        l.strip_prefix(name)
            .and_then(|r| r.strip_prefix(':'))
            .map(str::trim)
    })
}

/// `keys.dbN` and `expires.dbN` from the `# Keyspace` section of INFO
/// (`db0:keys=3,expires=1,avg_ttl=0`).
pub fn keyspace_counts(info: &str) -> super::super::counts::Counts {
    let mut out = super::super::counts::Counts::new();
    for line in info.lines() {
        let Some((db, fields)) = line.trim().split_once(':') else {
            continue;
        };
        let Some(n) = db.strip_prefix("db").filter(|n| n.parse::<u64>().is_ok()) else {
            continue;
        };
        for kv in fields.split(',') {
            if let Some((k, v)) = kv.split_once('=')
                && (k == "keys" || k == "expires")
                && let Ok(v) = v.parse::<u64>()
            {
                out.insert(format!("{k}.db{n}"), v);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyspace_lines_become_counts() {
        let info = "# Keyspace\r\ndb0:keys=3,expires=1,avg_ttl=0\r\ndb12:keys=7,expires=0,avg_ttl=0,subexpiry=0\r\n";
        let c = keyspace_counts(info);
        assert_eq!(c.get("keys.db0"), Some(&3));
        assert_eq!(c.get("expires.db0"), Some(&1));
        assert_eq!(c.get("keys.db12"), Some(&7));
        assert_eq!(c.get("expires.db12"), Some(&0));
        assert_eq!(c.len(), 4);
    }

    #[test]
    fn info_fields_are_found_by_exact_name() {
        let info = "# Persistence\r\nrdb_saves:3\r\nrdb_bgsave_in_progress:0\r\n";
        assert_eq!(info_field(info, "rdb_saves"), Some("3"));
        assert_eq!(info_field(info, "rdb_bgsave_in_progress"), Some("0"));
        assert_eq!(info_field(info, "rdb"), None);
    }

    /// A peer on loopback that answers the first command with `reply`, then closes.
    fn hostile_peer(reply: Vec<u8>) -> u16 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        std::thread::spawn(move || {
            if let Ok((mut s, _)) = l.accept() {
                let mut buf = [0u8; 64];
                let _ = io::Read::read(&mut s, &mut buf);
                let _ = s.write_all(&reply);
            }
        });
        port
    }

    fn ping(reply: Vec<u8>) -> io::Result<Reply> {
        let port = hostile_peer(reply);
        Conn::connect("127.0.0.1", port, Duration::from_secs(10))?.cmd(&["PING"])
    }

    #[test]
    fn a_hostile_peer_cannot_nest_replies_without_bound() {
        let e = ping(b"*1\r\n".repeat(100_000)).unwrap_err();
        assert!(e.to_string().contains("nested deeper than 32"), "{e}");
    }

    #[test]
    fn a_hostile_peer_cannot_send_an_endless_line() {
        let mut reply = b"+".to_vec();
        reply.extend(std::iter::repeat_n(b'x', 1 << 20));
        let e = ping(reply).unwrap_err();
        assert!(e.to_string().contains("longer than 64 KiB"), "{e}");
    }

    #[test]
    fn a_bulk_reply_cut_short_is_an_early_end_not_a_hang() {
        // 500 MiB announced, 3 bytes sent, then the peer closes.
        let e = ping(b"$524288000\r\nabc".to_vec()).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::UnexpectedEof, "{e}");
    }

    #[test]
    fn ordinary_replies_still_parse() {
        let r = ping(b"*2\r\n$3\r\nabc\r\n*1\r\n:7\r\n".to_vec()).unwrap();
        let Reply::Array(Some(items)) = r else {
            panic!("{r:?}")
        };
        assert_eq!(items.len(), 2);
    }
}
