//! RESP2, the Redis serialization protocol: parsing client requests
//! (multi-bulk arrays, and inline commands as `redis-cli`-less tools such as
//! `nc` send them) and encoding replies.
//!
//! Parsing is incremental and bounded: a partial request asks for more
//! bytes; a request over the limits, or bytes that are not RESP, is a
//! [`ProtocolError`] (the server replies `-ERR Protocol error: ...` and closes
//! the connection, as Redis does).

use thiserror::Error;

/// Limits on one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most arguments in one command.
    pub args_max: usize,
    /// Largest single argument, in bytes.
    pub arg_bytes_max: usize,
    /// Longest inline command line, in bytes.
    pub inline_bytes_max: usize,
    /// Most bytes one incomplete request may buffer.
    pub request_bytes_max: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            args_max: 1 << 20,
            arg_bytes_max: 8 << 20,
            inline_bytes_max: 64 << 10,
            request_bytes_max: 64 << 20,
        }
    }
}

/// Bytes that are not a valid request.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
#[error("Protocol error: {0}")]
pub struct ProtocolError(pub String);

fn err<T>(why: impl Into<String>) -> Result<T, ProtocolError> {
    Err(ProtocolError(why.into()))
}

/// Finds `\r\n` at or after `from`; returns the index of `\r`.
fn line_end(buf: &[u8], from: usize) -> Option<usize> {
    buf.get(from..)?
        .windows(2)
        .position(|w| w == b"\r\n")
        .map(|i| from + i)
}

/// A parsed request: its arguments and the bytes it used.
pub type Parsed = (Vec<Vec<u8>>, usize);

fn parse_int(bytes: &[u8]) -> Option<i64> {
    std::str::from_utf8(bytes).ok()?.parse().ok()
}

/// Parses one request from the front of `buf`. Returns the arguments and how
/// many bytes they used, `Ok(None)` when more bytes are needed, or an error.
/// An empty inline line yields an empty argument list (ignored by callers).
pub fn parse_request(buf: &[u8], limits: &Limits) -> Result<Option<Parsed>, ProtocolError> {
    match buf.first() {
        None => Ok(None),
        Some(b'*') => parse_multibulk(buf, limits),
        Some(_) => parse_inline(buf, limits),
    }
}

fn parse_multibulk(buf: &[u8], limits: &Limits) -> Result<Option<Parsed>, ProtocolError> {
    let Some(end) = line_end(buf, 1) else {
        if buf.len() > 32 {
            return err("invalid multibulk length");
        }
        return Ok(None);
    };
    let Some(count) = parse_int(&buf[1..end]) else {
        return err("invalid multibulk length");
    };
    if count > limits.args_max as i64 {
        return err("invalid multibulk length");
    }
    let mut pos = end + 2;
    if count <= 0 {
        return Ok(Some((Vec::new(), pos)));
    }
    let mut args = Vec::with_capacity((count as usize).min(1024));
    for _ in 0..count {
        match buf.get(pos) {
            None => return Ok(None),
            Some(b'$') => {}
            Some(&c) => return err(format!("expected '$', got '{}'", c as char)),
        }
        let Some(end) = line_end(buf, pos + 1) else {
            if buf.len() - pos > 32 {
                return err("invalid bulk length");
            }
            return Ok(None);
        };
        let len = match parse_int(&buf[pos + 1..end]) {
            Some(len) if len >= 0 && len as usize <= limits.arg_bytes_max => len as usize,
            _ => return err("invalid bulk length"),
        };
        let start = end + 2;
        if buf.len() < start + len + 2 {
            return Ok(None);
        }
        if &buf[start + len..start + len + 2] != b"\r\n" {
            return err("bulk string not terminated by CRLF");
        }
        args.push(buf[start..start + len].to_vec());
        pos = start + len + 2;
    }
    Ok(Some((args, pos)))
}

