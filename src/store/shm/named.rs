//! Named throttles: POSIX shared memory objects `/dev/shm/mp_throttle.<name>`
//! that unrelated processes open by name. Creating one (several processes
//! may race to), opening one (checked for its owner, its header and its
//! configuration), removing one, and the errors of each, named.

use super::{Mapping, header, map};
use crate::clock::monotonic_ns;
use crate::config::{Config, Options};
use crate::error::{Error, Result};
use std::ffi::{CStr, CString};

/// A name's object, as [`create`] found it.
pub enum Created {
    /// Made here, zeroed: the caller initialises and seals it.
    New(Mapping),
    /// Made by another process with the same configuration: its mapping,
    /// and that configuration with the caller's waiting preferences.
    Existing(Mapping, Config),
}

/// Creates the object of throttle `name` for `config`, or opens the one of
/// that name if it holds the same configuration (under the rules of
/// [`open`]): two processes that create one name at once end up with one
/// object. Errors: [`Error::Mismatch`] (exists, configured otherwise),
/// [`Error::PermissionDenied`] (exists, another user's), [`Error::System`]
/// (no room), and those of [`open`].
pub fn create(name: &str, config: &Config) -> Result<Created> {
    let shm = shm_name(name)?;
    // The name may be unlinked between our failed create and our open:
    // then create again (a few times at most: something is racing us).
    for _ in 0..8 {
        match Mapping::create_named(&shm, tail_words(config)?, config.group_shared) {
            Ok(Some(map)) => return Ok(Created::New(map)),
            Ok(None) => {}
            Err(e) => return Err(os_error(name, "create", &e)),
        }
        match open_shm(name, &shm, &config.waiting(), "create") {
            Ok((map, theirs)) if header::same_throttle(&theirs, config) => {
                return Ok(Created::Existing(map, theirs));
            }
            Ok((_, theirs)) => return Err(mismatch(name, &theirs, config)),
            Err(Error::NotFound(_)) => continue,
            Err(e) => return Err(e),
        }
    }
    Err(Error::System(format!(
        "throttle {name:?} keeps being created and removed by other processes"
    )))
}

/// Opens the existing object of throttle `name`: its mapping and the
/// configuration its header holds, with the waiting preferences of
/// `waiting` (see `Throttle::open` for the owner rules).
pub fn open(name: &str, waiting: &Options) -> Result<(Mapping, Config)> {
    open_shm(name, &shm_name(name)?, waiting, "open")
}

/// Removes the name, if the object under it belongs to this process's
/// effective uid (see [`map::unlink_own`]).
pub fn unlink(name: &str) -> Result<()> {
    map::unlink_own(&shm_name(name)?).map_err(|e| os_error(name, "unlink", &e))
}

/// Opens `shm` for `what` (open, or the create that found it made).
fn open_shm(name: &str, shm: &CStr, waiting: &Options, what: &str) -> Result<(Mapping, Config)> {
    let (map, ownership) = Mapping::open_named(shm, OPEN_PATIENCE_NS, waiting.group_shared)
        .map_err(|e| os_error(name, what, &e))?;
    let give_up = monotonic_ns().saturating_add(OPEN_PATIENCE_NS);
    while !header::sealed(&map.shared().header)? {
        if monotonic_ns() > give_up {
            return Err(Error::Corrupt(format!(
                "throttle {name:?} was never finished: the process creating it may have \
                 died; unlink the name and create it again"
            )));
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    let config = header::read(map.shared(), map.len(), waiting).map_err(|e| with_name(name, e))?;
    if let map::Ownership::Group { uid, .. } = ownership {
        if !config.group_shared {
            return Err(Error::PermissionDenied(format!(
                "cannot {what} throttle {name:?}: it belongs to another user, {}, and was \
                 not created group-shared (only its mode lets this group in)",
                map::describe_user(uid)
            )));
        }
    }
    Ok((map, config))
}

/// How long an opener waits for a creator that is still making the throttle.
const OPEN_PATIENCE_NS: i64 = 2_000_000_000;

/// Longest throttle name, in bytes.
pub const MAX_NAME_LEN: usize = 200;

/// What a throttle's object is called in `/dev/shm`, before its name.
const PREFIX: &str = "mp_throttle.";

/// A named throttle as [`list`] finds it: its name, and the uid that owns
/// its object, with that user's name if the user database has one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listed {
    /// The throttle's name (what `open` takes).
    pub name: String,
    /// The owner's uid.
    pub uid: u32,
    /// `uid N (name)`, or `uid N`.
    pub owner: String,
}

/// The named throttles that exist on this machine, every user's, sorted by
/// name: the objects of `/dev/shm` named `mp_throttle.<name>`, as `lstat`
/// sees them (a link or a directory is left out). Nothing is opened: open
/// one to read its configuration. Errors: [`Error::System`] (`/dev/shm`
/// cannot be read).
pub fn list() -> Result<Vec<Listed>> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let dir = std::fs::read_dir("/dev/shm")
        .map_err(|e| Error::System(format!("cannot list /dev/shm: {e}")))?;
    let mut found = Vec::new();
    for entry in dir.flatten() {
        let file = entry.file_name();
        let Some(name) = file.to_str().and_then(|f| f.strip_prefix(PREFIX)) else {
            continue;
        };
        let Ok(meta) = entry.metadata() else {
            continue; // removed meanwhile
        };
        let kind = meta.file_type();
        if !kind.is_file() || kind.is_fifo() || shm_name(name).is_err() {
            continue;
        }
        found.push(Listed {
            name: name.to_owned(),
            uid: meta.uid(),
            owner: map::describe_user(meta.uid()),
        });
    }
    found.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(found)
}

