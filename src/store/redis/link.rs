//! The connection to Redis: made on demand, made again after a failure,
//! every call bounded in time, every failure an [`Error`] whose message
//! names the server without its password.

#![forbid(unsafe_code)]

use crate::clock::monotonic_ns;
use crate::error::{Error, Result};
use crate::process;
use parking_lot::Mutex;
use redis::{Client, Connection, ErrorKind, RedisError};
use std::time::Duration;

/// How long a connection may take to be made, and a call to be answered
/// when the caller has no deadline of its own.
pub const CALL_TIMEOUT_NS: i64 = 2_000_000_000;
/// Idle connections kept for later calls.
const IDLE_KEPT: usize = 16;
/// The shortest timeout a call gets: a deadline that has passed (a
/// `has_fuel`, a zero timeout) still gets one round trip, on a server that
/// may be busy.
pub const MIN_TIMEOUT_NS: i64 = 100_000_000;

/// One connection to one Redis server, shared by the threads of a process.
pub struct Link {
    client: Client,
    /// The URL as messages show it: the password replaced by `***`.
    shown: String,
    /// The password, to be blanked out of any message that quotes it.
    password: Option<String>,
    /// Idle connections: a call takes one (or makes one), and puts it back
    /// if it ends well, so calls of several threads go in parallel and a
    /// stuck one holds up no other.
    idle: Mutex<Vec<Connection>>,
    /// The process that made the link: a child of `fork()` must not share
    /// its socket.
    owner: u32,
}

impl Link {
    /// A link to `url` (`redis://[user[:password]@]host[:port][/db]`, or
    /// `redis+unix:///path`); no connection yet.
    pub fn new(url: &str) -> Result<Self> {
        let password = password_of(url);
        let shown = redact(url, password.as_deref());
        if cfg!(not(feature = "tls")) && url.starts_with("rediss://") {
            return Err(Error::Unsupported(format!(
                "{shown:?}: rediss:// (TLS) needs a library built with the Cargo feature `tls` \
                 (cargo build --release --features tls)"
            )));
        }
        let client = Client::open(url).map_err(|e| {
            Error::InvalidArgument(format!(
                "{shown:?} is not a Redis URL (redis://[user[:password]@]host[:port][/db]): {}",
                scrub(&e.to_string(), password.as_deref())
            ))
        })?;
        Ok(Self {
            client,
            shown,
            password,
            idle: Mutex::new(Vec::new()),
            owner: process::id(),
        })
    }

    /// The process that made the link.
    pub fn owner(&self) -> u32 {
        self.owner
    }

    /// The URL without its password.
    pub fn shown(&self) -> &str {
        &self.shown
    }

    /// Runs `f` on the connection, made first if there is none, with
    /// `deadline` (monotonic ns) as its timeout (none: [`CALL_TIMEOUT_NS`]).
    /// Each call takes an idle connection or makes one; a failure that
    /// leaves it in doubt drops it.
    pub fn call<T>(
        &self,
        deadline: Option<i64>,
        f: impl FnOnce(&mut Connection) -> redis::RedisResult<T>,
    ) -> Result<T> {
        if process::id() != self.owner {
            return Err(Error::WrongState(
                "a Redis throttle's connection belongs to the process that connected; after \
                 fork(), connect again in the child"
                    .into(),
            ));
        }
        // A signal handled while a read waits on its socket would end the
        // read with EINTR (a socket with a timeout is never restarted,
        // SA_RESTART or not), and the reply would be lost: the signals wait
        // until the call is over. Go's runtime, for one, signals its threads
        // all the time.
        let _signals = crate::wait::SignalsHeld::hold();
        // And a round trip is no cancellation point (connect, send, recv
        // are): whichever call makes it, pthread_cancel never unwinds it.
        let _no_cancel = crate::wait::NoCancel::hold();
        let now = monotonic_ns();
        let timeout = deadline
            .map_or(CALL_TIMEOUT_NS, |d| d.saturating_sub(now))
            .clamp(MIN_TIMEOUT_NS, CALL_TIMEOUT_NS);
        let timeout = Duration::from_nanos(timeout as u64);
        let taken = self.idle.lock().pop();
        let mut conn = match taken {
            Some(c) => c,
            // Half the time each to connect and to the handshake the
            // client makes, which get this timeout each.
            None => self
                .client
                .get_connection_with_timeout(timeout / 2)
                .map_err(|e| self.error(&e))?,
        };
        // What is left of the time after making it.
        let left = deadline
            .map_or(CALL_TIMEOUT_NS, |d| d.saturating_sub(monotonic_ns()))
            .clamp(MIN_TIMEOUT_NS, CALL_TIMEOUT_NS);
        let timeout = Duration::from_nanos(left as u64);
        let set = conn
            .set_read_timeout(Some(timeout))
            .and_then(|()| conn.set_write_timeout(Some(timeout)));
        match set.and_then(|()| f(&mut conn)) {
            Ok(v) => {
                let mut idle = self.idle.lock();
                if idle.len() < IDLE_KEPT {
                    idle.push(conn);
                }
                Ok(v)
            }
            Err(e) => {
                // A reply to a server error leaves the connection usable;
                // after any other failure a reply may still be on its way:
                // the connection is dropped.
                if matches!(
                    e.kind(),
                    ErrorKind::ResponseError | ErrorKind::NoScriptError
                ) && !e.is_timeout()
                {
                    self.idle.lock().push(conn);
                }
                Err(self.error(&e))
            }
        }
    }

