//! Redis RDB files, read natively: the `REDIS` magic and version, the CRC-64 trailer,
//! and a walk over every opcode and value to the EOF opcode, counting keys and keys
//! with an expiry per database.
//!
//! The walk skips values by their length encodings without building them, so it reads
//! the file once, in constant memory. It knows the value types Redis writes up to RDB
//! version 12 (Redis 7.4 and 8.0): strings, lists (linked, ziplist, quicklist,
//! quicklist 2), sets (plain, intset, listpack), sorted sets (plain, binary doubles,
//! ziplist, listpack), hashes (plain, zipmap, ziplist, listpack, with field expiry),
//! streams (three layouts), module values and module aux data (through their typed
//! annotations), function libraries. An unknown type or opcode fails the walk rather
//! than being guessed past: counts are only reported when every key was seen.
//!
//! The keys counted by walking must equal the `RESIZEDB` entry that Redis writes
//! before each database (the size of its dictionaries at the fork); a difference means
//! the walk and the writer disagree about the file, and it is rejected.

use std::collections::BTreeMap;
use std::fmt;
use std::io::{self, BufReader, Read};

/// The newest RDB version this module reads.
pub const MAX_VERSION: u32 = 12;

/// Redis's RDB checksum: CRC-64/Jones as Redis uses it (reflected, polynomial
/// 0xad93d23594c935a9, initial value 0, no final xor), eight bytes at a time.
#[derive(Debug, Clone, Copy, Default)]
pub struct Crc64(u64);

/// The reflected polynomial.
const POLY_REFLECTED: u64 = 0x95ac_9329_ac4b_c9b5;

/// Slicing-by-8 tables, built at compile time. A `static`, not a `const`: unoptimised
/// builds would copy a `const` array at every use.
static TABLES: [[u64; 256]; 8] = {
    let mut t = [[0u64; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut crc = i as u64;
        let mut b = 0;
        while b < 8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ POLY_REFLECTED
            } else {
                crc >> 1
            };
            b += 1;
        }
        t[0][i] = crc;
        i += 1;
    }
    let mut k = 1;
    while k < 8 {
        let mut i = 0;
        while i < 256 {
            let prev = t[k - 1][i];
            t[k][i] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
            i += 1;
        }
        k += 1;
    }
    t
};

impl Crc64 {
    /// A fresh checksum.
    pub fn new() -> Self {
        Crc64(0)
    }

    /// Add bytes.
    pub fn update(&mut self, bytes: &[u8]) {
        let mut crc = self.0;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let v = crc ^ u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            crc = TABLES[7][(v & 0xff) as usize]
                ^ TABLES[6][((v >> 8) & 0xff) as usize]
                ^ TABLES[5][((v >> 16) & 0xff) as usize]
                ^ TABLES[4][((v >> 24) & 0xff) as usize]
                ^ TABLES[3][((v >> 32) & 0xff) as usize]
                ^ TABLES[2][((v >> 40) & 0xff) as usize]
                ^ TABLES[1][((v >> 48) & 0xff) as usize]
                ^ TABLES[0][(v >> 56) as usize];
        }
        for &b in chunks.remainder() {
            crc = TABLES[0][((crc ^ b as u64) & 0xff) as usize] ^ (crc >> 8);
        }
        self.0 = crc;
    }

    /// The checksum so far.
    pub fn value(&self) -> u64 {
        self.0
    }
}

/// Why a file is not a sound RDB.
#[derive(Debug, thiserror::Error)]
pub enum RdbError {
    /// Reading failed.
    #[error("read failed: {0}")]
    Io(#[from] io::Error),
    /// No `REDIS` magic.
    #[error("not an RDB file (it does not start with REDIS and a 4-digit version)")]
    NotRdb,
    /// A version this module does not read.
    #[error(
        "RDB version {0} is not supported (lifeboat reads versions 1 to {MAX_VERSION}, written by Redis up to 7.4/8.0)"
    )]
    Version(u32),
    /// The file ends early.
    #[error("truncated: the file ends at byte {0} in the middle of {1}")]
    Truncated(u64, &'static str),
    /// A structure that cannot be right.
    #[error("corrupt at byte {offset}: {what}")]
    Corrupt {
        /// Where.
        offset: u64,
        /// What.
        what: String,
    },
    /// The stored checksum differs from the content's.
    #[error("checksum mismatch: the file says {stored:016x}, its content gives {computed:016x}")]
    Checksum {
        /// The trailer.
        stored: u64,
        /// Computed.
        computed: u64,
    },
    /// Bytes after the checksum.
    #[error("{0} unexpected bytes after the end of the RDB")]
    Trailing(u64),
    /// Walked keys differ from the RESIZEDB entry.
    #[error(
        "db{db}: RESIZEDB announces {announced_keys} keys ({announced_expires} with expiry), the file holds {keys} ({expires})"
    )]
    Resize {
        /// Database.
        db: u64,
        /// From RESIZEDB.
        announced_keys: u64,
        /// From RESIZEDB.
        announced_expires: u64,
        /// Walked.
        keys: u64,
        /// Walked.
        expires: u64,
    },
}

