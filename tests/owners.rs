//! Whose a named throttle is (the issue "Another user's named throttle is
//! adopted"): `/dev/shm` is writable by every user, so anyone may make
//! `mp_throttle.<name>` first. `mpt_throttle_create_named`,
//! `mpt_throttle_open` and `mpt_throttle_unlink` use only an object of the
//! caller's effective uid (root included), checked with `fstat` on the
//! opened object before anything is mapped; another user's object only if
//! both sides asked for group sharing (`mpt_options.group_shared`: made so,
//! mode 0660, a group of the opener).
//!
//! Needs root, to become other users: forked children `setgroups`,
//! `setgid` and `setuid` to `nobody` (65534), to 4242 (gid 4242, no name)
//! and, for group sharing, to 4242 with gid 4343 (the shared group G) and
//! to 4244 (gid 4244, supplementary group G). Not root: with `CI` set the
//! binary fails, otherwise it prints "SKIPPED: ..." and exits 0 (cargo
//! test would count 77 as a failure); `make test` reports the cargo test
//! suite as having skipped part of itself.
//!
//! - `planted_throttle_is_refused`: another user makes the name with the
//!   library and chmods it 0666; root and a third user call create_named
//!   and open (with and without group sharing): PERMISSION_DENIED naming
//!   the owner (uid, and user name when there is one), no handle, the
//!   object untouched.
//! - `planted_garbage_is_refused`: the same with a raw object of garbage,
//!   and with a FIFO, planted by another user; root's own FIFO is refused
//!   as CORRUPT at once (not a regular file).
//! - `truncation_cannot_sigbus`: the attack of the issue. The owner
//!   truncates its object after the victim (nobody, then root) tried to
//!   adopt it; the victim, refused, never mapped it (its /proc/self/maps
//!   says so) and lives.
//! - `unlink_of_another_users_throttle_is_refused`: root and a third user
//!   are refused, the object stays; its owner removes it.
//! - `group_sharing_is_opt_in_on_both_sides`: a throttle created
//!   group-shared (mode 0660, gid G) is opened and used (fuel taken) by a
//!   member of G that asks for group sharing; refused to one that does not
//!   ask, to a user outside G, and to root (outside G); a create_named that
//!   differs in group sharing from the creator's own throttle is MISMATCH.
//! - `group_mode_and_header_must_agree`: a throttle made group-shared but
//!   chmodded 0666, and one made private but chmodded 0660 (group G), are
//!   refused to a member of G asking for group sharing.
//! - `failed_creation_keeps_its_error`: a creation whose reservation fails
//!   (EFBIG: a file size limit) while another process removes the name
//!   reports the failure (SYSTEM), not the clean-up's NOT_FOUND.
//!
//! `harness = false`: tests that `fork()` run one at a time
//! on the main thread under the watchdog of tests/common. Names have this
//! process's pid in them and are removed at the end (also on failure).
//!
//! Run one test, or those whose name contains a word:
//! `cargo test --test owners -- group`.

mod common;

use common::{Kids, MS, Overrun, SEC, Shm, Test, TestResult, check, note, now, sleep_ms};
use mp_throttle::config::{Config, Options};
use mp_throttle::error::Error;
use mp_throttle::ffi::MptStatus;
use mp_throttle::ffi::options::{MPT_OPTIONS_VERSION, MptOptions, mpt_options_init};
use mp_throttle::ffi::throttle::{
    MptThrottle, mpt_await_fuel, mpt_get_options, mpt_start, mpt_throttle_create_named,
    mpt_throttle_created, mpt_throttle_free, mpt_throttle_open, mpt_throttle_unlink,
};
use mp_throttle::throttle::Throttle;
use std::ffi::CString;
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::sync::atomic::AtomicPtr;
use std::sync::atomic::Ordering::SeqCst;

// ---------------------------------------------------------------- users

/// A user a child becomes: uid, effective gid, supplementary groups.
#[derive(Clone, Copy)]
struct Who {
    what: &'static str,
    uid: u32,
    gid: u32,
    groups: &'static [u32],
}

/// The shared group G of the group-sharing tests.
const G: u32 = 4343;