    /// A connection of its own (for pub/sub), with `timeout` for reads.
    pub fn dedicated(&self, timeout: Duration) -> Result<Connection> {
        let conn = self
            .client
            .get_connection_with_timeout(Duration::from_nanos(CALL_TIMEOUT_NS as u64))
            .map_err(|e| self.error(&e))?;
        conn.set_read_timeout(Some(timeout))
            .map_err(|e| self.error(&e))?;
        Ok(conn)
    }

    /// What a failure of the server at this link means for the caller.
    pub fn error(&self, e: &RedisError) -> Error {
        let what = scrub(&e.to_string(), self.password.as_deref());
        let shown = &self.shown;
        match e.kind() {
            ErrorKind::AuthenticationFailed => {
                Error::PermissionDenied(format!("Redis at {shown} refused the credentials: {what}"))
            }
            ErrorKind::Moved | ErrorKind::Ask => Error::InvalidArgument(format!(
                "Redis at {shown} is a cluster node that does not hold this throttle's slot: \
                 connect to the node that does (CLUSTER KEYSLOT mpt:{{name}}): {what}"
            )),
            // A server loading its data, a failover under way, a replica:
            // not reachable for decisions now, perhaps soon.
            ErrorKind::BusyLoadingError
            | ErrorKind::TryAgain
            | ErrorKind::ClusterDown
            | ErrorKind::MasterDown
            | ErrorKind::ReadOnly => {
                Error::Unreachable(format!("Redis at {shown} cannot decide now: {what}"))
            }
            ErrorKind::ResponseError | ErrorKind::ExtensionError
                if what.contains("NOPERM") || what.contains("NOAUTH") =>
            {
                Error::PermissionDenied(format!("Redis at {shown} refused: {what}"))
            }
            ErrorKind::ResponseError | ErrorKind::ExtensionError | ErrorKind::TypeError => {
                Error::Corrupt(format!(
                    "Redis at {shown} answered what this library does not expect (keys of \
                     the throttle used by another program?): {what}"
                ))
            }
            ErrorKind::InvalidClientConfig => {
                Error::InvalidArgument(format!("Redis URL {shown}: {what}"))
            }
            _ if e.is_timeout() => {
                Error::Unreachable(format!("Redis at {shown} did not answer in time: {what}"))
            }
            ErrorKind::ParseError => Error::Unreachable(format!(
                "{shown} answered, but not as a Redis server does: {what}"
            )),
            _ => Error::Unreachable(format!("Redis at {shown} cannot be reached: {what}")),
        }
    }
}

/// The password in `url`, if it has one (`scheme://[user]:password@...`).
fn password_of(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let auth = rest.split_once('@')?.0;
    if auth.contains('/') {
        return None; // the '@' is in the path, not in credentials
    }
    let password = auth.split_once(':')?.1;
    (!password.is_empty()).then(|| password.to_owned())
}

/// `url` with its password shown as `***`.
fn redact(url: &str, password: Option<&str>) -> String {
    let Some(password) = password else {
        return url.to_owned();
    };
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.split_once('@') {
            Some((auth, host)) => {
                let user = auth.split_once(':').map_or(auth, |(u, _)| u);
                format!("{scheme}://{user}:***@{host}")
            }
            None => scrub(url, Some(password)),
        },
        None => scrub(url, Some(password)),
    }
}

/// `text` with every occurrence of `password` replaced by `***`.
fn scrub(text: &str, password: Option<&str>) -> String {
    match password {
        Some(p) if !p.is_empty() => text.replace(p, "***"),
        _ => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_show() {
        let url = "redis://alice:s3cret@example.com:6380/2";
        assert_eq!(password_of(url).as_deref(), Some("s3cret"));
        assert_eq!(
            redact(url, Some("s3cret")),
            "redis://alice:***@example.com:6380/2"
        );
        assert_eq!(password_of("redis://:pw@h").as_deref(), Some("pw"));
        assert_eq!(redact("redis://:pw@h", Some("pw")), "redis://:***@h");
        assert_eq!(password_of("redis://h:6379/0"), None);
        assert_eq!(password_of("redis://user@h"), None);
        let link = Link::new("redis://bob:hunter2@127.0.0.1:1/0").unwrap();
        assert!(!link.shown().contains("hunter2"));
        let e = link.call(None, |c| redis::cmd("PING").query::<String>(c));
        let msg = e.unwrap_err().to_string();
        assert!(!msg.contains("hunter2"), "{msg}");
        assert!(msg.contains("bob:***@127.0.0.1:1"), "{msg}");
    }

    #[test]
    fn a_bad_url_is_an_invalid_argument() {
        match Link::new("http://x:pw@host/").err() {
            Some(Error::InvalidArgument(m)) => assert!(!m.contains("pw@"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
}