/// Keys of one database.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DbCounts {
    /// Keys found by walking.
    pub keys: u64,
    /// Of those, keys with an expiry.
    pub expires: u64,
    /// The `RESIZEDB` entry (keys, expires), when the file has one.
    pub announced: Option<(u64, u64)>,
}

/// How the file's checksum was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checksum {
    /// The trailer matched the content.
    Verified(u64),
    /// The trailer is zero: the server wrote it with `rdbchecksum no`.
    Disabled,
    /// RDB versions before 5 have no trailer.
    Absent,
}

/// What a sound RDB holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RdbSummary {
    /// RDB format version.
    pub version: u32,
    /// Short AUX fields (`redis-ver`, `redis-bits`, `ctime`, `used-mem`, ...).
    pub aux: BTreeMap<String, String>,
    /// Databases that hold keys, by number.
    pub dbs: BTreeMap<u64, DbCounts>,
    /// The checksum.
    pub checksum: Checksum,
    /// File size in bytes.
    pub size: u64,
    /// Function libraries (Redis 7 functions).
    pub functions: u64,
    /// Module aux records.
    pub module_aux: u64,
}

impl RdbSummary {
    /// The writer's Redis version, from the `redis-ver` AUX field.
    pub fn redis_version(&self) -> Option<&str> {
        self.aux.get("redis-ver").map(String::as_str)
    }

    /// `keys.dbN` and `expires.dbN` for every database that holds keys.
    pub fn counts(&self) -> super::counts::Counts {
        let mut out = super::counts::Counts::new();
        for (db, c) in &self.dbs {
            if c.keys > 0 {
                out.insert(format!("keys.db{db}"), c.keys);
                out.insert(format!("expires.db{db}"), c.expires);
            }
        }
        out
    }

    /// The highest database number that holds keys.
    pub fn max_db(&self) -> Option<u64> {
        self.dbs
            .iter()
            .filter(|(_, c)| c.keys > 0)
            .map(|(db, _)| *db)
            .max()
    }
}

impl fmt::Display for RdbSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let keys: u64 = self.dbs.values().map(|c| c.keys).sum();
        write!(
            f,
            "RDB version {}, {} keys in {} databases, {} bytes",
            self.version,
            keys,
            self.dbs.values().filter(|c| c.keys > 0).count(),
            self.size
        )
    }
}

/// Feeds every byte read through the checksum, holding back the latest eight: at the
/// end of the stream they are the trailer, which the checksum does not cover.
struct CrcReader<R> {
    inner: R,
    crc: Crc64,
    held: [u8; 8],
    held_len: usize,
}

impl<R: Read> CrcReader<R> {
    fn new(inner: R) -> Self {
        CrcReader {
            inner,
            crc: Crc64::new(),
            held: [0; 8],
            held_len: 0,
        }
    }

    /// The checksum of everything read except the last eight bytes.
    fn crc_before_trailer(&self) -> u64 {
        self.crc.value()
    }
}

impl<R: Read> Read for CrcReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let new = &buf[..n];
        if n >= 8 {
            self.crc.update(&self.held[..self.held_len]);
            self.crc.update(&new[..n - 8]);
            self.held.copy_from_slice(&new[n - 8..]);
            self.held_len = 8;
        } else {
            // Keep the newest eight of (held + new).
            let total = self.held_len + n;
            let spill = total.saturating_sub(8);
            self.crc.update(&self.held[..spill]);
            let mut next = [0u8; 8];
            let keep_old = self.held_len - spill;
            next[..keep_old].copy_from_slice(&self.held[spill..self.held_len]);
            next[keep_old..keep_old + n].copy_from_slice(new);
            self.held = next;
            self.held_len = total - spill;
        }
        Ok(n)
    }
}

