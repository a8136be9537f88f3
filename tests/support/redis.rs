//! Throwaway `redis-server` processes for tests: a free loopback port, a temporary
//! folder (or a given one), no automatic saves, killed when dropped; and a tiny RESP
//! client to fill and inspect them.
// Shared by several test crates, each of which uses a part.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How to start a server.
#[derive(Debug, Clone)]
pub struct Options {
    /// `requirepass`, set once the server runs.
    pub password: Option<String>,
    /// The folder it loads from and saves to (default: a new temporary one).
    pub dir: Option<PathBuf>,
    /// `--dbfilename`.
    pub dbfilename: String,
    /// `--repl-diskless-sync-delay`: 0 makes `redis-cli --rdb` start at once.
    pub diskless_delay: u32,
    /// More `--name value` arguments.
    pub extra: Vec<String>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            password: None,
            dir: None,
            dbfilename: "dump.rdb".into(),
            diskless_delay: 0,
            extra: Vec::new(),
        }
    }
}

pub struct Server {
    pub port: u16,
    pub dir: PathBuf,
    pub password: Option<String>,
    child: Child,
    _tmp: Option<tempfile::TempDir>,
}

/// A RESP2 reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    Status(String),
    Error(String),
    Int(i64),
    Bulk(Option<Vec<u8>>),
    Array(Vec<Reply>),
}

impl Reply {
    pub fn text(&self) -> String {
        match self {
            Reply::Status(s) => s.clone(),
            Reply::Bulk(Some(b)) => String::from_utf8_lossy(b).into_owned(),
            Reply::Int(i) => i.to_string(),
            other => panic!("not text: {other:?}"),
        }
    }
}

pub struct Conn {
    r: BufReader<TcpStream>,
    w: TcpStream,
}

impl Conn {
    pub fn connect(port: u16) -> std::io::Result<Conn> {
        let s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        Ok(Conn {
            r: BufReader::new(s.try_clone()?),
            w: s,
        })
    }

    fn encode(args: &[&str]) -> Vec<u8> {
        let mut out = format!("*{}\r\n", args.len()).into_bytes();
        for a in args {
            out.extend_from_slice(format!("${}\r\n{a}\r\n", a.len()).as_bytes());
        }
        out
    }

    /// Send one command; panics on an error reply.
    pub fn cmd(&mut self, args: &[&str]) -> Reply {
        let r = self.try_cmd(args).unwrap();
        assert!(!matches!(r, Reply::Error(_)), "{args:?}: {r:?}");
        r
    }

    pub fn try_cmd(&mut self, args: &[&str]) -> std::io::Result<Reply> {
        self.w.write_all(&Self::encode(args))?;
        self.read()
    }

    /// Send many commands at once, then read every reply (all must succeed).
    pub fn pipeline(&mut self, cmds: &[Vec<String>]) {
        let mut out = Vec::new();
        for c in cmds {
            let args: Vec<&str> = c.iter().map(String::as_str).collect();
            out.extend(Self::encode(&args));
        }
        self.w.write_all(&out).unwrap();
        for c in cmds {
            let r = self.read().unwrap();
            assert!(!matches!(r, Reply::Error(_)), "{c:?}: {r:?}");
        }
    }

