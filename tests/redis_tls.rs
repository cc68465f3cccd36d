//! `rediss://` (the Cargo feature `tls`) against a real `redis-server`
//! with TLS on a free loopback port, its certificate signed by a CA made
//! here with `openssl` and trusted through `SSL_CERT_FILE`, as the system's
//! roots would be.

mod common;
#[path = "common/redis_server.rs"]
mod redis_server;

use common::{Overrun, SEC, Test, TestResult, check, note, now, run, sleep_ms};
use mp_throttle::{Error, Hardcap, Options, Throttle};
use redis_server::{RedisServer, free_port};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

/// The directory of the CA and the server's certificate and key.
static CERTS: OnceLock<PathBuf> = OnceLock::new();

fn openssl(dir: &Path, args: &[&str]) -> TestResult {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .map_err(|e| format!("openssl: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

/// A CA, and a certificate it signed for 127.0.0.1 (an IP address
/// only: a client that asks for `localhost` must refuse it).
fn make_certs() -> Result<PathBuf, String> {
    let dir = std::env::temp_dir().join(format!("mpt-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    openssl(
        &dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=mp_throttle test CA",
        ],
    )?;
    openssl(
        &dir,
        &[
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "server.key",
            "-out",
            "server.csr",
            "-subj",
            "/CN=127.0.0.1",
        ],
    )?;
    std::fs::write(dir.join("san.cnf"), "subjectAltName=IP:127.0.0.1\n")
        .map_err(|e| e.to_string())?;
    openssl(
        &dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.pem",
            "-days",
            "2",
            "-extfile",
            "san.cnf",
        ],
    )?;
    Ok(dir)
}

/// A redis-server that speaks TLS only, on a free port, until dropped.
struct TlsServer {
    port: u16,
    child: Child,
}

impl TlsServer {
    fn start(certs: &Path) -> Result<Self, String> {
        let port = free_port();
        let child = Command::new("redis-server")
            .args([
                "--port",
                "0",
                "--tls-port",
                &port.to_string(),
                "--bind",
                "127.0.0.1",
            ])
            .args([
                "--save",
                "",
                "--appendonly",
                "no",
                "--tls-auth-clients",
                "no",
            ])
            .arg("--tls-cert-file")
            .arg(certs.join("server.pem"))
            .arg("--tls-key-file")
            .arg(certs.join("server.key"))
            .arg("--tls-ca-cert-file")
            .arg(certs.join("ca.pem"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("redis-server: {e}"))?;
        redis_server::SERVER_PID.store(child.id() as i32, std::sync::atomic::Ordering::SeqCst);
        let server = Self { port, child };
        let t0 = now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if now() - t0 > 10 * SEC {
                return Err(format!("redis-server did not listen on {port} within 10 s"));
            }
            sleep_ms(10);
        }
        Ok(server)
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn opts() -> Options {
    Options::new().hardcap(Hardcap::Limit).monitor(false)
}

/// A throttle over TLS works as any other; the password never shows.
fn grants_over_tls() -> TestResult {
    let certs = CERTS.get().ok_or("no certificates")?;
    let server = TlsServer::start(certs)?;
    let url = format!("rediss://127.0.0.1:{}/0", server.port);
    let t = Throttle::connect(&url, "tls", 2, Duration::from_millis(200), &opts())
        .map_err(|e| e.to_string())?;
    t.start().map_err(|e| e.to_string())?;
    check!(t.has_fuel().is_ok(), "the first unit, over TLS");
    check!(t.has_fuel() == Err(Error::NoFuel), "then none");
    let r = t.await_fuel(Some(Duration::from_secs(1)));
    check!(r.is_ok(), "the next, 100 ms later: {r:?}");
    let summary = t.stop().map_err(|e| e.to_string())?;
    check!(
        summary.total == 2,
        "2 grants counted, not {}",
        summary.total
    );
    note!("{url}: 2 grants, 100 ms apart");
    Ok(())
}

/// A certificate that does not name the host, and a server without TLS:
/// refused, and said so.
fn refusals() -> TestResult {
    let certs = CERTS.get().ok_or("no certificates")?;
    let server = TlsServer::start(certs)?;
    // The certificate is for 127.0.0.1, not for localhost.
    let url = format!("rediss://:pw-not-shown@localhost:{}/0", server.port);
    match Throttle::connect(&url, "tls", 2, Duration::from_millis(200), &opts()) {
        Err(Error::Unreachable(m)) => {
            check!(!m.contains("pw-not-shown"), "the password shows: {m}");
            check!(m.to_lowercase().contains("certificate"), "says why: {m}");
        }
        other => {
            return Err(format!(
                "a certificate for another name: {:?}",
                other.map(|_| ())
            ));
        }
    }
    // TLS to a server that speaks plain RESP.
    let plain = RedisServer::start();
    let t0 = now();
    match Throttle::connect(
        &format!("rediss://127.0.0.1:{}/0", plain.port),
        "tls",
        2,
        Duration::from_millis(200),
        &opts(),
    ) {
        Err(Error::Unreachable(_)) => {}
        other => return Err(format!("TLS to a plain server: {:?}", other.map(|_| ()))),
    }
    check!(
        now() - t0 < 5 * SEC,
        "said in {} ms",
        (now() - t0) / 1_000_000
    );
    Ok(())
}

fn main() {
    let certs = match make_certs() {
        Ok(dir) => dir,
        Err(e) => {
            println!("FAILED: cannot make the test certificates: {e}");
            std::process::exit(1);
        }
    };
    // SAFETY: set before any other thread of this process exists (the
    // runner's watchdog starts in `run`, below); the TLS client reads it
    // to find the roots it trusts.
    unsafe { std::env::set_var("SSL_CERT_FILE", certs.join("ca.pem")) };
    let _ = CERTS.set(certs);
    let tests: &[Test] = &[
        ("grants_over_tls", grants_over_tls, 60),
        ("refusals", refusals, 60),
    ];
    run(
        tests,
        Overrun {
            cleanup: redis_server::kill_server,
            done: " (its redis-server was killed)",
        },
        cleanup,
    );
}

fn cleanup() {
    if let Some(dir) = CERTS.get() {
        let _ = std::fs::remove_dir_all(dir);
    }
}