/// A length, or the kind of a specially encoded string.
enum Len {
    Plain(u64),
    Encoded(u8),
}

/// The walker: a buffered reader with a position, for error messages.
struct Walker<R> {
    r: BufReader<CrcReader<R>>,
    pos: u64,
    scratch: Vec<u8>,
}

const OP_SLOT_INFO: u8 = 244;
const OP_FUNCTION2: u8 = 245;
const OP_FUNCTION_PRE_GA: u8 = 246;
const OP_MODULE_AUX: u8 = 247;
const OP_IDLE: u8 = 248;
const OP_FREQ: u8 = 249;
const OP_AUX: u8 = 250;
const OP_RESIZEDB: u8 = 251;
const OP_EXPIRETIME_MS: u8 = 252;
const OP_EXPIRETIME: u8 = 253;
const OP_SELECTDB: u8 = 254;
/// The highest database count an RDB may use (Redis' default is 16).
const MAX_DATABASES: u64 = 1 << 16;
const OP_EOF: u8 = 255;

/// AUX values longer than this are skipped rather than kept.
const AUX_KEEP: u64 = 256;

impl<R: Read> Walker<R> {
    fn exact(&mut self, buf: &mut [u8], what: &'static str) -> Result<(), RdbError> {
        match self.r.read_exact(buf) {
            Ok(()) => {
                self.pos += buf.len() as u64;
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                Err(RdbError::Truncated(self.pos, what))
            }
            Err(e) => Err(e.into()),
        }
    }

    fn byte(&mut self, what: &'static str) -> Result<u8, RdbError> {
        let mut b = [0u8; 1];
        self.exact(&mut b, what)?;
        Ok(b[0])
    }

    fn skip(&mut self, mut n: u64, what: &'static str) -> Result<(), RdbError> {
        if self.scratch.is_empty() {
            self.scratch = vec![0u8; 64 << 10];
        }
        let mut scratch = std::mem::take(&mut self.scratch);
        while n > 0 {
            let step = n.min(scratch.len() as u64) as usize;
            let r = self.exact(&mut scratch[..step], what);
            if r.is_err() {
                self.scratch = scratch;
                return r;
            }
            n -= step as u64;
        }
        self.scratch = scratch;
        Ok(())
    }

    fn corrupt(&self, what: impl Into<String>) -> RdbError {
        RdbError::Corrupt {
            offset: self.pos,
            what: what.into(),
        }
    }

    fn length(&mut self, what: &'static str) -> Result<Len, RdbError> {
        let first = self.byte(what)?;
        Ok(match first >> 6 {
            0 => Len::Plain(u64::from(first & 0x3f)),
            1 => Len::Plain((u64::from(first & 0x3f) << 8) | u64::from(self.byte(what)?)),
            2 => match first {
                0x80 => {
                    let mut b = [0u8; 4];
                    self.exact(&mut b, what)?;
                    Len::Plain(u64::from(u32::from_be_bytes(b)))
                }
                0x81 => {
                    let mut b = [0u8; 8];
                    self.exact(&mut b, what)?;
                    Len::Plain(u64::from_be_bytes(b))
                }
                other => return Err(self.corrupt(format!("unknown length prefix {other:#04x}"))),
            },
            _ => Len::Encoded(first & 0x3f),
        })
    }

    fn plain_len(&mut self, what: &'static str) -> Result<u64, RdbError> {
        match self.length(what)? {
            Len::Plain(n) => Ok(n),
            Len::Encoded(e) => Err(self.corrupt(format!(
                "{what}: an encoded string ({e}) where a length belongs"
            ))),
        }
    }

    fn skip_string(&mut self, what: &'static str) -> Result<(), RdbError> {
        match self.length(what)? {
            Len::Plain(n) => self.skip(n, what),
            Len::Encoded(0) => self.skip(1, what),
            Len::Encoded(1) => self.skip(2, what),
            Len::Encoded(2) => self.skip(4, what),
            Len::Encoded(3) => {
                let compressed = self.plain_len(what)?;
                let _plain = self.plain_len(what)?;
                self.skip(compressed, what)
            }
            Len::Encoded(e) => Err(self.corrupt(format!("{what}: unknown string encoding {e}"))),
        }
    }