fn parse_inline(buf: &[u8], limits: &Limits) -> Result<Option<Parsed>, ProtocolError> {
    let newline = buf.iter().position(|&b| b == b'\n');
    let Some(newline) = newline else {
        if buf.len() > limits.inline_bytes_max {
            return err("too big inline request");
        }
        return Ok(None);
    };
    if newline > limits.inline_bytes_max {
        return err("too big inline request");
    }
    let line = &buf[..newline];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let args: Vec<Vec<u8>> = line
        .split(|b| b.is_ascii_whitespace())
        .filter(|w| !w.is_empty())
        .map(<[u8]>::to_vec)
        .collect();
    if args.len() > limits.args_max {
        return err("too many arguments");
    }
    Ok(Some((args, newline + 1)))
}

/// A RESP2 reply.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Value {
    /// `+OK`
    Simple(String),
    /// `-ERR ...` (the text includes the error code word).
    Error(String),
    /// `:42`
    Integer(i64),
    /// `$3\r\nfoo` or the nil bulk `$-1`.
    Bulk(Option<Vec<u8>>),
    /// `*2 ...` or the nil array `*-1`.
    Array(Option<Vec<Value>>),
}

impl Value {
    /// `+OK`.
    pub fn ok() -> Value {
        Value::Simple("OK".into())
    }

    /// An `-ERR <text>` error.
    pub fn err(text: impl std::fmt::Display) -> Value {
        Value::Error(format!("ERR {text}"))
    }

    /// A bulk string.
    pub fn bulk(bytes: impl Into<Vec<u8>>) -> Value {
        Value::Bulk(Some(bytes.into()))
    }

    /// The nil bulk string.
    pub fn nil() -> Value {
        Value::Bulk(None)
    }

    /// Appends the wire form to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Value::Simple(s) => {
                out.push(b'+');
                push_line(out, s.as_bytes());
            }
            Value::Error(s) => {
                out.push(b'-');
                push_line(out, s.as_bytes());
            }
            Value::Integer(n) => {
                out.push(b':');
                out.extend_from_slice(n.to_string().as_bytes());
                out.extend_from_slice(b"\r\n");
            }
            Value::Bulk(None) => out.extend_from_slice(b"$-1\r\n"),
            Value::Bulk(Some(bytes)) => {
                out.push(b'$');
                out.extend_from_slice(bytes.len().to_string().as_bytes());
                out.extend_from_slice(b"\r\n");
                out.extend_from_slice(bytes);
                out.extend_from_slice(b"\r\n");
            }
            Value::Array(None) => out.extend_from_slice(b"*-1\r\n"),
            Value::Array(Some(items)) => {
                out.push(b'*');
                out.extend_from_slice(items.len().to_string().as_bytes());
                out.extend_from_slice(b"\r\n");
                for item in items {
                    item.encode(out);
                }
            }
        }
    }

    /// The wire form.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode(&mut out);
        out
    }
}

/// Simple strings and errors cannot contain CR or LF; replace them.
fn push_line(out: &mut Vec<u8>, text: &[u8]) {
    out.extend(
        text.iter()
            .map(|&b| if b == b'\r' || b == b'\n' { b' ' } else { b }),
    );
    out.extend_from_slice(b"\r\n");
}

