//! `mpt`: mp_throttle from the shell. Creates, lists and removes named
//! throttles (or, with `--redis URL`, throttles held in Redis), takes fuel
//! for shell jobs (`acquire`, `run`), controls them (`start`, `stop`,
//! `kill`, `set`) and prints their figures (`stats`: text, JSON,
//! Prometheus, or a live view). `mpt --help` lists the exit statuses.

mod args;
mod stats;
mod units;

use args::{Cli, Command, HardcapArg, Take};
use clap::{CommandFactory, Parser};
use mp_throttle::{Error, Hardcap, Options, Throttle};
use std::os::unix::process::CommandExt;
use std::process::ExitCode;

/// A failure: the line to print and the exit status.
struct Failure {
    message: String,
    status: u8,
}

impl Failure {
    /// `what` failed because of `e`; the status says which way.
    fn of(what: &str, e: &Error) -> Self {
        let status = match e {
            Error::InvalidArgument(_) => 2,
            Error::Timeout => 3,
            Error::Killed => 4,
            Error::NotFound(_) => 5,
            Error::PermissionDenied(_) => 6,
            Error::Mismatch(_) => 7,
            Error::Unreachable(_) => 8,
            _ => 1,
        };
        Self {
            message: format!("{what}: {e}"),
            status,
        }
    }

    fn other(message: String) -> Self {
        Self { message, status: 1 }
    }
}

type Done = Result<(), Failure>;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => e.exit(), // --help, --version
        Err(e) => {
            // One line, as every other failure: clap's message (the lines
            // before its usage, joined), and where to read more.
            let text = e.render().to_string();
            let said: Vec<&str> = text
                .lines()
                .map(str::trim)
                .take_while(|l| !l.is_empty() && !l.starts_with("Usage:"))
                .collect();
            let said = said.join(" ");
            let said = said.strip_prefix("error: ").unwrap_or(&said);
            eprintln!("mpt: {said} (mpt --help)");
            return ExitCode::from(2);
        }
    };
    match run(cli.command, cli.redis.as_deref()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("mpt: {}", f.message);
            ExitCode::from(f.status)
        }
    }
}

/// `redis`: the URL of `--redis` (throttles in that Redis server), or
/// `None` (this machine's named throttles).
fn run(command: Command, redis: Option<&str>) -> Done {
    match command {
        Command::Create {
            name,
            rate,
            hardcap,
            start,
            group_shared,
        } => create(&name, rate, hardcap, start, group_shared, redis),
        Command::Rm { name } => match redis {
            Some(url) => Throttle::unlink_url(url, &name),
            None => Throttle::unlink(&name),
        }
        .map_err(|e| Failure::of(&format!("rm {name}"), &e)),
        Command::Ls { json } => stats::list(json, redis),
        Command::Acquire { name, take } => acquire(&name, &take, redis).map(|_| ()),
        Command::Run {
            name,
            take,
            command,
        } => {
            let throttle = acquire(&name, &take, redis)?;
            drop(throttle);
            // In mpt's place: the command's status and signals are its own.
            let e = std::process::Command::new(&command[0])
                .args(&command[1..])
                .exec();
            let status = if e.kind() == std::io::ErrorKind::NotFound {
                127
            } else {
                126
            };
            Err(Failure {
                message: format!("run: cannot run {:?}: {e}", command[0]),
                status,
            })
        }
        Command::Start { name } => {
            let t = open(&name, false, redis)?;
            t.start()
                .map_err(|e| Failure::of(&format!("start {name}"), &e))
        }
        Command::Stop { name, json } => {
            let t = open(&name, false, redis)?;
            let s = t
                .stop()
                .map_err(|e| Failure::of(&format!("stop {name}"), &e))?;
            stats::print_summary(&name, &s, json);
            Ok(())
        }
        Command::Kill { name } => {
            open(&name, false, redis)?.kill();
            Ok(())
        }
        Command::Set { name, rate } => {
            let t = open(&name, false, redis)?;
            t.set_rate(rate.max_n, rate.per)
                .map_err(|e| Failure::of(&format!("set {name} {rate}"), &e))
        }
        Command::Stats {
            name,
            format,
            json,
            watch,
            interval,
            sample,
        } => {
            let format = if json { args::Format::Json } else { format };
            let t = open(&name, false, redis)?;
            if watch {
                stats::watch(&name, &t, format, interval)
            } else {
                stats::once(&name, &t, format, sample)
            }
        }
        Command::Generate { dir } => generate(&dir),
    }
}

