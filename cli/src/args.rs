//! The command line, as clap reads it (and as the man page and the shell
//! completions describe it).

use crate::units::{self, Rate};
use clap::{Parser, Subcommand, ValueEnum};
use std::ffi::OsString;
use std::path::PathBuf;
use std::time::Duration;

/// The exit statuses, for `--help` and the man page.
pub const EXIT_STATUSES: &str = "\
Exit status:
  0  done (acquire: the fuel was granted)
  1  another failure (the message says which)
  2  bad usage or a bad argument (a rate, a name, a unit count)
  3  timeout: no fuel came before --timeout
  4  killed: the throttle was stopped or killed (its kill flag is set)
  5  no throttle has that name
  6  permission denied: the throttle belongs to another user
  7  a throttle of that name exists with another configuration
  8  --redis: the Redis server cannot be reached
  run: the command's own status; 126 if it cannot be run, 127 if not found";

#[derive(Debug, Parser)]
#[command(
    name = "mpt",
    version,
    about = "Throttle shell jobs through one shared rate, and watch them",
    long_about = "Throttle shell jobs through one shared rate, and watch them.\n\n\
        mpt works on mp_throttle's named throttles (/dev/shm/mp_throttle.NAME): \
        every process of the same user shares one by its name, whatever \
        language it is written in; with --redis URL (or MPT_REDIS_URL), on \
        throttles held in a Redis server, shared by processes on every host. \
        Create one, start it, then let each job wait for its fuel with \
        `mpt acquire` or `mpt run`.",
    after_help = EXIT_STATUSES
)]
pub struct Cli {
    /// Work on the throttles in the Redis server at URL
    /// (`redis://[user[:password]@]host[:port][/db]`) instead of this
    /// machine's named throttles: processes on every host that use the same
    /// URL and name share one rate. Without it, no connection is made.
    #[arg(long, global = true, env = "MPT_REDIS_URL", value_name = "URL")]
    pub redis: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a named throttle (stopped until `mpt start`, or --start).
    ///
    /// Creating a name that exists with the same configuration is not an
    /// error: it is shared.
    Create {
        /// The throttle's name (1 to 200 bytes, no '/').
        name: String,
        /// Its rate: COUNT/PERIOD, e.g. 10/s, 600/min, 5/250ms, 1MB/s.
        #[arg(value_parser = rate)]
        rate: Rate,
        /// How much fuel may pile up while nobody takes it.
        #[arg(long, value_enum, default_value_t = HardcapArg::Limit)]
        hardcap: HardcapArg,
        /// Start it at once.
        #[arg(long)]
        start: bool,
        /// Let the members of your group open it too (they ask for it with
        /// --group-shared).
        #[arg(long)]
        group_shared: bool,
    },
    /// Remove a named throttle (processes that use it go on until they let
    /// go).
    Rm {
        /// The throttle's name.
        name: String,
    },
    /// List the named throttles: name, rate, hardcap, state, owner.
    Ls {
        /// One JSON object per throttle, in an array.
        #[arg(long)]
        json: bool,
    },
    /// Wait for fuel: exit 0 once it is granted (3 on timeout, 4 if
    /// killed).
    ///
    /// Waiters are served in the order they came, across processes. Before
    /// the throttle starts, it waits for the start.
    Acquire {
        /// The throttle's name.
        name: String,
        #[command(flatten)]
        take: Take,
    },
    /// Wait for fuel, then run COMMAND in mpt's place (its exit status and
    /// signals are its own).
    Run {
        /// The throttle's name.
        name: String,
        #[command(flatten)]
        take: Take,
        /// The command and its arguments, after `--`.
        #[arg(last = true, required = true, value_name = "COMMAND")]
        command: Vec<OsString>,
    },
    /// Start (or resume) a throttle: fuel flows from now on.
    Start {
        /// The throttle's name.
        name: String,
    },
    /// Stop (pause) a throttle, ending every wait (exit 4), and print its
    /// totals.
    Stop {
        /// The throttle's name.
        name: String,
        /// Print the totals as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Set the kill flag: every wait ends (exit 4) until the next start.
    Kill {
        /// The throttle's name.
        name: String,
    },
    /// Change the rate of a throttle, for every process, at once.
    Set {
        /// The throttle's name.
        name: String,
        /// The new rate: COUNT/PERIOD, e.g. 10/s.
        #[arg(value_parser = rate)]
        rate: Rate,
    },
    /// Print a throttle's figures: once, as JSON, in Prometheus' text
    /// format, or live (--watch).
    Stats {
        /// The throttle's name.
        name: String,
        /// The output format.
        #[arg(long, value_enum, default_value_t = Format::Text)]
        format: Format,
        /// The same as --format json.
        #[arg(long, conflicts_with = "format")]
        json: bool,
        /// Print them again every --interval: a live view on a terminal
        /// (q quits), plain lines otherwise.
        #[arg(long)]
        watch: bool,
        /// How often --watch looks.
        #[arg(long, default_value = "1s", value_parser = duration)]
        interval: Duration,
        /// Without --watch: how long to count emissions for the current
        /// rate (0: leave it out).
        #[arg(long, default_value = "1s", value_parser = duration)]
        sample: Duration,
    },
    /// Write the man page and the shell completions into DIR (make
    /// install runs it).
    #[command(hide = true)]
    Generate {
        /// Where to write mpt.1, mpt-SUBCOMMAND.1, mpt.bash, _mpt (zsh)
        /// and mpt.fish.
        dir: PathBuf,
    },
}

/// How much fuel to take, and how long to wait for it.
#[derive(Debug, clap::Args)]
pub struct Take {
    /// Units of fuel to take at once (e.g. bytes, with a rate in MB/s).
    #[arg(short = 'n', long = "units", default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub units: u64,
    /// Give up after this long (exit 3): e.g. 2s, 500ms; 0 takes only what
    /// is there now. Default: wait as long as it takes.
    #[arg(long, value_parser = duration)]
    pub timeout: Option<Duration>,
    /// Ask for group sharing (to open a throttle made with --group-shared
    /// by another user of your group).
    #[arg(long)]
    pub group_shared: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum HardcapArg {
    /// At most max_n units pile up (a bucket of max_n).
    Limit,
    /// At most one unit piles up: grants are evenly spaced.
    One,
    /// No limit: what was not taken can all be taken later.
    None,
    /// Never more than max_n grants in any window of the period.
    Window,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Lines for people.
    Text,
    /// One JSON object.
    Json,
    /// Prometheus' text exposition format (node_exporter's textfile
    /// collector takes it as is).
    Prometheus,
}

fn rate(text: &str) -> Result<Rate, String> {
    units::parse_rate(text)
}

fn duration(text: &str) -> Result<Duration, String> {
    units::parse_duration(text)
}