/// Parses one reply (the client side: `rabia-kv status` and tests).
/// Returns the value and the bytes it used, or `None` if incomplete.
pub fn parse_reply(buf: &[u8]) -> Result<Option<(Value, usize)>, ProtocolError> {
    let Some(&kind) = buf.first() else {
        return Ok(None);
    };
    let Some(end) = line_end(buf, 1) else {
        return Ok(None);
    };
    let line = &buf[1..end];
    let next = end + 2;
    let text = || String::from_utf8_lossy(line).into_owned();
    match kind {
        b'+' => Ok(Some((Value::Simple(text()), next))),
        b'-' => Ok(Some((Value::Error(text()), next))),
        b':' => match parse_int(line) {
            Some(n) => Ok(Some((Value::Integer(n), next))),
            None => err("invalid integer"),
        },
        b'$' => match parse_int(line) {
            Some(-1) => Ok(Some((Value::Bulk(None), next))),
            Some(len) if len >= 0 => {
                let len = len as usize;
                if buf.len() < next + len + 2 {
                    return Ok(None);
                }
                Ok(Some((
                    Value::Bulk(Some(buf[next..next + len].to_vec())),
                    next + len + 2,
                )))
            }
            _ => err("invalid bulk length"),
        },
        b'*' => match parse_int(line) {
            Some(-1) => Ok(Some((Value::Array(None), next))),
            Some(n) if n >= 0 => {
                let mut items = Vec::new();
                let mut pos = next;
                for _ in 0..n {
                    match parse_reply(&buf[pos..])? {
                        None => return Ok(None),
                        Some((v, used)) => {
                            items.push(v);
                            pos += used;
                        }
                    }
                }
                Ok(Some((Value::Array(Some(items)), pos)))
            }
            _ => err("invalid array length"),
        },
        other => err(format!("unexpected reply type '{}'", other as char)),
    }
}

/// Encodes a command as a multi-bulk request (the client side).
pub fn encode_request(args: &[&[u8]]) -> Vec<u8> {
    Value::Array(Some(args.iter().map(|a| Value::bulk(a.to_vec())).collect())).to_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parses_multibulk_and_inline_and_waits_for_more() {
        let l = Limits::default();
        let req = b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n";
        assert_eq!(
            parse_request(req, &l).unwrap(),
            Some((vec![b"GET".to_vec(), b"k".to_vec()], req.len()))
        );
        for cut in 0..req.len() {
            assert_eq!(parse_request(&req[..cut], &l).unwrap(), None, "cut {cut}");
        }
        assert_eq!(
            parse_request(b"set a  1\r\nPING\r\n", &l).unwrap(),
            Some((vec![b"set".to_vec(), b"a".to_vec(), b"1".to_vec()], 10))
        );
    }

    #[test]
    fn refuses_what_is_not_resp() {
        let l = Limits::default();
        assert!(parse_request(b"*x\r\n", &l).is_err());
        assert!(parse_request(b"*1\r\n:5\r\n", &l).is_err());
        assert!(parse_request(b"*1\r\n$-5\r\n", &l).is_err());
        assert!(parse_request(b"*1\r\n$1\r\nab\r\n", &l).is_err());
        let tight = Limits {
            arg_bytes_max: 4,
            args_max: 2,
            inline_bytes_max: 8,
            request_bytes_max: 64,
        };
        assert!(parse_request(b"*1\r\n$5\r\n", &tight).is_err());
        assert!(parse_request(b"*3\r\n", &tight).is_err());
        assert!(parse_request(b"aaaaaaaaaaaaaaaaaaa", &tight).is_err());
    }

    #[test]
    fn replies_round_trip() {
        let v = Value::Array(Some(vec![
            Value::ok(),
            Value::err("boom"),
            Value::Integer(-3),
            Value::nil(),
            Value::bulk(b"a\r\nb".to_vec()),
            Value::Array(None),
        ]));
        let bytes = v.to_bytes();
        assert_eq!(parse_reply(&bytes).unwrap(), Some((v, bytes.len())));
        assert_eq!(parse_reply(&bytes[..bytes.len() - 1]).unwrap(), None);
    }

    proptest! {
        /// Arbitrary bytes never panic the parser, and whatever it accepts
        /// it consumed from the buffer.
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            if let Ok(Some((_, used))) = parse_request(&bytes, &Limits::default()) {
                prop_assert!(used <= bytes.len());
                prop_assert!(used > 0);
            }
            let _ = parse_reply(&bytes);
        }

        /// Any command encoded as multi-bulk parses back to itself.
        #[test]
        fn requests_round_trip(args in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..20), 1..6)) {
            let refs: Vec<&[u8]> = args.iter().map(|a| a.as_slice()).collect();
            let bytes = encode_request(&refs);
            prop_assert_eq!(parse_request(&bytes, &Limits::default()).unwrap(), Some((args, bytes.len())));
        }
    }
}
