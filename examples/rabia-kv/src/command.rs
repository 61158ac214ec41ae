//! From a client's RESP arguments to what the server does with them: a
//! replicated [`KvOp`], a local command answered by this node, or an error
//! reply in Redis's words (unknown command, wrong arity, syntax).

use crate::resp::Value;
use crate::store::{KvOp, SetCondition, SetExpiry};

/// A command answered by the node itself, without the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Local {
    /// `PING [message]`
    Ping(Option<Vec<u8>>),
    /// `ECHO message`
    Echo(Vec<u8>),
    /// `INFO [section]`
    Info(Option<String>),
    /// `CONFIG GET pattern...`
    ConfigGet(Vec<String>),
    /// `COMMAND ...`: an empty list (enough for redis-cli and
    /// redis-benchmark to start).
    Command,
    /// `SELECT db`: only database 0 exists.
    Select(Vec<u8>),
    /// `CLIENT SETNAME/SETINFO ...`: accepted and ignored.
    ClientOk,
    /// `QUIT`
    Quit,
    /// `MULTI`
    Multi,
    /// `EXEC`
    Exec,
    /// `DISCARD`
    Discard,
}

/// What one request asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Goes through the log.
    Replicated(KvOp),
    /// Answered here.
    Local(Local),
    /// Refused with this reply (the connection stays open).
    Invalid(Value),
}

fn upper(arg: &[u8]) -> String {
    String::from_utf8_lossy(arg).to_ascii_uppercase()
}

fn wrong_arity(name: &str) -> Request {
    Request::Invalid(Value::err(format!(
        "wrong number of arguments for '{}' command",
        name.to_ascii_lowercase()
    )))
}

fn syntax_error() -> Request {
    Request::Invalid(Value::err("syntax error"))
}

fn parse_i64(arg: &[u8]) -> Option<i64> {
    std::str::from_utf8(arg).ok()?.parse().ok()
}

fn not_an_integer() -> Request {
    Request::Invalid(Value::err("value is not an integer or out of range"))
}

/// Parses one command. `now_ms` turns relative expiries (`EX`, `PX`) into
/// absolute deadlines.
pub fn parse(mut args: Vec<Vec<u8>>, now_ms: u64) -> Request {
    if args.is_empty() {
        return Request::Invalid(Value::err("empty command"));
    }
    let raw_name = args.remove(0);
    let name = upper(&raw_name);
    let mut rest = args;
    let n = rest.len();
    // Moves an argument out (the guards below check that it exists).
    let take = |rest: &mut Vec<Vec<u8>>, i: usize| std::mem::take(&mut rest[i]);
    match name.as_str() {
        "PING" if n <= 1 => Request::Local(Local::Ping(rest.pop())),
        "ECHO" if n == 1 => Request::Local(Local::Echo(take(&mut rest, 0))),
        "INFO" if n <= 1 => Request::Local(Local::Info(rest.first().map(|s| upper(s)))),
        "CONFIG" if n >= 2 && upper(&rest[0]) == "GET" => Request::Local(Local::ConfigGet(
            rest[1..]
                .iter()
                .map(|p| String::from_utf8_lossy(p).to_ascii_lowercase())
                .collect(),
        )),
        "CONFIG" if n >= 1 => Request::Invalid(Value::err(
            "only CONFIG GET is supported; settings come from the node's configuration",
        )),
        "COMMAND" => Request::Local(Local::Command),
        "SELECT" if n == 1 => Request::Local(Local::Select(take(&mut rest, 0))),
        "CLIENT" if n >= 1 && matches!(upper(&rest[0]).as_str(), "SETNAME" | "SETINFO") => {
            Request::Local(Local::ClientOk)
        }
        "QUIT" => Request::Local(Local::Quit),
        "MULTI" if n == 0 => Request::Local(Local::Multi),
        "EXEC" if n == 0 => Request::Local(Local::Exec),
        "DISCARD" if n == 0 => Request::Local(Local::Discard),
        "GET" if n == 1 => Request::Replicated(KvOp::Get(take(&mut rest, 0))),
        "SET" if n >= 2 => parse_set(rest, now_ms),
        "DEL" | "UNLINK" if n >= 1 => Request::Replicated(KvOp::Del(rest)),
        "EXISTS" if n >= 1 => Request::Replicated(KvOp::Exists(rest)),
        "INCR" if n == 1 => Request::Replicated(KvOp::IncrBy(take(&mut rest, 0), 1)),
        "DECR" if n == 1 => Request::Replicated(KvOp::IncrBy(take(&mut rest, 0), -1)),
        "INCRBY" | "DECRBY" if n == 2 => match parse_i64(&rest[1]) {
            Some(d) if name == "INCRBY" => Request::Replicated(KvOp::IncrBy(take(&mut rest, 0), d)),
            Some(d) => match d.checked_neg() {
                Some(d) => Request::Replicated(KvOp::IncrBy(take(&mut rest, 0), d)),
                None => Request::Invalid(Value::err("decrement would overflow")),
            },
            None => not_an_integer(),
        },
        "MGET" if n >= 1 => Request::Replicated(KvOp::MGet(rest)),
        "MSET" if n >= 2 && n.is_multiple_of(2) => {
            let mut pairs = Vec::with_capacity(n / 2);
            let mut items = rest.into_iter();
            while let (Some(k), Some(v)) = (items.next(), items.next()) {
                pairs.push((k, v));
            }
            Request::Replicated(KvOp::MSet(pairs))
        }
        "CAS" if n == 3 => Request::Replicated(KvOp::Cas {
            new: take(&mut rest, 2),
            expected: take(&mut rest, 1),
            key: take(&mut rest, 0),
        }),
        "DBSIZE" if n == 0 => Request::Replicated(KvOp::DbSize),
        "FLUSHALL" | "FLUSHDB" if n <= 1 => Request::Replicated(KvOp::FlushAll),
        "PING" | "ECHO" | "INFO" | "CONFIG" | "SELECT" | "MULTI" | "EXEC" | "DISCARD" | "GET"
        | "SET" | "DEL" | "UNLINK" | "EXISTS" | "INCR" | "DECR" | "INCRBY" | "DECRBY" | "MGET"
        | "MSET" | "CAS" | "DBSIZE" | "FLUSHALL" | "FLUSHDB" => wrong_arity(&name),
        _ => {
            let shown: String = String::from_utf8_lossy(&raw_name)
                .chars()
                .take(64)
                .collect();
            Request::Invalid(Value::err(format!("unknown command '{shown}'")))
        }
    }
}

