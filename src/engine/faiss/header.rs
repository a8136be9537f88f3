//! FAISS index headers, read natively from the first bytes of a file: the type code, the
//! dimension and the vector count, without linking FAISS.
//!
//! Every index file starts with a four-character type code (fourcc). Most index classes
//! write the same header right after it, in one of two layouts (little-endian):
//!
//! ```text
//! float index (faiss.write_index):
//!   0 fourcc[4]   4 d:i32   8 ntotal:i64   16 unused:i64   24 unused:i64
//!  32 is_trained:u8   33 metric_type:i32   37 metric_arg:f32 (only when metric_type > 1)
//! binary index (faiss.write_index_binary):
//!   0 fourcc[4]   4 d:i32 (bits)   8 code_size:i32 (bytes)   12 ntotal:i64
//!  20 is_trained:u8   21 metric_type:i32   (25 bytes)
//! ```
//!
//! Flat indexes are checked further, because their whole size follows from the header:
//! a float flat index is the header, a u64 count of floats (`ntotal * d`), then the
//! floats; a binary flat index is the header, a u64 count of bytes
//! (`ntotal * code_size`), then the codes. A flat file of any other size is truncated
//! or overwritten. Other index kinds hold nested structures that are not parsed here;
//! their header is checked, not their body (the backup's per-file SHA-256 covers the
//! bytes).
//!
//! Verified against files written by faiss-cpu 1.15.1 (read back with
//! `faiss.read_index` / `faiss.read_index_binary`, whose `d` and `ntotal` equal the
//! header's) for every code marked `Files` in [`FORMATS`]; the codes marked `Source`
//! (legacy or rarely built classes) follow faiss's own reader, which reads the same header
//! after them. Some classes write a different layout (IndexLattice writes its lattice
//! parameters first, the flat Panorama indexes their level layout, the SVS indexes no
//! common header at all): they are known and refused, never mistaken for sidecars.
//! A file whose first four bytes are no known code is a sidecar (id map, metadata).

use thiserror::Error;

/// How the header after a type code is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// `d` at 4, `ntotal` at 8 (float indexes).
    Float,
    /// `d` at 4, `code_size` at 8, `ntotal` at 12 (binary indexes).
    Binary,
    /// A FAISS index whose header is laid out otherwise: not counted, refused.
    Other,
}

/// How a layout was confirmed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verified {
    /// Files written by faiss-cpu 1.15.1 were read back and agreed.
    Files,
    /// faiss's reader reads this header after the code; no file was produced here.
    Source,
}

/// One known type code: its bytes, the header layout, the FAISS class and how the layout
/// was confirmed.
pub type Format = (&'static [u8; 4], Layout, &'static str, Verified);

use Layout::{Binary, Float, Other};
use Verified::{Files, Source};