const NOBODY: Who = Who {
    what: "nobody (65534)",
    uid: 65534,
    gid: 65534,
    groups: &[],
};
/// A spare user without a name in the user database.
const SPARE: Who = Who {
    what: "uid 4242",
    uid: 4242,
    gid: 4242,
    groups: &[],
};
/// The same spare user, in group G (its effective group): creates
/// group-shared throttles of group G.
const SPARE_IN_G: Who = Who {
    what: "uid 4242 (gid G)",
    uid: 4242,
    gid: G,
    groups: &[],
};
/// A member of G by a supplementary group.
const MEMBER: Who = Who {
    what: "uid 4244 (member of G)",
    uid: 4244,
    gid: 4244,
    groups: &[G],
};
/// Root without supplementary groups: still root, not in G.
const ROOT: Who = Who {
    what: "root (a child)",
    uid: 0,
    gid: 0,
    groups: &[],
};

/// Becomes `who` for good (in a forked child).
fn become_user(who: Who) -> Result<(), String> {
    // SAFETY: the list is valid for its length; this child is
    // single-threaded.
    let groups = unsafe { libc::setgroups(who.groups.len(), who.groups.as_ptr()) };
    // SAFETY: plain system calls.
    let gid = unsafe { libc::setgid(who.gid) };
    // SAFETY: as above.
    let uid = unsafe { libc::setuid(who.uid) };
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    // SAFETY: getegid has no preconditions.
    let egid = unsafe { libc::getegid() };
    if groups == 0 && gid == 0 && uid == 0 && euid == who.uid && egid == who.gid {
        Ok(())
    } else {
        Err(format!(
            "cannot become {}: {}",
            who.what,
            std::io::Error::last_os_error()
        ))
    }
}

// ---------------------------------------------------------------- children

/// Text a child writes and its parent reads (a `MAP_SHARED` buffer).
struct Text(Shm);

impl Text {
    const WORDS: usize = 512;

    fn new() -> Text {
        Text(Shm::new(Text::WORDS + 1))
    }

    fn set(&self, s: &str) {
        let bytes = &s.as_bytes()[..s.len().min((Text::WORDS - 1) * 8)];
        for (i, chunk) in bytes.chunks(8).enumerate() {
            let mut w = [0u8; 8];
            w[..chunk.len()].copy_from_slice(chunk);
            self.0.set(i + 1, i64::from_le_bytes(w));
        }
        self.0.set(0, bytes.len() as i64);
    }

    fn get(&self) -> String {
        let len = self.0.get(0) as usize;
        let mut bytes: Vec<u8> = (0..len.div_ceil(8))
            .flat_map(|i| self.0.get(i + 1).to_le_bytes())
            .collect();
        bytes.truncate(len);
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

/// Forks a child that becomes `who` and runs `body`; its error, if any,
/// comes back through `text`.
fn spawn_as(
    kids: &mut Kids,
    who: Who,
    text: &Text,
    body: impl FnOnce() -> Result<(), String>,
) -> libc::pid_t {
    kids.spawn(|| {
        let r = become_user(who).and_then(|()| body());
        match r {
            Ok(()) => 0,
            Err(e) => {
                text.set(&e);
                1
            }
        }
    })
}

/// Runs `body` in a child that is `who`, and waits for it (10 s at most).
fn as_user(who: Who, body: impl FnOnce() -> Result<(), String>) -> TestResult {
    let text = Text::new();
    let mut kids = Kids::new();
    let pid = spawn_as(&mut kids, who, &text, body);
    finish(&mut kids, pid, who, &text)
}

/// The outcome of a child of [`spawn_as`].
fn finish(kids: &mut Kids, pid: libc::pid_t, who: Who, text: &Text) -> TestResult {
    match kids.wait(pid, 10 * SEC) {
        Ok(0) => Ok(()),
        Ok(code) => Err(format!("as {}: {} (exit {code})", who.what, text.get())),
        Err(e) => Err(format!("as {}: {e}", who.what)),
    }
}

// ---------------------------------------------------------------- names

/// A throttle name unique to this process and test. Its object is removed
/// on drop, directly (root may remove anyone's; the library refuses).
struct Name(String);

impl Name {
    fn new(tag: &str) -> Name {
        let name = Name(format!("owners-test.{}.{tag}", std::process::id()));
        let _ = std::fs::remove_file(name.path());
        name
    }

    fn path(&self) -> String {
        format!("/dev/shm/mp_throttle.{}", self.0)
    }

    fn c(&self) -> CString {
        CString::new(self.0.as_str()).expect("no NUL in test names")
    }

    fn shm(&self) -> CString {
        CString::new(format!("/mp_throttle.{}", self.0)).expect("no NUL")
    }

    /// `(uid, gid, mode, inode, size)` of the object, from the path.
    fn stat(&self) -> Result<(u32, u32, u32, u64, u64), String> {
        let m = std::fs::symlink_metadata(self.path())
            .map_err(|e| format!("stat {}: {e}", self.path()))?;
        Ok((
            m.uid(),
            m.gid(),
            m.permissions().mode() & 0o7777,
            m.ino(),
            m.size(),
        ))
    }

    fn bytes(&self) -> Result<Vec<u8>, String> {
        std::fs::read(self.path()).map_err(|e| format!("read {}: {e}", self.path()))
    }

    fn chmod(&self, mode: u32) -> Result<(), String> {
        std::fs::set_permissions(self.path(), std::fs::Permissions::from_mode(mode))
            .map_err(|e| format!("chmod {:o} {}: {e}", mode, self.path()))
    }
}

impl Drop for Name {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.path());
    }
}