    /// A string kept in memory (AUX fields), or `None` when longer than `keep`.
    fn string(&mut self, keep: u64, what: &'static str) -> Result<Option<Vec<u8>>, RdbError> {
        match self.length(what)? {
            Len::Plain(n) if n > keep => self.skip(n, what).map(|()| None),
            Len::Plain(n) => {
                let mut v = vec![0u8; n as usize];
                self.exact(&mut v, what)?;
                Ok(Some(v))
            }
            Len::Encoded(0) => {
                let mut b = [0u8; 1];
                self.exact(&mut b, what)?;
                Ok(Some(i8::from_le_bytes(b).to_string().into_bytes()))
            }
            Len::Encoded(1) => {
                let mut b = [0u8; 2];
                self.exact(&mut b, what)?;
                Ok(Some(i16::from_le_bytes(b).to_string().into_bytes()))
            }
            Len::Encoded(2) => {
                let mut b = [0u8; 4];
                self.exact(&mut b, what)?;
                Ok(Some(i32::from_le_bytes(b).to_string().into_bytes()))
            }
            Len::Encoded(3) => {
                let compressed = self.plain_len(what)?;
                let plain = self.plain_len(what)?;
                if compressed > keep || plain > keep {
                    return self.skip(compressed, what).map(|()| None);
                }
                let mut c = vec![0u8; compressed as usize];
                self.exact(&mut c, what)?;
                match lzf_decompress(&c, plain as usize) {
                    Some(v) => Ok(Some(v)),
                    None => Err(self.corrupt(format!("{what}: LZF data does not decompress"))),
                }
            }
            Len::Encoded(e) => Err(self.corrupt(format!("{what}: unknown string encoding {e}"))),
        }
    }

    /// The old text encoding of doubles in sorted sets (type 3).
    fn skip_text_double(&mut self) -> Result<(), RdbError> {
        match self.byte("sorted set score")? {
            253..=255 => Ok(()),
            n => self.skip(u64::from(n), "sorted set score"),
        }
    }

    /// A module value with its typed annotations, up to the module EOF marker.
    fn skip_module_value(&mut self) -> Result<(), RdbError> {
        loop {
            match self.plain_len("module value")? {
                0 => return Ok(()),
                1 | 2 => {
                    self.plain_len("module integer")?;
                }
                3 => self.skip(4, "module float")?,
                4 => self.skip(8, "module double")?,
                5 => self.skip_string("module string")?,
                other => {
                    return Err(self.corrupt(format!("unknown module value opcode {other}")));
                }
            }
        }
    }

    fn skip_stream(&mut self, t: u8) -> Result<(), RdbError> {
        let listpacks = self.plain_len("stream")?;
        for _ in 0..listpacks {
            self.skip_string("stream node key")?;
            self.skip_string("stream listpack")?;
        }
        // length, last id (ms, seq)
        for _ in 0..3 {
            self.plain_len("stream metadata")?;
        }
        if t >= 19 {
            // first id, max deleted id, entries added
            for _ in 0..5 {
                self.plain_len("stream metadata")?;
            }
        }
        let groups = self.plain_len("stream groups")?;
        for _ in 0..groups {
            self.skip_string("consumer group name")?;
            self.plain_len("consumer group id")?;
            self.plain_len("consumer group id")?;
            if t >= 19 {
                self.plain_len("consumer group offset")?;
            }
            let pel = self.plain_len("pending entries")?;
            for _ in 0..pel {
                self.skip(16 + 8, "pending entry")?;
                self.plain_len("pending entry")?;
            }
            let consumers = self.plain_len("consumers")?;
            for _ in 0..consumers {
                self.skip_string("consumer name")?;
                self.skip(if t >= 21 { 16 } else { 8 }, "consumer times")?;
                let pel = self.plain_len("consumer pending entries")?;
                self.skip(pel.saturating_mul(16), "consumer pending entries")?;
            }
        }
        Ok(())
    }