/// Every type code a top-level FAISS index file may start with.
pub const FORMATS: &[Format] = &[
    (b"IxF2", Float, "IndexFlatL2", Files),
    (b"IxFI", Float, "IndexFlatIP", Files),
    (b"IxFl", Float, "IndexFlat", Files),
    (b"IwFl", Float, "IndexIVFFlat", Files),
    (b"IwFd", Float, "IndexIVFFlatDedup", Files),
    (b"IwP2", Float, "IndexIVFFlatPanorama", Files),
    (b"IHNf", Float, "IndexHNSWFlat", Files),
    (b"IHNp", Float, "IndexHNSWPQ", Files),
    (b"IHNs", Float, "IndexHNSWSQ", Files),
    (b"IHc2", Float, "IndexHNSWCagra", Files),
    (b"IHfP", Float, "IndexHNSWFlatPanorama", Files),
    (b"IxPq", Float, "IndexPQ", Files),
    (b"IxSQ", Float, "IndexScalarQuantizer", Files),
    (b"IwSq", Float, "IndexIVFScalarQuantizer", Files),
    (b"IwPQ", Float, "IndexIVFPQ", Files),
    (b"IwQR", Float, "IndexIVFPQR", Files),
    (b"IwPf", Float, "IndexIVFPQFastScan", Files),
    (b"IPfs", Float, "IndexPQFastScan", Files),
    (b"IxHe", Float, "IndexLSH", Files),
    (b"IxPT", Float, "IndexPreTransform", Files),
    (b"IxMp", Float, "IndexIDMap", Files),
    (b"IxM2", Float, "IndexIDMap2", Files),
    (b"IxRF", Float, "IndexRefine", Files),
    (b"IxRq", Float, "IndexResidualQuantizer", Files),
    (b"IxLS", Float, "IndexLocalSearchQuantizer", Files),
    (b"IxPR", Float, "IndexProductResidualQuantizer", Files),
    (b"IxPL", Float, "IndexProductLocalSearchQuantizer", Files),
    (b"INSf", Float, "IndexNSGFlat", Files),
    (b"INSp", Float, "IndexNSGPQ", Files),
    (b"INSs", Float, "IndexNSGSQ", Files),
    (b"INNf", Float, "IndexNNDescentFlat", Files),
    (b"Ixrq", Float, "IndexRaBitQ", Files),
    (b"Ixrr", Float, "IndexRaBitQ (multi-bit)", Files),
    (b"Irfn", Float, "IndexRaBitQFastScan", Files),
    (b"Iwrq", Float, "IndexIVFRaBitQ", Files),
    (b"Iwrr", Float, "IndexIVFRaBitQ (multi-bit)", Files),
    (b"Iwrn", Float, "IndexIVFRaBitQFastScan", Files),
    (b"IwRQ", Float, "IndexIVFResidualQuantizer", Files),
    (b"IwLS", Float, "IndexIVFLocalSearchQuantizer", Files),
    (b"IwSh", Float, "IndexIVFSpectralHash", Files),
    (b"IwIQ", Float, "IndexIVFIndependentQuantizer", Files),
    (b"Ix2L", Float, "Index2Layer", Files),
    (b"Imiq", Float, "MultiIndexQuantizer", Files),
    (b"ImRQ", Float, "ResidualCoarseQuantizer", Files),
    (b"ILfs", Float, "IndexLocalSearchQuantizerFastScan", Files),
    (b"IRfs", Float, "IndexResidualQuantizerFastScan", Files),
    (
        b"IPRf",
        Float,
        "IndexProductResidualQuantizerFastScan",
        Files,
    ),
    (
        b"IPLf",
        Float,
        "IndexProductLocalSearchQuantizerFastScan",
        Files,
    ),
    (
        b"IVLf",
        Float,
        "IndexIVFLocalSearchQuantizerFastScan",
        Files,
    ),
    (b"IVRf", Float, "IndexIVFResidualQuantizerFastScan", Files),
    (b"IxEe", Float, "IndexEDEN", Files),
    (b"IwEe", Float, "IndexIVFEDEN", Files),
    (
        b"IwPL",
        Float,
        "IndexIVFProductLocalSearchQuantizer",
        Source,
    ),
    (b"IwPR", Float, "IndexIVFProductResidualQuantizer", Source),
    (
        b"NPLf",
        Float,
        "IndexIVFProductLocalSearchQuantizerFastScan",
        Source,
    ),
    (
        b"NPRf",
        Float,
        "IndexIVFProductResidualQuantizerFastScan",
        Source,
    ),
    (b"IRMf", Float, "IndexRowwiseMinMax", Source),
    (b"IRMh", Float, "IndexRowwiseMinMaxFP16", Source),
    (b"IHN2", Float, "IndexHNSW2Level", Source),
    (b"IHNc", Float, "IndexHNSWCagra (older files)", Source),
    (b"IxHE", Float, "IndexLSH (older files)", Source),
    (b"IxPQ", Float, "IndexPQ (older files)", Source),
    (b"IxPo", Float, "IndexPQ (older files)", Source),
    (
        b"IxRQ",
        Float,
        "IndexResidualQuantizer (older files)",
        Source,
    ),
    (b"IvFl", Float, "IndexIVFFlat (older files)", Source),
    (b"IvFL", Float, "IndexIVFFlat (older files)", Source),
    (b"IvPQ", Float, "IndexIVFPQ (older files)", Source),
    (b"IvQR", Float, "IndexIVFPQR (older files)", Source),
    (
        b"IvSQ",
        Float,
        "IndexIVFScalarQuantizer (older files)",
        Source,
    ),
    (
        b"IwSQ",
        Float,
        "IndexIVFScalarQuantizer (older files)",
        Source,
    ),
    (b"IBxF", Binary, "IndexBinaryFlat", Files),
    (b"IBwF", Binary, "IndexBinaryIVF", Files),
    (b"IBHf", Binary, "IndexBinaryHNSW", Files),
    (b"IBHc", Binary, "IndexBinaryHNSWCagra", Files),
    (b"IBMp", Binary, "IndexBinaryIDMap", Files),
    (b"IBM2", Binary, "IndexBinaryIDMap2", Files),
    (b"IBFf", Binary, "IndexBinaryFromFloat", Files),
    (b"IBHh", Binary, "IndexBinaryHash", Files),
    (b"IBHm", Binary, "IndexBinaryMultiHash", Files),
    (b"IxLa", Other, "IndexLattice", Files),
    (b"IxFP", Other, "IndexFlatL2Panorama", Files),
    (b"IxFp", Other, "IndexFlatIPPanorama", Files),
    (b"ISVD", Other, "IndexSVS", Source),
    (b"IS44", Other, "IndexSVSLVQ4x4", Source),
    (b"IS48", Other, "IndexSVSLVQ4x8", Source),
];