// ---------------------------------------------------------------- the C API

/// Options of version `MPT_OPTIONS_VERSION` with group sharing on or off.
// OPTS-BEGIN (the run against the code before group sharing replaces this)
fn opts(group_shared: bool) -> MptOptions {
    let mut o = MptOptions::default();
    // SAFETY: `o` is valid for writing one mpt_options.
    let st = unsafe { mpt_options_init(&mut o, MPT_OPTIONS_VERSION) };
    assert_eq!(st, MptStatus::Ok);
    o.group_shared = u32::from(group_shared);
    o
}
// OPTS-END

/// What a call of the C API gave: its status, the handle it wrote (NULL if
/// none) and the message of a failure.
struct Got {
    st: MptStatus,
    h: *mut MptThrottle,
    msg: String,
}

impl Got {
    fn new(st: MptStatus, h: *mut MptThrottle) -> Got {
        let msg = if st == MptStatus::Ok {
            String::new()
        } else {
            common::last_error()
        };
        Got { st, h, msg }
    }

    /// Whether the handle says it created the throttle.
    fn created(&self) -> bool {
        let mut c = false;
        // SAFETY: a live handle (checked non-NULL); `c` valid for writing.
        !self.h.is_null() && unsafe { mpt_throttle_created(self.h, &mut c) } == MptStatus::Ok && c
    }

    /// Frees the handle, if any.
    fn free(&mut self) {
        if !self.h.is_null() {
            // SAFETY: a handle this process owns, freed once.
            unsafe { mpt_throttle_free(self.h) };
            self.h = std::ptr::null_mut();
        }
    }

    /// `Ok` if the call was refused with PERMISSION_DENIED, wrote no handle
    /// and said whose the object is (`owner`, e.g. "uid 4242").
    fn denied(mut self, call: &str, owner: &str) -> Result<(), String> {
        let adopted = !self.h.is_null();
        let created = self.created();
        self.free();
        if self.st == MptStatus::PermissionDenied
            && !adopted
            && self.msg.contains("another user")
            && self.msg.contains(owner)
        {
            return Ok(());
        }
        Err(format!(
            "{call}: {:?}{}{} (expected PERMISSION_DENIED naming {owner}): {:?}",
            self.st,
            if adopted { ", a handle written" } else { "" },
            if created {
                " that says it created the throttle"
            } else if adopted {
                " that adopted the object"
            } else {
                ""
            },
            self.msg
        ))
    }
}

impl Drop for Got {
    fn drop(&mut self) {
        self.free();
    }
}