/// The POSIX shared memory name of throttle `name`: `/mp_throttle.<name>`.
fn shm_name(name: &str) -> Result<CString> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && !name.contains('/')
        && name != "."
        && name != "..";
    if !ok {
        return Err(Error::InvalidArgument(format!(
            "a throttle name is 1 to {MAX_NAME_LEN} bytes without '/' (got {name:?})"
        )));
    }
    CString::new(format!("/{PREFIX}{name}"))
        .map_err(|_| Error::InvalidArgument("a throttle name has no NUL byte".into()))
}

/// The error for a failed `what` (create, open, unlink) of throttle `name`.
fn os_error(name: &str, what: &str, e: &std::io::Error) -> Error {
    match e.raw_os_error() {
        Some(libc::ENOENT) => Error::NotFound(format!("no throttle is named {name:?}")),
        Some(libc::EACCES | libc::EPERM) => Error::PermissionDenied(format!(
            "cannot {what} throttle {name:?}: {e} (its mode does not let this process in: it \
             belongs to another user)"
        )),
        Some(libc::ENOSPC | libc::ENOMEM | libc::EFBIG | libc::EMFILE | libc::ENFILE) => {
            Error::System(format!(
                "cannot {what} throttle {name:?}: {e} (/dev/shm full, or a memory or file \
                 limit reached)"
            ))
        }
        _ if e.kind() == std::io::ErrorKind::InvalidData => {
            Error::Corrupt(format!("throttle {name:?} is corrupt or foreign: {e}"))
        }
        // A refusal of map.rs (an object of another user), which names the
        // owner.
        None if e.kind() == std::io::ErrorKind::PermissionDenied => {
            Error::PermissionDenied(format!("cannot {what} throttle {name:?}: {e}"))
        }
        _ => Error::System(format!("cannot {what} throttle {name:?}: {e}")),
    }
}

/// The refusal of a create_named whose name holds a throttle configured
/// otherwise than `asked`.
fn mismatch(name: &str, theirs: &Config, asked: &Config) -> Error {
    let schedule = theirs.schedule;
    let sharing = if theirs.group_shared == asked.group_shared {
        ""
    } else if theirs.group_shared {
        " (it is group-shared, and group sharing was not asked)"
    } else {
        " (it is not group-shared, and group sharing was asked)"
    };
    let kind = match (theirs.keys, asked.keys) {
        (0, 0) => String::new(),
        (0, _) => " (a plain throttle, not a keyed one)".into(),
        (_, 0) => " (a keyed throttle, not a plain one)".into(),
        (t, a) if t != a => format!(" (a keyed throttle of {t} keys, not {a})"),
        _ => String::new(),
    };
    Error::Mismatch(format!(
        "throttle {name:?} exists as {} per {} ns ({:?}){kind} with other options than \
         asked{sharing}; open it to adopt its configuration, or unlink it",
        schedule.rate().max_n(),
        schedule.rate().per_ns(),
        schedule.hardcap()
    ))
}

fn with_name(name: &str, e: Error) -> Error {
    match e {
        Error::Corrupt(m) => Error::Corrupt(format!("throttle {name:?}: {m}")),
        Error::Unsupported(m) => Error::Unsupported(format!("throttle {name:?}: {m}")),
        other => other,
    }
}

/// The words that follow the shared state for `config`.
pub(super) fn tail_words(config: &Config) -> Result<u64> {
    config
        .tail_words()
        .ok_or_else(|| Error::InvalidArgument("the throttle does not fit in memory".into()))
}