/// Bytes of a file's start that [`parse`] may look at: enough for the longest header
/// plus the flat indexes' vector length.
pub const PREFIX: usize = 64;

/// A float header: fourcc, d, ntotal, two unused i64, is_trained, metric_type.
const FLOAT_HEADER: usize = 37;
/// A binary header: fourcc, d, code_size, ntotal, is_trained, metric_type.
const BINARY_HEADER: usize = 25;

/// The header of one index file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The type code, e.g. `IxF2`.
    pub fourcc: String,
    /// The FAISS class it names.
    pub class: &'static str,
    /// Float or binary.
    pub layout: Layout,
    /// Dimension (bits for binary indexes).
    pub d: u64,
    /// Number of vectors.
    pub ntotal: u64,
}

/// What a file is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A FAISS index with a readable header.
    Index(Header),
    /// Anything else: an id map, metadata, a config file.
    Sidecar,
}

/// Why an index header was refused. The caller adds the file's path.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum HeaderError {
    /// The file ends inside its header.
    #[error(
        "{fourcc} ({class}) index is truncated: its header needs {needed} bytes, the file has {len}"
    )]
    Truncated {
        /// Type code.
        fourcc: String,
        /// Class.
        class: &'static str,
        /// Bytes the header needs.
        needed: u64,
        /// Bytes the file has.
        len: u64,
    },
    /// A header value no FAISS index can have.
    #[error("{fourcc} ({class}) index header is damaged: {field} = {value}")]
    Impossible {
        /// Type code.
        fourcc: String,
        /// Class.
        class: &'static str,
        /// Field name.
        field: &'static str,
        /// Its value.
        value: i64,
    },
    /// A flat index whose size does not follow from its header.
    #[error(
        "{fourcc} ({class}) index is truncated or damaged: {ntotal} vectors of dimension {d} make a file of {expected} bytes, this one has {len}"
    )]
    FlatSize {
        /// Type code.
        fourcc: String,
        /// Class.
        class: &'static str,
        /// Header dimension.
        d: u64,
        /// Header vector count.
        ntotal: u64,
        /// Size the header implies.
        expected: u64,
        /// Actual size.
        len: u64,
    },
    /// A FAISS index laid out in a way this reader does not count.
    #[error(
        "{fourcc} ({class}) index stores its header in a layout lifeboat cannot count; back this file up with a `kind = \"file\"` source"
    )]
    Unsupported {
        /// Type code.
        fourcc: String,
        /// Class.
        class: &'static str,
    },
}