fn create(name: &Name, max_n: u64, o: Option<&MptOptions>) -> Got {
    let mut h: *mut MptThrottle = std::ptr::null_mut();
    let c = name.c();
    let o = o.map_or(std::ptr::null(), |o| o as *const MptOptions);
    // SAFETY: a NUL-terminated name, options NULL or valid, `h` writable.
    let st = unsafe { mpt_throttle_create_named(c.as_ptr(), max_n, 1.0, o, &mut h) };
    Got::new(st, h)
}

fn open(name: &Name, o: Option<&MptOptions>) -> Got {
    let mut h: *mut MptThrottle = std::ptr::null_mut();
    let c = name.c();
    let o = o.map_or(std::ptr::null(), |o| o as *const MptOptions);
    // SAFETY: as in `create`.
    let st = unsafe { mpt_throttle_open(c.as_ptr(), o, &mut h) };
    Got::new(st, h)
}

fn unlink(name: &Name) -> (MptStatus, String) {
    let c = name.c();
    // SAFETY: a NUL-terminated name.
    let st = unsafe { mpt_throttle_unlink(c.as_ptr()) };
    (
        st,
        if st == MptStatus::Ok {
            String::new()
        } else {
            common::last_error()
        },
    )
}

/// Creates `name` (5 per second) through the C API with `o`, as the caller,
/// and leaves it (the handle is freed; the object stays).
fn make(name: &Name, o: &MptOptions) -> Result<(), String> {
    let got = create(name, 5, Some(o));
    if got.st != MptStatus::Ok || !got.created() {
        return Err(format!(
            "create_named {}: {:?} (created {}) {}",
            name.0,
            got.st,
            got.created(),
            got.msg
        ));
    }
    Ok(())
}

/// Every way to use another user's object `name`: create_named and open,
/// without and with group sharing asked; each must be refused naming
/// `owner`.
fn all_refused(name: &Name, owner: &str) -> Result<(), String> {
    let mut bad = Vec::new();
    for group in [false, true] {
        let o = opts(group);
        let calls = [
            ("create_named", create(name, 5, Some(&o))),
            ("open", open(name, Some(&o))),
        ];
        for (call, got) in calls {
            if let Err(e) = got.denied(&format!("{call} (group_shared {group})"), owner) {
                bad.push(e);
            }
        }
    }
    if let Err(e) = open(name, None).denied("open (NULL options)", owner) {
        bad.push(e);
    }
    if bad.is_empty() {
        Ok(())
    } else {
        Err(bad.join("; "))
    }
}

/// Whether this process maps the object of `name`.
fn maps(name: &Name) -> bool {
    std::fs::read_to_string("/proc/self/maps")
        .map(|m| m.contains(&format!("mp_throttle.{}", name.0)))
        .unwrap_or(true)
}

// ---------------------------------------------------------------- tests

/// Another user (4242, then nobody) creates the name with the library and
/// makes it 0666; root and the other user are refused, whatever they ask,
/// and the object is left as it was.
fn planted_throttle_is_refused() -> TestResult {
    for (planter, owner, other) in [
        (SPARE, "uid 4242", NOBODY),
        (NOBODY, "uid 65534 (nobody)", SPARE),
    ] {
        let n = Name::new(&format!("planted-{}", planter.uid));
        as_user(planter, || {
            make(&n, &opts(false))?;
            n.chmod(0o666)
        })?;
        let before = (n.stat()?, n.bytes()?);
        check!(
            before.0.0 == planter.uid && before.0.2 == 0o666,
            "{}: uid {}, mode {:o}",
            n.path(),
            before.0.0,
            before.0.2
        );
        all_refused(&n, owner).map_err(|e| format!("root, {}'s throttle: {e}", planter.what))?;
        as_user(other, || all_refused(&n, owner))?;
        // The Rust API says the same.
        let r = Throttle::create_named(&n.0, Config::new(5, 1.0, &Options::default()).unwrap());
        check!(
            matches!(&r, Err(Error::PermissionDenied(m)) if m.contains(owner)),
            "Throttle::create_named as root: {:?}",
            r.map(|t| t.created())
        );
        check!(!maps(&n), "root maps {}", n.path());
        let after = (n.stat()?, n.bytes()?);
        check!(
            after == before,
            "{}'s object changed: {:?} -> {:?} (or its bytes did)",
            planter.what,
            before.0,
            after.0
        );
    }
    note!("create_named and open (group sharing asked or not) refused to root and to a third user");
    let n = Name::new("message");
    as_user(NOBODY, || {
        make(&n, &opts(false))?;
        n.chmod(0o666)
    })?;
    note!("root's create_named: {:?}", create(&n, 5, None).msg);
    Ok(())
}