    fn skip_value(&mut self, t: u8) -> Result<(), RdbError> {
        match t {
            0 => self.skip_string("string value"),
            1 | 2 => {
                let n = self.plain_len("list or set")?;
                for _ in 0..n {
                    self.skip_string("list or set element")?;
                }
                Ok(())
            }
            3 => {
                let n = self.plain_len("sorted set")?;
                for _ in 0..n {
                    self.skip_string("sorted set member")?;
                    self.skip_text_double()?;
                }
                Ok(())
            }
            4 => {
                let n = self.plain_len("hash")?;
                for _ in 0..n {
                    self.skip_string("hash field")?;
                    self.skip_string("hash value")?;
                }
                Ok(())
            }
            5 => {
                let n = self.plain_len("sorted set")?;
                for _ in 0..n {
                    self.skip_string("sorted set member")?;
                    self.skip(8, "sorted set score")?;
                }
                Ok(())
            }
            6 => Err(self
                .corrupt("module value in the pre-release format of Redis 4.0 release candidates")),
            7 => {
                self.plain_len("module id")?;
                self.skip_module_value()
            }
            9..=13 | 16 | 17 | 20 | 23 => self.skip_string("encoded value"),
            14 => {
                let n = self.plain_len("quicklist")?;
                for _ in 0..n {
                    self.skip_string("quicklist node")?;
                }
                Ok(())
            }
            15 | 19 | 21 => self.skip_stream(t),
            18 => {
                let n = self.plain_len("quicklist")?;
                for _ in 0..n {
                    match self.plain_len("quicklist container")? {
                        1 | 2 => {}
                        c => return Err(self.corrupt(format!("unknown quicklist container {c}"))),
                    }
                    self.skip_string("quicklist node")?;
                }
                Ok(())
            }
            22 | 24 => {
                if t == 24 {
                    self.skip(8, "hash minimum expiry")?;
                }
                let n = self.plain_len("hash")?;
                for _ in 0..n {
                    self.plain_len("hash field expiry")?;
                    self.skip_string("hash field")?;
                    self.skip_string("hash value")?;
                }
                Ok(())
            }
            25 => {
                self.skip(8, "hash minimum expiry")?;
                self.skip_string("hash listpack")
            }
            other => Err(self.corrupt(format!(
                "unknown value type {other} (written by a newer Redis than lifeboat reads?)"
            ))),
        }
    }

    /// Walk from after the magic to the EOF opcode.
    fn body(&mut self, s: &mut RdbSummary) -> Result<(), RdbError> {
        let mut db: u64 = 0;
        let mut expiry = false;
        loop {
            let op = self.byte("an opcode")?;
            match op {
                OP_EOF => return Ok(()),
                OP_SELECTDB => {
                    db = self.plain_len("SELECTDB")?;
                    // The restore loads the file in a server started with one more
                    // database than the highest number here: an absurd number would
                    // make that server allocate millions of databases.
                    if db >= MAX_DATABASES {
                        return Err(self.corrupt(format!(
                            "SELECTDB {db}: database numbers end below {MAX_DATABASES}"
                        )));
                    }
                    s.dbs.entry(db).or_default();
                }
                OP_RESIZEDB => {
                    let keys = self.plain_len("RESIZEDB")?;
                    let expires = self.plain_len("RESIZEDB")?;
                    s.dbs.entry(db).or_default().announced = Some((keys, expires));
                }
                OP_EXPIRETIME_MS => {
                    self.skip(8, "an expiry")?;
                    expiry = true;
                }
                OP_EXPIRETIME => {
                    self.skip(4, "an expiry")?;
                    expiry = true;
                }
                OP_IDLE => {
                    self.plain_len("IDLE")?;
                }
                OP_FREQ => self.skip(1, "FREQ")?,
                OP_AUX => {
                    let k = self.string(AUX_KEEP, "an AUX field")?;
                    let v = self.string(AUX_KEEP, "an AUX field")?;
                    if let (Some(k), Some(v)) = (k, v) {
                        s.aux.insert(
                            String::from_utf8_lossy(&k).into_owned(),
                            String::from_utf8_lossy(&v).into_owned(),
                        );
                    }
                }
                OP_MODULE_AUX => {
                    self.plain_len("module aux")?;
                    if self.plain_len("module aux")? != 2 {
                        return Err(self.corrupt("module aux without its `when` field"));
                    }
                    self.plain_len("module aux")?;
                    self.skip_module_value()?;
                    s.module_aux += 1;
                }
                OP_FUNCTION2 => {
                    self.skip_string("a function library")?;
                    s.functions += 1;
                }
                OP_FUNCTION_PRE_GA => {
                    return Err(self.corrupt(
                        "functions in the pre-release format of Redis 7.0 release candidates",
                    ));
                }
                OP_SLOT_INFO => {
                    for _ in 0..3 {
                        self.plain_len("SLOT_INFO")?;
                    }
                }
                t if t < OP_SLOT_INFO => {
                    self.skip_string("a key")?;
                    self.skip_value(t)?;
                    let c = s.dbs.entry(db).or_default();
                    c.keys += 1;
                    if expiry {
                        c.expires += 1;
                    }
                    expiry = false;
                }
                other => {
                    return Err(self.corrupt(format!(
                        "unknown opcode {other:#04x} (written by a newer Redis than lifeboat reads?)"
                    )));
                }
            }
        }
    }
}

