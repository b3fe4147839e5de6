//! `Content-Encoding` in and out: bodies are decoded to normalize them, with a hard size bound, and
//! re-encoded with gzip for clients that accept it.

use std::borrow::Cow;
use std::io::{self, Read};

use bytes::Bytes;
use flate2::read::{DeflateDecoder, MultiGzDecoder, ZlibDecoder};

/// Why a body could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("unsupported content-encoding {0:?}")]
    Unsupported(String),
    #[error("decoded body is larger than {max} bytes")]
    TooLarge { max: usize },
    #[error("corrupt {encoding} body")]
    Corrupt {
        encoding: &'static str,
        #[source]
        source: io::Error,
    },
}

#[derive(Debug, Clone, Copy)]
enum Coding {
    Gzip,
    Deflate,
    Brotli,
    Identity,
}

/// Decodes `body` by its `Content-Encoding` (`gzip, br` is undone right to left). The result, and
/// every step on the way, is cut off past `max` bytes, so a compression bomb costs at most ~`max`.
pub fn decode(content_encoding: &str, body: &[u8], max: usize) -> Result<Bytes, DecodeError> {
    let codings = content_encoding
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .map(coding)
        .collect::<Result<Vec<_>, _>>()?;
    let mut current = Cow::Borrowed(body);
    for coding in codings.into_iter().rev() {
        let decoded = match coding {
            Coding::Identity => continue,
            Coding::Gzip => read_bounded(MultiGzDecoder::new(&current[..]), max, "gzip")?,
            Coding::Deflate if is_zlib(&current) => {
                read_bounded(ZlibDecoder::new(&current[..]), max, "deflate")?
            }
            Coding::Deflate => read_bounded(DeflateDecoder::new(&current[..]), max, "deflate")?,
            Coding::Brotli => {
                read_bounded(brotli::Decompressor::new(&current[..], 4096), max, "br")?
            }
        };
        current = Cow::Owned(decoded);
    }
    if current.len() > max {
        return Err(DecodeError::TooLarge { max });
    }
    Ok(Bytes::from(current.into_owned()))
}

/// Whether [`decode`] knows every coding a `Content-Encoding` names.
pub fn decodable(content_encoding: &str) -> bool {
    content_encoding
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .all(|name| coding(name).is_ok())
}

fn coding(name: &str) -> Result<Coding, DecodeError> {
    let known = [
        ("gzip", Coding::Gzip),
        ("x-gzip", Coding::Gzip),
        ("deflate", Coding::Deflate),
        ("br", Coding::Brotli),
        ("identity", Coding::Identity),
    ];
    let found = known
        .iter()
        .find(|(known, _)| name.eq_ignore_ascii_case(known));
    found
        .map(|&(_, coding)| coding)
        .ok_or_else(|| DecodeError::Unsupported(name.to_owned()))
}

/// A zlib header (RFC 1950): deflate method and a check value; without one it is raw deflate,
/// which some servers send as `deflate` and browsers accept.
fn is_zlib(data: &[u8]) -> bool {
    match data {
        [cmf, flg, ..] => cmf & 0x0f == 8 && (u16::from(*cmf) << 8 | u16::from(*flg)) % 31 == 0,
        _ => false,
    }
}

/// Reads all of `reader`, failing as soon as it yields more than `max` bytes; the buffer never
/// grows past `max`.
fn read_bounded(
    mut reader: impl Read,
    max: usize,
    encoding: &'static str,
) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) => return Ok(out),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => return Err(DecodeError::Corrupt { encoding, source }),
        };
        let len = out.len() + n;
        if len > max {
            return Err(DecodeError::TooLarge { max });
        }
        if out.capacity() < len {
            let grown = (out.capacity() * 2).clamp(len, max);
            out.reserve_exact(grown - out.len());
        }
        out.extend_from_slice(&chunk[..n]);
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use flate2::write::{DeflateEncoder, ZlibEncoder};
    use flate2::Compression;
    use std::io::Write;
    use std::time::{Duration, Instant};

    const BODY: &[u8] = br#"{"taskListDtos":[{"taskId":1486254586942472064}],"code":0}"#;
    const MAX: usize = 1024 * 1024;

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut e = ZlibEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn raw_deflate(data: &[u8]) -> Vec<u8> {
        let mut e = DeflateEncoder::new(Vec::new(), Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn brotli(data: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
        w.write_all(data).unwrap();
        drop(w);
        out
    }

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    #[test]
    fn decodes_each_encoding_and_chains() {
        let cases: Vec<(&str, Vec<u8>)> = vec![
            ("gzip", gzip(BODY)),
            ("x-gzip", gzip(BODY)),
            ("GZIP", gzip(BODY)),
            ("deflate", zlib(BODY)),
            ("deflate", raw_deflate(BODY)),
            ("br", brotli(BODY)),
            ("identity", BODY.to_vec()),
            ("", BODY.to_vec()),
            ("gzip, br", brotli(&gzip(BODY))),
            ("br,deflate , gzip", gzip(&zlib(&brotli(BODY)))),
            ("identity, gzip", gzip(BODY)),
        ];
        for (encoding, encoded) in cases {
            let decoded = decode(encoding, &encoded, MAX).unwrap();
            assert_eq!(&decoded[..], BODY, "{encoding:?}");
        }
    }

    #[test]
    fn unsupported_and_corrupt_bodies_are_errors() {
        for encoding in ["compress", "zstd", "gzip, zstd", "gzip;q=1"] {
            let err = decode(encoding, BODY, MAX).unwrap_err();
            assert!(
                matches!(err, DecodeError::Unsupported(_)),
                "{encoding}: {err:?}"
            );
        }
        for encoding in ["gzip", "br", "deflate"] {
            let err = decode(encoding, b"\x1f\x8b definitely not compressed", MAX).unwrap_err();
            assert!(
                matches!(err, DecodeError::Corrupt { .. }),
                "{encoding}: {err:?}"
            );
        }
    }

    #[test]
    fn size_bound_is_exact() {
        let data = vec![b'x'; 1000];
        assert_eq!(decode("gzip", &gzip(&data), 1000).unwrap().len(), 1000);
        assert!(matches!(
            decode("gzip", &gzip(&data), 999),
            Err(DecodeError::TooLarge { max: 999 })
        ));
        assert!(matches!(
            decode("identity", &data, 999),
            Err(DecodeError::TooLarge { max: 999 })
        ));
    }

    #[test]
    fn compression_bombs_are_cut_off() {
        let zeros = vec![0u8; 64 * 1024 * 1024];
        let mut one_mib_member = gzip(&zeros[..MAX]);
        let bombs = [
            ("gzip", gzip(&zeros)),
            ("br", brotli(&zeros[..16 * MAX])),
            ("deflate", zlib(&zeros[..16 * MAX])),
            // 1 GiB of zeros as 1024 concatenated gzip members, about 1 MiB on the wire.
            ("gzip", {
                let member = std::mem::take(&mut one_mib_member);
                member.repeat(1024)
            }),
        ];
        drop(zeros);
        for (encoding, bomb) in bombs {
            let start = Instant::now();
            let err = decode(encoding, &bomb, MAX).unwrap_err();
            assert!(
                matches!(err, DecodeError::TooLarge { max: MAX }),
                "{encoding}: {err:?}"
            );
            assert!(
                start.elapsed() < Duration::from_secs(2),
                "{encoding}: {:?}",
                start.elapsed()
            );
        }
    }
}