/// Not a throttle at all: garbage in a raw shared memory object, and a
/// FIFO, planted by another user with mode 0666. Refused as another user's
/// (not opened to find out it is garbage). Root's own FIFO: CORRUPT, at once.
fn planted_garbage_is_refused() -> TestResult {
    let raw = Name::new("garbage");
    as_user(SPARE, || {
        let c = raw.shm();
        // SAFETY: a NUL-terminated name; valid flags and mode.
        let fd = unsafe {
            libc::shm_open(
                c.as_ptr(),
                libc::O_RDWR | libc::O_CREAT | libc::O_EXCL | libc::O_CLOEXEC,
                0o666,
            )
        };
        if fd < 0 {
            return Err(format!("shm_open: {}", std::io::Error::last_os_error()));
        }
        // SAFETY: a descriptor just opened, closed once.
        unsafe { libc::close(fd) };
        raw.chmod(0o666)?;
        let garbage: Vec<u8> = (0..1 << 20)
            .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        std::fs::write(raw.path(), garbage).map_err(|e| format!("write: {e}"))
    })?;
    let fifo = Name::new("fifo");
    as_user(SPARE, || {
        let path = CString::new(fifo.path()).expect("no NUL");
        // SAFETY: a NUL-terminated path.
        if unsafe { libc::mkfifo(path.as_ptr(), 0o666) } != 0 {
            return Err(format!("mkfifo: {}", std::io::Error::last_os_error()));
        }
        fifo.chmod(0o666)
    })?;
    for n in [&raw, &fifo] {
        let before = n.stat()?;
        check!(before.0 == 4242, "{}: uid {}", n.path(), before.0);
        all_refused(n, "uid 4242").map_err(|e| format!("root, {}: {e}", n.path()))?;
        as_user(NOBODY, || all_refused(n, "uid 4242"))?;
        check!(n.stat()? == before, "{} changed", n.path());
    }
    // Root's own FIFO: not a regular file.
    let own = Name::new("own-fifo");
    let path = CString::new(own.path()).expect("no NUL");
    // SAFETY: a NUL-terminated path.
    let made = unsafe { libc::mkfifo(path.as_ptr(), 0o600) };
    check!(made == 0, "mkfifo: {}", std::io::Error::last_os_error());
    let t0 = now();
    let got = open(&own, None);
    let took = now() - t0;
    check!(
        got.st == MptStatus::Corrupt && got.h.is_null() && got.msg.contains("FIFO") && took < SEC,
        "open of root's own FIFO: {:?} after {} ms: {:?} (expected CORRUPT, a FIFO, at once)",
        got.st,
        took / MS,
        got.msg
    );
    note!(
        "garbage and a FIFO of uid 4242 refused; root's own FIFO CORRUPT in {} ms",
        took / MS
    );
    Ok(())
}