fn parse_set(mut rest: Vec<Vec<u8>>, now_ms: u64) -> Request {
    let key = std::mem::take(&mut rest[0]);
    let value = std::mem::take(&mut rest[1]);
    let mut condition = None;
    let mut get = false;
    let mut expiry = SetExpiry::Persist;
    let mut expiry_given = false;
    let mut i = 2;
    while i < rest.len() {
        let option = upper(&rest[i]);
        match option.as_str() {
            "NX" | "XX" if condition.is_none() => {
                condition = Some(if option == "NX" {
                    SetCondition::IfAbsent
                } else {
                    SetCondition::IfPresent
                });
            }
            "GET" if !get => get = true,
            "KEEPTTL" if !expiry_given => {
                expiry = SetExpiry::Keep;
                expiry_given = true;
            }
            "EX" | "PX" | "EXAT" | "PXAT" if !expiry_given => {
                let Some(amount) = rest.get(i + 1).and_then(|a| parse_i64(a)) else {
                    return if rest.get(i + 1).is_some() {
                        not_an_integer()
                    } else {
                        syntax_error()
                    };
                };
                if amount <= 0 {
                    return Request::Invalid(Value::err("invalid expire time in 'set' command"));
                }
                let amount = amount as u64;
                let at = match option.as_str() {
                    "EX" => amount
                        .checked_mul(1000)
                        .and_then(|ms| ms.checked_add(now_ms)),
                    "PX" => amount.checked_add(now_ms),
                    "EXAT" => amount.checked_mul(1000),
                    _ => Some(amount),
                };
                let Some(at) = at else {
                    return Request::Invalid(Value::err("invalid expire time in 'set' command"));
                };
                expiry = SetExpiry::At(at);
                expiry_given = true;
                i += 1;
            }
            _ => return syntax_error(),
        }
        i += 1;
    }
    Request::Replicated(KvOp::Set {
        key,
        value,
        condition,
        get,
        expiry,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(line: &str) -> Vec<Vec<u8>> {
        line.split(' ').map(|s| s.as_bytes().to_vec()).collect()
    }

    #[test]
    fn parses_the_supported_commands() {
        assert_eq!(
            parse(args("get k"), 0),
            Request::Replicated(KvOp::Get(b"k".to_vec()))
        );
        assert_eq!(
            parse(args("SET k v NX GET PX 100"), 1_000),
            Request::Replicated(KvOp::Set {
                key: b"k".to_vec(),
                value: b"v".to_vec(),
                condition: Some(SetCondition::IfAbsent),
                get: true,
                expiry: SetExpiry::At(1_100),
            })
        );
        assert_eq!(
            parse(args("decrby k 5"), 0),
            Request::Replicated(KvOp::IncrBy(b"k".to_vec(), -5))
        );
        assert_eq!(parse(args("ping"), 0), Request::Local(Local::Ping(None)));
        assert_eq!(
            parse(args("config get save"), 0),
            Request::Local(Local::ConfigGet(vec!["save".into()]))
        );
    }

    #[test]
    fn refuses_like_redis() {
        let err = |r: Request| match r {
            Request::Invalid(Value::Error(e)) => e,
            other => panic!("expected an error, got {other:?}"),
        };
        assert_eq!(
            err(parse(args("get"), 0)),
            "ERR wrong number of arguments for 'get' command"
        );
        assert_eq!(
            err(parse(args("nosuch x"), 0)),
            "ERR unknown command 'nosuch'"
        );
        assert_eq!(
            err(parse(args("set k v EX 0"), 0)),
            "ERR invalid expire time in 'set' command"
        );
        assert_eq!(err(parse(args("set k v NX XX"), 0)), "ERR syntax error");
        assert_eq!(err(parse(args("set k v EX"), 0)), "ERR syntax error");
        assert_eq!(
            err(parse(args("incrby k x"), 0)),
            "ERR value is not an integer or out of range"
        );
        assert_eq!(
            err(parse(args("mset a 1 b"), 0)),
            "ERR wrong number of arguments for 'mset' command"
        );
    }
}