/// Read an RDB stream to its end: magic and version, every record, the checksum
/// trailer, nothing after it. Counts are cross-checked with the file's RESIZEDB
/// entries.
pub fn inspect<R: Read>(reader: R) -> Result<RdbSummary, RdbError> {
    let mut w = Walker {
        r: BufReader::with_capacity(256 << 10, CrcReader::new(reader)),
        pos: 0,
        scratch: Vec::new(),
    };
    let mut magic = [0u8; 9];
    match w.exact(&mut magic, "the header") {
        Err(RdbError::Truncated(..)) => return Err(RdbError::NotRdb),
        r => r?,
    }
    if &magic[..5] != b"REDIS" || !magic[5..].iter().all(u8::is_ascii_digit) {
        return Err(RdbError::NotRdb);
    }
    let version: u32 = std::str::from_utf8(&magic[5..])
        .expect("ASCII digits")
        .parse()
        .expect("four digits");
    if version == 0 || version > MAX_VERSION {
        return Err(RdbError::Version(version));
    }
    let mut s = RdbSummary {
        version,
        aux: BTreeMap::new(),
        dbs: BTreeMap::new(),
        checksum: Checksum::Absent,
        size: 0,
        functions: 0,
        module_aux: 0,
    };
    if let Err(walk) = w.body(&mut s) {
        // A damaged byte usually derails the walk before the trailer is reached;
        // the checksum over the whole file names the real cause when it can.
        if version >= 5
            && matches!(walk, RdbError::Corrupt { .. })
            && io::copy(&mut w.r, &mut io::sink()).is_ok()
        {
            let inner = w.r.get_ref();
            if inner.held_len == 8 {
                let stored = u64::from_le_bytes(inner.held);
                let computed = inner.crc_before_trailer();
                if stored != 0 && stored != computed {
                    return Err(RdbError::Checksum { stored, computed });
                }
            }
        }
        return Err(walk);
    }
    if version >= 5 {
        let mut trailer = [0u8; 8];
        w.exact(&mut trailer, "the checksum")?;
    }
    let end = w.pos;
    let extra = io::copy(&mut w.r, &mut io::sink())?;
    if extra > 0 {
        return Err(RdbError::Trailing(extra));
    }
    s.size = end;
    if version >= 5 {
        let inner = w.r.get_ref();
        let stored = u64::from_le_bytes(inner.held);
        let computed = inner.crc_before_trailer();
        s.checksum = if stored == 0 {
            Checksum::Disabled
        } else if stored == computed {
            Checksum::Verified(stored)
        } else {
            return Err(RdbError::Checksum { stored, computed });
        };
    }
    for (db, c) in &s.dbs {
        if let Some((keys, expires)) = c.announced
            && (keys, expires) != (c.keys, c.expires)
        {
            return Err(RdbError::Resize {
                db: *db,
                announced_keys: keys,
                announced_expires: expires,
                keys: c.keys,
                expires: c.expires,
            });
        }
    }
    Ok(s)
}