/// The attack of the issue: 4242 plants a throttle (0666); the victim
/// (nobody, then root) calls create_named with the same configuration;
/// 4242 truncates its object; the victim then uses what it got. Refused,
/// the victim never mapped the object, so it cannot die of SIGBUS.
fn truncation_cannot_sigbus() -> TestResult {
    for victim in [NOBODY, ROOT] {
        let n = Name::new(&format!("truncate-{}", victim.uid));
        as_user(SPARE, || {
            make(&n, &opts(false))?;
            n.chmod(0o666)
        })?;
        // Slots: 0 = the victim tried, 1 = the object is truncated.
        let flags = Shm::new(2);
        let text = Text::new();
        let mut kids = Kids::new();
        let pid = spawn_as(&mut kids, victim, &text, || {
            let got = create(&n, 5, Some(&opts(false)));
            let h = got.h;
            let (st, msg) = (got.st, got.msg.clone());
            std::mem::forget(got); // keep whatever handle it gave
            let mapped = maps(&n);
            flags.set(0, 1);
            let deadline = now() + 5 * SEC;
            while flags.get(1) == 0 && now() < deadline {
                sleep_ms(1);
            }
            if !h.is_null() {
                // It adopted the object: use it, as a worker would.
                // SAFETY: a live handle.
                let _ = unsafe { mpt_start(h) };
                let mut g = 0;
                // SAFETY: a live handle, `g` writable.
                let r = unsafe { mpt_await_fuel(h, 0.1, &mut g) };
                return Err(format!(
                    "create_named adopted the planted object and lived: await_fuel {r:?}"
                ));
            }
            if st != MptStatus::PermissionDenied || mapped {
                return Err(format!("create_named: {st:?} {msg:?}; maps it: {mapped}"));
            }
            let again = open(&n, None);
            if again.st != MptStatus::PermissionDenied || maps(&n) {
                return Err(format!("open after the truncation: {:?}", again.st));
            }
            Ok(())
        });
        check!(
            common::wait_for(5 * SEC, || flags.get(0) == 1),
            "the victim never tried"
        );
        as_user(SPARE, || {
            std::fs::OpenOptions::new()
                .write(true)
                .open(n.path())
                .and_then(|f| f.set_len(0))
                .map_err(|e| format!("truncate: {e}"))
        })?;
        check!(n.stat()?.4 == 0, "the object was not truncated");
        flags.set(1, 1);
        finish(&mut kids, pid, victim, &text)
            .map_err(|e| format!("{e} (signal 7 is SIGBUS: the victim mapped the object)"))?;
    }
    note!("nobody and root refused before mapping; truncation after that harmless");
    Ok(())
}

/// Only the owner removes a name: root and a third user are refused (the
/// object stays, the same inode), the owner removes it.
fn unlink_of_another_users_throttle_is_refused() -> TestResult {
    for mode in [0o666, 0o600] {
        let n = Name::new(&format!("unlink-{mode:o}"));
        as_user(SPARE, || {
            make(&n, &opts(false))?;
            n.chmod(mode)
        })?;
        let before = n.stat()?;
        let (st, msg) = unlink(&n);
        check!(
            st == MptStatus::PermissionDenied && msg.contains("uid 4242"),
            "root's unlink of uid 4242's {mode:o} object: {st:?} {msg:?}"
        );
        check!(
            n.stat().ok() == Some(before),
            "root's refused unlink removed it"
        );
        as_user(NOBODY, || {
            let (st, msg) = unlink(&n);
            if st == MptStatus::PermissionDenied && msg.contains("uid 4242") {
                Ok(())
            } else {
                Err(format!("unlink: {st:?} {msg:?}"))
            }
        })?;
        check!(
            n.stat().ok() == Some(before),
            "nobody's refused unlink removed it"
        );
        as_user(SPARE, || match unlink(&n) {
            (MptStatus::Ok, _) => Ok(()),
            (st, msg) => Err(format!("the owner's unlink: {st:?} {msg:?}")),
        })?;
        check!(n.stat().is_err(), "the owner's unlink left {}", n.path());
    }
    Ok(())
}