    fn read(&mut self) -> std::io::Result<Reply> {
        let mut line = String::new();
        if self.r.read_line(&mut line)? == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        let line = line.trim_end_matches("\r\n");
        let (kind, rest) = line.split_at(1);
        Ok(match kind {
            "+" => Reply::Status(rest.into()),
            "-" => Reply::Error(rest.into()),
            ":" => Reply::Int(rest.parse().unwrap()),
            "$" => {
                let n: i64 = rest.parse().unwrap();
                if n < 0 {
                    Reply::Bulk(None)
                } else {
                    let mut b = vec![0u8; n as usize + 2];
                    self.r.read_exact(&mut b)?;
                    b.truncate(n as usize);
                    Reply::Bulk(Some(b))
                }
            }
            "*" => {
                let n: i64 = rest.parse().unwrap();
                let mut v = Vec::new();
                for _ in 0..n.max(0) {
                    v.push(self.read()?);
                }
                Reply::Array(v)
            }
            other => panic!("not RESP: {other}{rest}"),
        })
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Server {
    pub fn start() -> Server {
        Self::start_with(Options::default())
    }

    pub fn start_with(o: Options) -> Server {
        let (tmp, dir) = match &o.dir {
            Some(d) => (None, d.clone()),
            None => {
                let t = tempfile::tempdir().unwrap();
                let d = t.path().to_path_buf();
                (Some(t), d)
            }
        };
        for _ in 0..3 {
            let port = free_port();
            let mut cmd = Command::new("redis-server");
            cmd.arg("--port")
                .arg(port.to_string())
                .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
                .arg("--repl-diskless-sync-delay")
                .arg(o.diskless_delay.to_string())
                .arg("--dir")
                .arg(&dir)
                .arg("--dbfilename")
                .arg(&o.dbfilename)
                .args(&o.extra)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let child = cmd.spawn().expect(
                "redis-server not found: install it (Debian: redis-server; scripts/test.sh does)",
            );
            let mut s = Server {
                port,
                dir: dir.clone(),
                password: None,
                child,
                _tmp: None,
            };
            if s.wait_ready() {
                if let Some(pw) = &o.password {
                    // Set at run time, so that no command line on this machine holds it
                    // and tests can look for it in every process.
                    s.conn().cmd(&["CONFIG", "SET", "requirepass", pw]);
                    s.password = Some(pw.clone());
                }
                s._tmp = tmp;
                return s;
            }
        }
        panic!(
            "redis-server did not start on a free port in {}",
            dir.display()
        );
    }

    fn wait_ready(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if let Ok(mut c) = self.try_conn()
                && let Ok(Reply::Status(s)) = c.try_cmd(&["PING"])
                && s == "PONG"
            {
                return true;
            }
            std::thread::sleep(Duration::from_millis(30));
        }
        false
    }

    fn try_conn(&self) -> std::io::Result<Conn> {
        let mut c = Conn::connect(self.port)?;
        if let Some(pw) = &self.password {
            match c.try_cmd(&["AUTH", pw])? {
                Reply::Status(_) => {}
                other => return Err(std::io::Error::other(format!("AUTH: {other:?}"))),
            }
        }
        Ok(c)
    }

    /// An authenticated connection.
    pub fn conn(&self) -> Conn {
        self.try_conn().unwrap()
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// One command on a new connection, in database `db`.
    pub fn cmd(&self, db: u32, args: &[&str]) -> Reply {
        let mut c = self.conn();
        c.cmd(&["SELECT", &db.to_string()]);
        c.cmd(args)
    }

    /// `n` string keys `PREFIXi` in `db`; with `ttl_secs`, each gets that TTL.
    pub fn fill(&self, db: u32, prefix: &str, n: usize, ttl_secs: Option<u64>) {
        let mut c = self.conn();
        c.cmd(&["SELECT", &db.to_string()]);
        let cmds: Vec<Vec<String>> = (0..n)
            .map(|i| {
                let mut v = vec![
                    "SET".to_string(),
                    format!("{prefix}{i}"),
                    format!("value-{i}"),
                ];
                if let Some(t) = ttl_secs {
                    v.extend(["EX".to_string(), t.to_string()]);
                }
                v
            })
            .collect();
        for chunk in cmds.chunks(1000) {
            c.pipeline(chunk);
        }
    }

    /// A few keys of every value type in `db` (lists, sets, sorted sets, hashes,
    /// streams, small and large encodings); returns how many keys it made.
    pub fn fill_types(&self, db: u32) -> u64 {
        let mut c = self.conn();
        c.cmd(&["SELECT", &db.to_string()]);
        let many: Vec<String> = (0..200).map(|i| format!("m{i}")).collect();
        let scored: Vec<String> = many
            .iter()
            .enumerate()
            .flat_map(|(i, m)| [i.to_string(), m.clone()])
            .collect();
        let with = |head: &[&str], tail: &[String]| -> Vec<String> {
            head.iter()
                .map(|s| s.to_string())
                .chain(tail.iter().cloned())
                .collect()
        };
        c.pipeline(&[
            with(&["RPUSH", "t:list-small", "a", "b"], &[]),
            with(&["RPUSH", "t:list-big"], &many),
            with(&["SADD", "t:intset", "1", "2", "3"], &[]),
            with(&["SADD", "t:set-big"], &many),
            with(&["ZADD", "t:zset-small", "1", "a"], &[]),
            with(&["ZADD", "t:zset-big"], &scored),
            with(&["HSET", "t:hash-small", "f", "v"], &[]),
            with(&["HSET", "t:hash-big"], &scored),
            with(&["XADD", "t:stream", "*", "f", "v"], &[]),
            with(&["XGROUP", "CREATE", "t:stream", "g", "0"], &[]),
            with(&["SET", "t:long", &"xyz".repeat(500)], &[]),
        ]);
        10
    }

    /// `keys.dbN` / `expires.dbN` from INFO keyspace.
    pub fn keyspace(&self) -> BTreeMap<String, u64> {
        let info = self.conn().cmd(&["INFO", "keyspace"]).text();
        let mut out = BTreeMap::new();
        for line in info.lines() {
            let Some((db, fields)) = line.trim().split_once(':') else {
                continue;
            };
            let Some(n) = db.strip_prefix("db") else {
                continue;
            };
            for kv in fields.split(',') {
                if let Some((k, v)) = kv.split_once('=')
                    && (k == "keys" || k == "expires")
                {
                    out.insert(format!("{k}.db{n}"), v.parse().unwrap());
                }
            }
        }
        out
    }

    pub fn dbsize(&self, db: u32) -> u64 {
        match self.cmd(db, &["DBSIZE"]) {
            Reply::Int(n) => n as u64,
            other => panic!("DBSIZE: {other:?}"),
        }
    }

    /// SAVE, then stop the server.
    pub fn save_and_stop(mut self) {
        self.conn().cmd(&["SAVE"]);
        let _ = self.conn().try_cmd(&["SHUTDOWN", "NOSAVE"]);
        let _ = self.child.wait();
    }

    /// Where its RDB file is.
    pub fn rdb_path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Copy `src` to `dst`, flipping one bit of the byte at `offset`.
pub fn copy_flipped(src: &Path, dst: &Path, offset: usize) {
    let mut b = std::fs::read(src).unwrap();
    b[offset] ^= 0x01;
    std::fs::write(dst, b).unwrap();
}
