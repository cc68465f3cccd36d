//! A real `redis-server` for the tests of the Redis store: started on a
//! free loopback port, with no persistence, stopped (SIGKILL) when dropped.
//! Tests can also freeze it (SIGSTOP / SIGCONT), kill it and start it
//! again, empty, on the same port.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering::SeqCst};
use std::time::{Duration, Instant};

/// The pid of the server that runs now (0: none), for a watchdog that must
/// not leave it behind.
pub static SERVER_PID: AtomicI32 = AtomicI32::new(0);

/// Kills the server that runs now, if any (never blocks).
pub fn kill_server() {
    let pid = SERVER_PID.swap(0, SeqCst);
    if pid > 0 {
        // SAFETY: a signal to a process this binary started.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

pub struct RedisServer {
    pub port: u16,
    password: Option<String>,
    child: Option<Child>,
}

/// A loopback port that nothing listens on now.
pub fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
    l.local_addr().unwrap().port()
}

impl RedisServer {
    /// A server on a free port.
    pub fn start() -> Self {
        Self::with_password(None)
    }

    /// A server that asks for `password` (the default user's).
    pub fn with_password(password: Option<&str>) -> Self {
        let mut s = Self {
            port: free_port(),
            password: password.map(str::to_owned),
            child: None,
        };
        s.launch();
        s
    }

    /// The URL of the server (with its password, if it has one).
    pub fn url(&self) -> String {
        match &self.password {
            Some(p) => format!("redis://:{p}@127.0.0.1:{}/0", self.port),
            None => format!("redis://127.0.0.1:{}/0", self.port),
        }
    }

    fn launch(&mut self) {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--daemonize", "no", "--loglevel", "warning"])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        if let Some(p) = &self.password {
            cmd.args(["--requirepass", p]);
        }
        let child = cmd
            .spawn()
            .expect("redis-server (Debian package redis-server; `make deps` installs it)");
        SERVER_PID.store(child.id() as i32, SeqCst);
        self.child = Some(child);
        let t0 = Instant::now();
        while !self.answers() {
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "redis-server did not answer on port {} within 10 s",
                self.port
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Whether the server answers PING (with AUTH first if it has a
    /// password).
    pub fn answers(&self) -> bool {
        let Ok(mut s) = TcpStream::connect(("127.0.0.1", self.port)) else {
            return false;
        };
        let _ = s.set_read_timeout(Some(Duration::from_millis(500)));
        let mut req = String::new();
        if let Some(p) = &self.password {
            req.push_str(&format!("AUTH {p}\r\n"));
        }
        req.push_str("PING\r\n");
        if s.write_all(req.as_bytes()).is_err() {
            return false;
        }
        let mut r = BufReader::new(s);
        let mut line = String::new();
        loop {
            line.clear();
            if r.read_line(&mut line).unwrap_or(0) == 0 {
                return false;
            }
            if line.starts_with("+PONG") {
                return true;
            }
            if line.starts_with('-') {
                return false;
            }
        }
    }

    fn pid(&self) -> i32 {
        self.child.as_ref().map_or(0, |c| c.id() as i32)
    }

    /// SIGSTOP: the server stops answering, its connections stay open.
    pub fn freeze(&self) {
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(self.pid(), libc::SIGSTOP) };
    }

    /// SIGCONT after [`freeze`](Self::freeze).
    pub fn thaw(&self) {
        // SAFETY: a signal to our own child.
        unsafe { libc::kill(self.pid(), libc::SIGCONT) };
    }

    /// SIGKILL, and reaped: everything it held is lost.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
            SERVER_PID.store(0, SeqCst);
        }
    }

    /// Starts it again, empty, on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }

    /// Runs a command with redis-cli (for set-up only), its output.
    pub fn cli(&self, args: &[&str]) -> String {
        let mut cmd = Command::new("redis-cli");
        cmd.args(["-p", &self.port.to_string()]);
        if let Some(p) = &self.password {
            cmd.args(["-a", p, "--no-auth-warning"]);
        }
        let out = cmd.args(args).output().expect("redis-cli");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.thaw();
        self.kill();
    }
}