/// 4242 (gid G) creates a group-shared throttle: mode 0660, group G. A
/// member of G asking for group sharing opens it, create_names it
/// (adopting it) and takes fuel; without asking it is refused, and so are
/// a user outside G and root (outside G), asking or not. The owner's own
/// create_named differing in group sharing is MISMATCH.
fn group_sharing_is_opt_in_on_both_sides() -> TestResult {
    let n = Name::new("group");
    as_user(SPARE_IN_G, || {
        make(&n, &opts(true))?;
        // Its own: opened whatever it asks; a create_named that differs in
        // group sharing is another configuration.
        let mut own = open(&n, None);
        let st = own.st;
        own.free();
        let other = create(&n, 5, Some(&opts(false)));
        if st != MptStatus::Ok || other.st != MptStatus::Mismatch {
            return Err(format!(
                "the owner: open {st:?}, create_named without group sharing {:?} (expected \
                 MISMATCH) {}",
                other.st, other.msg
            ));
        }
        Ok(())
    })?;
    let (uid, gid, mode, _, _) = n.stat()?;
    check!(
        uid == 4242 && gid == G && mode == 0o660,
        "group-shared throttle: uid {uid}, gid {gid}, mode {mode:o} (expected 4242, {G}, 660)"
    );
    // A member of G, asking.
    as_user(MEMBER, || {
        let o = opts(true);
        let mut got = open(&n, Some(&o));
        if got.st != MptStatus::Ok {
            return Err(format!(
                "open, group sharing asked: {:?} {}",
                got.st, got.msg
            ));
        }
        let mut back = opts(true);
        // SAFETY: a live handle; `back` is a version-2 struct.
        let st = unsafe { mpt_get_options(got.h, &mut back) };
        if st != MptStatus::Ok || back.group_shared != 1 {
            return Err(format!(
                "get_options: {st:?}, group_shared {}",
                back.group_shared
            ));
        }
        // SAFETY: a live handle.
        let st = unsafe { mpt_start(got.h) };
        let mut g = 0;
        // SAFETY: a live handle, `g` writable.
        let fuel = unsafe { mpt_await_fuel(got.h, 2.0, &mut g) };
        got.free();
        if st != MptStatus::Ok || fuel != MptStatus::Ok {
            return Err(format!("start {st:?}, await_fuel {fuel:?}"));
        }
        let same = create(&n, 5, Some(&o));
        if same.st != MptStatus::Ok || same.created() {
            return Err(format!(
                "create_named, same configuration: {:?} created {} {}",
                same.st,
                same.created(),
                same.msg
            ));
        }
        let other = create(&n, 6, Some(&o));
        if other.st != MptStatus::Mismatch {
            return Err(format!(
                "create_named, max_n 6: {:?} {}",
                other.st, other.msg
            ));
        }
        // Not asking: refused.
        let plain = opts(false);
        create(&n, 5, Some(&plain)).denied("create_named, not asking", "uid 4242")?;
        open(&n, Some(&plain)).denied("open, not asking", "uid 4242")?;
        open(&n, None).denied("open, NULL options", "uid 4242")
    })?;
    // Outside G, asking or not: the system refuses nobody (0660); the
    // library refuses root.
    as_user(NOBODY, || all_refused(&n, "uid 4242"))?;
    as_user(ROOT, || all_refused(&n, "uid 4242"))?;
    all_refused(&n, "uid 4242").map_err(|e| format!("root: {e}"))?;
    let got = open(&n, Some(&opts(true)));
    check!(
        got.msg.contains(&format!("gid {G}")),
        "root's refusal does not name the group: {:?}",
        got.msg
    );
    note!("the member of G took fuel; refused: not asking, nobody, root");
    Ok(())
}

/// The mode and the header must both say group-shared: made group-shared
/// but chmodded 0666, or made private but chmodded 0660 (group G), the
/// throttle is refused to a member of G that asks for group sharing.
fn group_mode_and_header_must_agree() -> TestResult {
    let loose = Name::new("group-0666");
    let private = Name::new("private-0660");
    as_user(SPARE_IN_G, || {
        make(&loose, &opts(true))?;
        loose.chmod(0o666)?;
        make(&private, &opts(false))?;
        private.chmod(0o660)
    })?;
    check!(
        loose.stat()?.2 == 0o666 && private.stat()?.2 == 0o660 && private.stat()?.1 == G,
        "modes: {:?} {:?}",
        loose.stat(),
        private.stat()
    );
    as_user(MEMBER, || {
        let o = opts(true);
        open(&loose, Some(&o))
            .denied("open of a group-shared throttle chmodded 0666", "uid 4242")?;
        create(&loose, 5, Some(&o)).denied("create_named of the same", "uid 4242")?;
        let got = open(&private, Some(&o));
        got.denied("open of a private throttle chmodded 0660", "uid 4242")?;
        create(&private, 5, Some(&o)).denied("create_named of the same", "uid 4242")
    })?;
    // Root and nobody, asking: refused too.
    as_user(NOBODY, || all_refused(&loose, "uid 4242"))?;
    all_refused(&private, "uid 4242").map_err(|e| format!("root: {e}"))?;
    Ok(())
}