/// The format of a type code, when it is one.
pub fn format_of(fourcc: &[u8]) -> Option<&'static Format> {
    FORMATS.iter().find(|f| f.0.as_slice() == fourcc)
}

fn i32_at(b: &[u8], at: usize) -> i32 {
    i32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn i64_at(b: &[u8], at: usize) -> i64 {
    i64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}

/// Classify a file from its first bytes (`prefix`, at most [`PREFIX`] are looked at)
/// and its whole length `len`.
pub fn parse(prefix: &[u8], len: u64) -> Result<Kind, HeaderError> {
    let Some(&(code, layout, class, _)) = prefix.get(..4).and_then(format_of) else {
        return Ok(Kind::Sidecar);
    };
    let fourcc = String::from_utf8_lossy(code).into_owned();
    let truncated = |needed: usize| HeaderError::Truncated {
        fourcc: fourcc.clone(),
        class,
        needed: needed as u64,
        len,
    };
    let impossible = |field, value| HeaderError::Impossible {
        fourcc: fourcc.clone(),
        class,
        field,
        value,
    };
    let (d, ntotal, header_len) = match layout {
        Other => {
            return Err(HeaderError::Unsupported {
                fourcc: fourcc.clone(),
                class,
            });
        }
        Float => {
            if prefix.len() < FLOAT_HEADER {
                return Err(truncated(FLOAT_HEADER));
            }
            // A metric with a parameter (Lp) stores it after the metric type.
            let metric = i32_at(prefix, 33);
            let header_len = FLOAT_HEADER + if metric > 1 { 4 } else { 0 };
            if prefix.len() < header_len {
                return Err(truncated(header_len));
            }
            (i32_at(prefix, 4), i64_at(prefix, 8), header_len)
        }
        Binary => {
            if prefix.len() < BINARY_HEADER {
                return Err(truncated(BINARY_HEADER));
            }
            let code_size = i32_at(prefix, 8);
            if code_size <= 0 {
                return Err(impossible("code_size", i64::from(code_size)));
            }
            (i32_at(prefix, 4), i64_at(prefix, 12), BINARY_HEADER)
        }
    };
    if d <= 0 {
        return Err(impossible("d", i64::from(d)));
    }
    if ntotal < 0 {
        return Err(impossible("ntotal", ntotal));
    }
    let (d, ntotal) = (d as u64, ntotal as u64);

    // A flat index is header, element count, elements: its size is known exactly.
    let flat_elements = match code {
        b"IxF2" | b"IxFI" | b"IxFl" => Some((ntotal.checked_mul(d), 4u64)),
        b"IBxF" => Some((ntotal.checked_mul(i32_at(prefix, 8) as u64), 1u64)),
        _ => None,
    };
    if let Some((elements, width)) = flat_elements {
        let expected = elements
            .and_then(|n| n.checked_mul(width))
            .and_then(|n| n.checked_add(header_len as u64 + 8));
        let count_ok = prefix
            .get(header_len..header_len + 8)
            .is_some_and(|b| Some(u64_at(b, 0)) == elements);
        if expected != Some(len) || !count_ok {
            return Err(HeaderError::FlatSize {
                fourcc,
                class,
                d,
                ntotal,
                expected: expected.unwrap_or(u64::MAX),
                len,
            });
        }
    }
    Ok(Kind::Index(Header {
        fourcc,
        class,
        layout,
        d,
        ntotal,
    }))
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use rstest::rstest;

    /// A float header as faiss writes it.
    pub(crate) fn float_header(fourcc: &[u8; 4], d: i32, ntotal: i64, metric: i32) -> Vec<u8> {
        let mut b = fourcc.to_vec();
        b.extend(d.to_le_bytes());
        b.extend(ntotal.to_le_bytes());
        b.extend((1i64 << 20).to_le_bytes());
        b.extend((1i64 << 20).to_le_bytes());
        b.push(1);
        b.extend(metric.to_le_bytes());
        if metric > 1 {
            b.extend(3.0f32.to_le_bytes());
        }
        b
    }

    /// A whole flat L2 index of `ntotal` zero vectors.
    pub(crate) fn flat_l2(d: i32, ntotal: i64) -> Vec<u8> {
        let mut b = float_header(b"IxF2", d, ntotal, 1);
        let n = (d as u64) * (ntotal as u64);
        b.extend(n.to_le_bytes());
        b.extend(vec![0u8; n as usize * 4]);
        b
    }

    fn binary_header(fourcc: &[u8; 4], d: i32, ntotal: i64) -> Vec<u8> {
        let mut b = fourcc.to_vec();
        b.extend(d.to_le_bytes());
        b.extend((d / 8).to_le_bytes());
        b.extend(ntotal.to_le_bytes());
        b.push(1);
        b.extend(1i32.to_le_bytes());
        b
    }

    fn binary_flat(d: i32, ntotal: i64) -> Vec<u8> {
        let mut b = binary_header(b"IBxF", d, ntotal);
        let n = (d as u64 / 8) * ntotal as u64;
        b.extend(n.to_le_bytes());
        b.extend(vec![0u8; n as usize]);
        b
    }

    fn parse_all(b: &[u8]) -> Result<Kind, HeaderError> {
        parse(&b[..b.len().min(PREFIX)], b.len() as u64)
    }

    fn index(b: &[u8]) -> Header {
        match parse_all(b) {
            Ok(Kind::Index(h)) => h,
            other => panic!("expected an index, got {other:?}"),
        }
    }

    #[rstest]
    #[case::ivf_flat(b"IwFl", "IndexIVFFlat")]
    #[case::hnsw_flat(b"IHNf", "IndexHNSWFlat")]
    #[case::id_map(b"IxMp", "IndexIDMap")]
    #[case::legacy_ivf(b"IvFL", "IndexIVFFlat (older files)")]
    fn float_headers_give_d_and_ntotal(#[case] code: &[u8; 4], #[case] class: &str) {
        // Body bytes after the header are not parsed for these kinds.
        let mut b = float_header(code, 96, 123_456, 1);
        b.extend([7u8; 100]);
        let h = index(&b);
        assert_eq!(
            (h.fourcc.as_bytes(), h.class, h.layout, h.d, h.ntotal),
            (code.as_slice(), class, Layout::Float, 96, 123_456)
        );
    }

    #[rstest]
    #[case::ivf(b"IBwF")]
    #[case::hnsw(b"IBHf")]
    #[case::hash(b"IBHh")]
    fn binary_headers_read_ntotal_after_the_code_size(#[case] code: &[u8; 4]) {
        let mut b = binary_header(code, 256, 5_000_000_000);
        b.extend([0xffu8; 40]);
        let h = index(&b);
        assert_eq!(
            (h.layout, h.d, h.ntotal),
            (Layout::Binary, 256, 5_000_000_000)
        );
    }

    #[test]
    fn flat_indexes_are_checked_against_their_size() {
        assert_eq!(index(&flat_l2(8, 3)).ntotal, 3);
        assert_eq!(index(&flat_l2(8, 0)).ntotal, 0);
        assert_eq!(index(&binary_flat(64, 10)).ntotal, 10);
        // A metric with a parameter moves the vectors four bytes further.
        let mut lp = float_header(b"IxFl", 2, 1, 4);
        lp.extend(2u64.to_le_bytes());
        lp.extend([0u8; 8]);
        assert_eq!(index(&lp).d, 2);

        let mut short = flat_l2(8, 3);
        short.truncate(short.len() - 1);
        let err = parse_all(&short).unwrap_err();
        assert_eq!(
            err.to_string(),
            "IxF2 (IndexFlatL2) index is truncated or damaged: 3 vectors of dimension 8 make a file of 141 bytes, this one has 140"
        );
        let mut long = binary_flat(64, 10);
        long.push(0);
        assert!(matches!(
            parse_all(&long),
            Err(HeaderError::FlatSize { .. })
        ));
    }

    #[rstest]
    #[case::only_the_code(4)]
    #[case::inside_d(6)]
    #[case::inside_ntotal(12)]
    #[case::before_the_metric(33)]
    fn a_truncated_header_is_refused_with_what_it_needs(#[case] keep: usize) {
        let b = float_header(b"IHNf", 16, 10, 1);
        let err = parse_all(&b[..keep]).unwrap_err();
        assert_eq!(
            err,
            HeaderError::Truncated {
                fourcc: "IHNf".into(),
                class: "IndexHNSWFlat",
                needed: 37,
                len: keep as u64
            }
        );
        assert!(err.to_string().contains("truncated"), "{err}");
    }

    #[test]
    fn a_truncated_metric_argument_and_binary_header_are_refused() {
        let lp = float_header(b"IwFl", 4, 1, 4);
        assert!(matches!(
            parse_all(&lp[..38]),
            Err(HeaderError::Truncated { needed: 41, .. })
        ));
        let b = binary_header(b"IBwF", 64, 1);
        assert!(matches!(
            parse_all(&b[..20]),
            Err(HeaderError::Truncated { needed: 25, .. })
        ));
    }

    #[rstest]
    #[case::zero_d(0, 5, "d", 0)]
    #[case::negative_d(-3, 5, "d", -3)]
    #[case::negative_ntotal(16, -1, "ntotal", -1)]
    fn impossible_values_are_refused(
        #[case] d: i32,
        #[case] ntotal: i64,
        #[case] field: &str,
        #[case] value: i64,
    ) {
        let mut b = float_header(b"IwFl", d, ntotal, 1);
        b.extend([0u8; 16]);
        match parse_all(&b) {
            Err(HeaderError::Impossible {
                field: f, value: v, ..
            }) => assert_eq!((f, v), (field, value)),
            other => panic!("{other:?}"),
        }
        let mut bin = binary_header(b"IBwF", 64, 1);
        bin[8..12].copy_from_slice(&0i32.to_le_bytes());
        assert!(matches!(
            parse_all(&bin),
            Err(HeaderError::Impossible {
                field: "code_size",
                ..
            })
        ));
    }

    #[rstest]
    #[case::json(b"{\"ids\": [1, 2, 3]}".as_slice())]
    #[case::numpy(b"\x93NUMPY\x01\x00".as_slice())]
    #[case::empty(b"".as_slice())]
    #[case::short(b"IxF".as_slice())]
    #[case::near_miss(b"IxF3 and more text".as_slice())]
    fn anything_without_a_known_code_is_a_sidecar(#[case] b: &[u8]) {
        assert_eq!(parse_all(b), Ok(Kind::Sidecar));
    }

    #[test]
    fn known_indexes_in_other_layouts_are_refused_not_taken_for_sidecars() {
        let mut b = b"IxLa".to_vec();
        b.extend([0u8; 60]);
        let err = parse_all(&b).unwrap_err();
        assert!(matches!(err, HeaderError::Unsupported { .. }));
        assert!(err.to_string().contains("kind = \"file\""), "{err}");
    }

    #[test]
    fn type_codes_are_unique() {
        let mut codes: Vec<_> = FORMATS.iter().map(|f| f.0).collect();
        codes.sort();
        codes.dedup();
        assert_eq!(codes.len(), FORMATS.len());
    }
}