/// LZF, as Redis compresses long strings; `None` when the data is inconsistent.
fn lzf_decompress(input: &[u8], len: usize) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(len);
    let mut i = 0;
    while i < input.len() {
        let ctrl = input[i] as usize;
        i += 1;
        if ctrl < 32 {
            let run = ctrl + 1;
            out.extend_from_slice(input.get(i..i + run)?);
            i += run;
        } else {
            let mut run = ctrl >> 5;
            if run == 7 {
                run += *input.get(i)? as usize;
                i += 1;
            }
            let back = ((ctrl & 0x1f) << 8) + *input.get(i)? as usize + 1;
            i += 1;
            let start = out.len().checked_sub(back)?;
            // Overlapping copies repeat the bytes just written, byte by byte.
            for k in 0..run + 2 {
                let b = out[start + k];
                out.push(b);
            }
        }
    }
    (out.len() == len).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rstest::rstest;

    /// CRC-64/Jones bit by bit, to check the table-driven one.
    fn crc_bitwise(data: &[u8]) -> u64 {
        let mut crc = 0u64;
        for &b in data {
            crc ^= u64::from(b);
            for _ in 0..8 {
                crc = if crc & 1 == 1 {
                    (crc >> 1) ^ POLY_REFLECTED
                } else {
                    crc >> 1
                };
            }
        }
        crc
    }

    fn crc(data: &[u8]) -> u64 {
        let mut c = Crc64::new();
        c.update(data);
        c.value()
    }

    #[rstest]
    #[case(b"", 0)]
    #[case(b"123456789", 0xe9c6_d914_c4b8_d9ca)]
    fn crc64_jones_matches_known_vectors(#[case] data: &[u8], #[case] want: u64) {
        assert_eq!(crc(data), want);
        assert_eq!(crc_bitwise(data), want);
    }

    #[test]
    fn crc64_is_the_same_however_the_input_is_split() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 31 + 7) as u8).collect();
        let whole = crc(&data);
        assert_eq!(whole, crc_bitwise(&data));
        for split in [1, 3, 7, 8, 9, 500, 999] {
            let mut c = Crc64::new();
            c.update(&data[..split]);
            c.update(&data[split..]);
            assert_eq!(c.value(), whole, "split at {split}");
        }
    }

    /// A small RDB in the layout Redis 7.0 writes.
    pub(crate) fn handmade(checksum: bool) -> Vec<u8> {
        let mut b = b"REDIS0010".to_vec();
        let aux = |b: &mut Vec<u8>, k: &str, v: &[u8]| {
            b.push(OP_AUX);
            b.push(k.len() as u8);
            b.extend_from_slice(k.as_bytes());
            b.extend_from_slice(v);
        };
        aux(&mut b, "redis-ver", b"\x067.0.15");
        aux(&mut b, "redis-bits", &[0xc0, 64]);
        // db0: two strings, one with an expiry, and a list of two plain nodes.
        b.extend_from_slice(&[OP_SELECTDB, 0, OP_RESIZEDB, 3, 1]);
        b.extend_from_slice(&[0, 1, b'a', 1, b'1']);
        b.push(OP_EXPIRETIME_MS);
        b.extend_from_slice(&1_900_000_000_000u64.to_le_bytes());
        b.extend_from_slice(&[0, 1, b'b', 0xc0, 42]);
        b.extend_from_slice(&[18, 1, b'l', 2, 1, 2, b'x', b'y', 1, 1, b'z']);
        // db3: a sorted set with binary scores.
        b.extend_from_slice(&[OP_SELECTDB, 3, OP_RESIZEDB, 1, 0]);
        b.extend_from_slice(&[5, 1, b'z', 1, 1, b'm']);
        b.extend_from_slice(&1.5f64.to_le_bytes());
        b.push(OP_EOF);
        let sum = if checksum { crc(&b) } else { 0 };
        b.extend_from_slice(&sum.to_le_bytes());
        b
    }

    #[test]
    fn a_handmade_rdb_is_counted_per_database() {
        let s = inspect(&handmade(true)[..]).unwrap();
        assert_eq!(s.version, 10);
        assert_eq!(s.redis_version(), Some("7.0.15"));
        assert_eq!(s.aux.get("redis-bits").map(String::as_str), Some("64"));
        assert!(matches!(s.checksum, Checksum::Verified(_)));
        let counts = s.counts();
        assert_eq!(counts.get("keys.db0"), Some(&3));
        assert_eq!(counts.get("expires.db0"), Some(&1));
        assert_eq!(counts.get("keys.db3"), Some(&1));
        assert_eq!(counts.get("expires.db3"), Some(&0));
        assert_eq!(counts.len(), 4);
        assert_eq!(s.max_db(), Some(3));
        assert_eq!(s.size, handmade(true).len() as u64);
    }

    /// Hands out at most three bytes per read, as a pipe may.
    struct Dribble<'a>(&'a [u8]);

    impl Read for Dribble<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(3).min(self.0.len());
            buf[..n].copy_from_slice(&self.0[..n]);
            self.0 = &self.0[n..];
            Ok(n)
        }
    }

    #[test]
    fn the_checksum_holds_whatever_size_the_reads_are() {
        let good = handmade(true);
        assert_eq!(
            inspect(Dribble(&good)).unwrap(),
            inspect(&good[..]).unwrap()
        );
        let mut bad = good.clone();
        let at = bad.windows(2).position(|w| w == b"xy").unwrap();
        bad[at + 1] ^= 0x80;
        assert!(matches!(
            inspect(Dribble(&bad)),
            Err(RdbError::Checksum { .. })
        ));
    }

    #[test]
    fn every_single_flipped_byte_is_rejected() {
        let good = handmade(true);
        for i in 0..good.len() {
            let mut bad = good.clone();
            bad[i] ^= 0x01;
            assert!(inspect(&bad[..]).is_err(), "byte {i} flipped was accepted");
        }
    }

    #[test]
    fn a_flipped_byte_in_a_value_is_a_checksum_mismatch() {
        let mut bad = handmade(true);
        let at = bad.windows(2).position(|w| w == b"xy").unwrap();
        bad[at] ^= 0x01;
        assert!(matches!(inspect(&bad[..]), Err(RdbError::Checksum { .. })));
    }

    #[test]
    fn every_truncation_is_rejected() {
        let good = handmade(true);
        for len in 0..good.len() {
            assert!(
                inspect(&good[..len]).is_err(),
                "truncated to {len} bytes was accepted"
            );
        }
    }

    #[test]
    fn bytes_after_the_checksum_are_rejected() {
        let mut b = handmade(true);
        b.extend_from_slice(b"0123456789012345678901234567890123456789");
        assert!(matches!(inspect(&b[..]), Err(RdbError::Trailing(40))));
    }

    #[test]
    fn a_zero_checksum_means_checksumming_was_off() {
        let s = inspect(&handmade(false)[..]).unwrap();
        assert_eq!(s.checksum, Checksum::Disabled);
    }

    #[rstest]
    #[case(b"REDIT0010".to_vec())]
    #[case(b"REDIS00x0".to_vec())]
    #[case(b"RED".to_vec())]
    #[case(Vec::new())]
    fn a_file_without_the_magic_is_not_an_rdb(#[case] bytes: Vec<u8>) {
        assert!(matches!(inspect(&bytes[..]), Err(RdbError::NotRdb)));
    }

    #[test]
    fn a_newer_version_is_refused_by_number() {
        let mut b = handmade(true);
        b[5..9].copy_from_slice(b"0099");
        assert!(matches!(inspect(&b[..]), Err(RdbError::Version(99))));
    }

    #[test]
    fn a_resizedb_that_disagrees_with_the_keys_is_rejected() {
        let mut b = handmade(true);
        // db0 announces 3 keys; say 4, and fix the checksum so only the count is wrong.
        let at = b.windows(3).position(|w| w == [OP_RESIZEDB, 3, 1]).unwrap();
        b[at + 1] = 4;
        let n = b.len();
        let sum = crc(&b[..n - 8]);
        b[n - 8..].copy_from_slice(&sum.to_le_bytes());
        assert!(matches!(
            inspect(&b[..]),
            Err(RdbError::Resize { db: 0, .. })
        ));
    }

    #[test]
    fn lzf_round_trips_a_back_reference() {
        // "abcabcabc": literal "abc", then a back reference of length 6 at distance 3.
        let input = [2, b'a', b'b', b'c', (4 << 5), 2];
        assert_eq!(lzf_decompress(&input, 9).unwrap(), b"abcabcabc");
        assert!(lzf_decompress(&input, 8).is_none());
        assert!(lzf_decompress(&[0x20, 5], 2).is_none());
    }

    #[test]
    fn an_absurd_database_number_is_corrupt_not_a_huge_server() {
        let mut b = b"REDIS0010".to_vec();
        // SELECTDB with a 64-bit length (0x81) of u64::MAX.
        b.extend_from_slice(&[OP_SELECTDB, 0x81]);
        b.extend_from_slice(&u64::MAX.to_be_bytes());
        b.push(OP_EOF);
        // A zero checksum: checksumming was off, so the walk's error is the answer.
        b.extend_from_slice(&[0; 8]);
        let e = inspect(&b[..]).unwrap_err().to_string();
        assert!(e.contains("database numbers end below 65536"), "{e}");
    }
}