/// The name of the object a SIGXFSZ handler removes (see
/// `failed_creation_keeps_its_error`).
static REMOVE_ON_SIGXFSZ: AtomicPtr<libc::c_char> = AtomicPtr::new(std::ptr::null_mut());

extern "C" fn remove_on_sigxfsz(_: libc::c_int) {
    let name = REMOVE_ON_SIGXFSZ.load(SeqCst);
    // SAFETY: a NUL-terminated name, set before the handler was installed
    // and alive while it may run; shm_unlink (unlink) is async-signal-safe.
    unsafe { libc::shm_unlink(name) };
}

/// A creation whose memory reservation fails (a file size limit: EFBIG),
/// while another process removes the name in between (here: the SIGXFSZ
/// handler, which runs right after the failed posix_fallocate, before the
/// clean-up): the caller gets the reservation's failure (SYSTEM), not the
/// clean-up's NOT_FOUND.
fn failed_creation_keeps_its_error() -> TestResult {
    let n = Name::new("efbig");
    let shm = n.shm();
    as_user(ROOT, || {
        REMOVE_ON_SIGXFSZ.store(shm.as_ptr().cast_mut(), SeqCst);
        // SAFETY: a valid handler for a catchable signal.
        unsafe {
            libc::signal(
                libc::SIGXFSZ,
                remove_on_sigxfsz as *const () as libc::sighandler_t,
            )
        };
        let limit = libc::rlimit {
            rlim_cur: 1 << 16,
            rlim_max: libc::RLIM_INFINITY,
        };
        // SAFETY: a valid rlimit.
        if unsafe { libc::setrlimit(libc::RLIMIT_FSIZE, &limit) } != 0 {
            return Err(format!("setrlimit: {}", std::io::Error::last_os_error()));
        }
        let r = Throttle::create_named(&n.0, Config::new(5, 1.0, &Options::default()).unwrap());
        match r {
            Err(Error::System(m)) if m.contains("large") => Ok(()),
            other => Err(format!(
                "create_named under a 64 KiB file size limit: {:?} (expected SYSTEM: file too \
                 large)",
                other.map(|t| t.created())
            )),
        }
    })?;
    check!(n.stat().is_err(), "the failed creation left {}", n.path());
    Ok(())
}

// ---------------------------------------------------------------- the runner

/// Removes every `/dev/shm/mp_throttle.owners-test.<pid>.*` left behind.
fn remove_leftovers() {
    common::remove_objects("owners-test");
}

fn main() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        if std::env::var_os("CI").is_some_and(|v| !v.is_empty()) {
            println!(
                "owners: FAILED: these tests need root (to become other users), and CI is set"
            );
            std::process::exit(1);
        }
        println!("SKIPPED: tests/owners.rs needs root (to become other users)");
        let _ = std::io::stdout().flush();
        std::process::exit(0);
    }
    let tests: &[Test] = &[
        (
            "planted_throttle_is_refused",
            planted_throttle_is_refused,
            30,
        ),
        ("planted_garbage_is_refused", planted_garbage_is_refused, 30),
        ("truncation_cannot_sigbus", truncation_cannot_sigbus, 30),
        (
            "unlink_of_another_users_throttle_is_refused",
            unlink_of_another_users_throttle_is_refused,
            30,
        ),
        (
            "group_sharing_is_opt_in_on_both_sides",
            group_sharing_is_opt_in_on_both_sides,
            30,
        ),
        (
            "group_mode_and_header_must_agree",
            group_mode_and_header_must_agree,
            30,
        ),
        (
            "failed_creation_keeps_its_error",
            failed_creation_keeps_its_error,
            30,
        ),
    ];
    common::run(
        tests,
        Overrun {
            cleanup: remove_leftovers,
            done: "",
        },
        remove_leftovers,
    );
}