fn create(
    name: &str,
    rate: units::Rate,
    hardcap: HardcapArg,
    start: bool,
    group_shared: bool,
    redis: Option<&str>,
) -> Done {
    let hardcap = match hardcap {
        HardcapArg::Limit => Hardcap::Limit,
        HardcapArg::One => Hardcap::One,
        HardcapArg::None => Hardcap::None,
        HardcapArg::Window => Hardcap::Window,
    };
    // No monitor thread: the process that starts a throttle from the shell
    // exits at once. `mpt stats` counts the emissions itself; every grant
    // counts one (auto_emit).
    let options = Options::new()
        .hardcap(hardcap)
        .monitor(false)
        .auto_emit(true)
        .group_shared(group_shared);
    let what = format!("create {name} {rate}");
    let t = match redis {
        Some(_) if group_shared => {
            return Err(Failure {
                message: format!(
                    "{what}: --group-shared is for this machine's named throttles; a throttle \
                     in Redis is shared by whoever reaches the server"
                ),
                status: 2,
            });
        }
        Some(url) => Throttle::connect(url, name, rate.max_n, rate.per, &options),
        None => Throttle::create_named(name, rate.max_n, rate.per, &options),
    }
    .map_err(|e| Failure::of(&what, &e))?;
    if start {
        match t.start() {
            Ok(()) => {}
            // It existed and runs already: that is what was asked.
            Err(Error::WrongState(_)) if !t.created() && t.is_running() => {}
            Err(e) => return Err(Failure::of(&format!("{what} --start"), &e)),
        }
    }
    Ok(())
}

fn open(name: &str, group_shared: bool, redis: Option<&str>) -> Result<Throttle, Failure> {
    let options = Options::new().group_shared(group_shared);
    match redis {
        Some(url) => Throttle::open_url(url, name, &options),
        None => Throttle::open_with(name, &options),
    }
    .map_err(|e| Failure::of(&format!("open {name}"), &e))
}

/// Waits for the fuel `take` asks of throttle `name`: the open throttle
/// once granted.
fn acquire(name: &str, take: &Take, redis: Option<&str>) -> Result<Throttle, Failure> {
    let t = open(name, take.group_shared, redis)?;
    t.await_fuel_n(take.units, take.timeout)
        .map_err(|e| Failure::of(&format!("acquire {name}"), &e))?;
    Ok(t)
}

/// The man page and the completions, into `dir`.
fn generate(dir: &std::path::Path) -> Done {
    let io = |what: &str, e: std::io::Error| Failure::other(format!("generate {what}: {e}"));
    std::fs::create_dir_all(dir).map_err(|e| io(&dir.display().to_string(), e))?;
    let cmd = Cli::command();
    let mut pages = vec![("mpt.1".to_string(), cmd.clone())];
    // A page per subcommand, as `git` has: mpt-acquire.1, ...
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("mpt-{}", sub.get_name());
        let sub = sub
            .clone()
            .name(name.clone())
            .version(env!("CARGO_PKG_VERSION"));
        pages.push((format!("{name}.1"), sub));
    }
    for (file, page) in pages {
        let mut out = Vec::new();
        clap_mangen::Man::new(page)
            .render(&mut out)
            .map_err(|e| io(&file, e))?;
        std::fs::write(dir.join(&file), out).map_err(|e| io(&file, e))?;
    }
    for (shell, file) in [
        (clap_complete::Shell::Bash, "mpt.bash"),
        (clap_complete::Shell::Zsh, "_mpt"),
        (clap_complete::Shell::Fish, "mpt.fish"),
    ] {
        let mut out = Vec::new();
        clap_complete::generate(shell, &mut Cli::command(), "mpt", &mut out);
        std::fs::write(dir.join(file), out).map_err(|e| io(file, e))?;
    }
    Ok(())
}
