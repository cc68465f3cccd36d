/*
 * named.c: named throttles through the C ABI.
 *
 * - Arguments: a NULL name or out_throttle gives NULL_POINTER; an empty
 *   name, one with '/', "." and "..", a 201-byte name and a name that is
 *   not UTF-8 give INVALID_ARGUMENT; each failure leaves a message.
 * - open and unlink of a name nobody made: NOT_FOUND.
 * - create_named of an existing name: the same configuration opens it (one
 *   schedule), another gives MISMATCH; open adopts the configuration (an
 *   opener asking for a monitor gets MONITOR_OFF from a throttle made
 *   without one).
 * - The object is /dev/shm/mp_throttle.<name>, mode 0600, of this user.
 * - unlink: the handles keep working; open then says NOT_FOUND; create
 *   makes a new throttle.
 * - Objects that are not throttles: too short, a foreign magic word → CORRUPT;
 *   another layout version → UNSUPPORTED. (The offsets of the magic word, 0,
 *   and of the layout version, 8, are those of src/shm/layout.rs.)
 * - As another user (only when run as root: a child becomes nobody):
 *   PERMISSION_DENIED for open, create_named and unlink.
 * - mpt_options version 1 (40 bytes, before group_shared) still works: a
 *   struct that ends where a guard page begins is filled, read and written
 *   back without a byte beyond its 40 (a read or write there would crash);
 *   mpt_get_options writes version 2 only into a struct that says version 2.
 * - group_shared: created mode 0660 with this process's group, read back
 *   by mpt_get_options; a create_named that differs in it is MISMATCH; its
 *   owner opens it whatever it asks; group_shared 2 is INVALID_ARGUMENT.
 *   (tests/owners.rs checks the sharing between users, as root.)
 *
 * Names carry the pid; every name made here is unlinked at the end.
 */
#include <errno.h>
#include <fcntl.h>
#include <grp.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "check.h"

/* Version 2 of mpt_options: version 1's 40 bytes, then group_shared. */
STATIC_ASSERT(sizeof(mpt_options) == 48, "mpt_options is 48 bytes");
STATIC_ASSERT(offsetof(mpt_options, spin_s) == 32, "mpt_options.spin_s");
STATIC_ASSERT(offsetof(mpt_options, group_shared) == 40, "mpt_options.group_shared");

static char names[16][128];
static int name_count;

/* A name unique to this process: "c-named.<pid>.<tag>" (kept for cleanup). */
static const char *name_for(const char *tag) {
    char *n = names[name_count++];
    snprintf(n, sizeof names[0], "c-named.%d.%s", (int)getpid(), tag);
    (void)mpt_throttle_unlink(n); /* a leftover of an earlier run */
    return n;
}

static void shm_path(char *buf, size_t size, const char *name) {
    snprintf(buf, size, "/dev/shm/mp_throttle.%s", name);
}

static mpt_throttle *create(const char *name, uint64_t max_n, double per,
                            const mpt_options *o) {
    mpt_throttle *t = NULL;
    CHECK_OK(mpt_throttle_create_named(name, max_n, per, o, &t));
    if (t == NULL) {
        printf("cannot create throttle %s: %s\n", name, last_error());
        exit(2);
    }
    return t;
}

static void bad_names(void) {
    const char *invalid[] = {"", "/", "a/b", "/lead", "trail/", ".", ".."};
    char long_name[202];
    const char not_utf8[] = {'n', 'o', (char)0xff, (char)0xfe, 'x', '\0'};
    const char *ok_name = name_for("args");
    mpt_throttle *t = NULL;
    size_t i;

    memset(long_name, 'a', 201);
    long_name[201] = '\0';

    CHECK_FAIL(mpt_throttle_create_named(NULL, 5, 1.0, NULL, &t),
               MPT_STATUS_NULL_POINTER, "name");
    CHECK_FAIL(mpt_throttle_open(NULL, NULL, &t), MPT_STATUS_NULL_POINTER, "name");
    CHECK_FAIL(mpt_throttle_unlink(NULL), MPT_STATUS_NULL_POINTER, "name");
    CHECK_FAIL(mpt_throttle_create_named(ok_name, 5, 1.0, NULL, NULL),
               MPT_STATUS_NULL_POINTER, "out_throttle");
    CHECK_FAIL(mpt_throttle_open(ok_name, NULL, NULL), MPT_STATUS_NULL_POINTER,
               "out_throttle");

    for (i = 0; i < sizeof invalid / sizeof invalid[0]; i++) {
        CHECK_FAIL(mpt_throttle_create_named(invalid[i], 5, 1.0, NULL, &t),
                   MPT_STATUS_INVALID_ARGUMENT, "name");
        CHECK_FAIL(mpt_throttle_open(invalid[i], NULL, &t),
                   MPT_STATUS_INVALID_ARGUMENT, "name");
        CHECK_FAIL(mpt_throttle_unlink(invalid[i]), MPT_STATUS_INVALID_ARGUMENT,
                   "name");
    }
    CHECK_FAIL(mpt_throttle_create_named(long_name, 5, 1.0, NULL, &t),
               MPT_STATUS_INVALID_ARGUMENT, "200");
    CHECK_FAIL(mpt_throttle_open(long_name, NULL, &t), MPT_STATUS_INVALID_ARGUMENT,
               "200");
    CHECK_FAIL(mpt_throttle_unlink(long_name), MPT_STATUS_INVALID_ARGUMENT, "200");
    CHECK_FAIL(mpt_throttle_create_named(not_utf8, 5, 1.0, NULL, &t),
               MPT_STATUS_INVALID_ARGUMENT, "UTF-8");
    CHECK_FAIL(mpt_throttle_open(not_utf8, NULL, &t), MPT_STATUS_INVALID_ARGUMENT,
               "UTF-8");
    CHECK_FAIL(mpt_throttle_unlink(not_utf8), MPT_STATUS_INVALID_ARGUMENT, "UTF-8");
    /* Bad numbers are refused before anything is created. */
    CHECK_FAIL(mpt_throttle_create_named(ok_name, 0, 1.0, NULL, &t),
               MPT_STATUS_INVALID_ARGUMENT, NULL);
    CHECK_FAIL(mpt_throttle_create_named(ok_name, 5, -1.0, NULL, &t),
               MPT_STATUS_INVALID_ARGUMENT, NULL);
    CHECK(t == NULL); /* out_throttle untouched by every failure */
    CHECK_FAIL(mpt_throttle_open(ok_name, NULL, &t), MPT_STATUS_NOT_FOUND, ok_name);

    /* The longest name: 200 bytes. */
    long_name[200] = '\0';
    memcpy(long_name, ok_name, strlen(ok_name));
    t = create(long_name, 5, 1.0, NULL);
    CHECK_OK(mpt_throttle_free(t));
    CHECK_OK(mpt_throttle_unlink(long_name));
}

static void missing(void) {
    const char *n = name_for("missing");
    mpt_throttle *t = NULL;
    CHECK_FAIL(mpt_throttle_open(n, NULL, &t), MPT_STATUS_NOT_FOUND, n);
    CHECK(t == NULL);
    CHECK_FAIL(mpt_throttle_unlink(n), MPT_STATUS_NOT_FOUND, n);
}

static void create_open_mismatch(void) {
    const char *n = name_for("cfg");
    char path[256];
    struct stat st;
    mpt_options o, other, wishes;
    mpt_throttle *a, *b, *c = NULL, *d = NULL;
    mpt_rate r;

    CHECK_OK(mpt_options_init(&o, MPT_OPTIONS_VERSION));
    o.as_monitor = 0;
    a = create(n, 2, 1000.0, &o);

    shm_path(path, sizeof path, n);
    CHECK(stat(path, &st) == 0);
    CHECK((st.st_mode & 07777) == 0600);
    CHECK(st.st_uid == geteuid());

    /* The same configuration: the same throttle, found made. */
    b = create(n, 2, 1000.0, &o);
    {
        bool made = false;
        CHECK_OK(mpt_throttle_created(a, &made));
        CHECK(made);
        CHECK_OK(mpt_throttle_created(b, &made));
        CHECK(!made);
        CHECK_FAIL(mpt_throttle_created(a, NULL), MPT_STATUS_NULL_POINTER, "out_created");
    }
    CHECK_OK(mpt_start(a));
    CHECK_OK(mpt_has_fuel(b, NULL));
    CHECK_STATUS(mpt_has_fuel(a, NULL), MPT_STATUS_NO_FUEL);

    /* Another configuration: MISMATCH, nothing written. */
    CHECK_FAIL(mpt_throttle_create_named(n, 3, 1000.0, &o, &c), MPT_STATUS_MISMATCH,
               n);
    CHECK_FAIL(mpt_throttle_create_named(n, 2, 999.0, &o, &c), MPT_STATUS_MISMATCH,
               NULL);
    other = o;
    other.hardcap = MPT_HARDCAP_WINDOW;
    CHECK_FAIL(mpt_throttle_create_named(n, 2, 1000.0, &other, &c),
               MPT_STATUS_MISMATCH, NULL);
    CHECK_FAIL(mpt_throttle_create_named(n, 2, 1000.0, NULL, &c), MPT_STATUS_MISMATCH,
               NULL);
    CHECK(c == NULL);

    /* open adopts: its options ask for a monitor, the throttle has none. */
    CHECK_OK(mpt_options_init(&wishes, MPT_OPTIONS_VERSION));
    wishes.hardcap = MPT_HARDCAP_ONE;
    CHECK_OK(mpt_throttle_open(n, &wishes, &d));
    CHECK(d != NULL);
    if (d != NULL) {
        bool running = false, made = true;
        mpt_options got;
        /* It reads back the creator's options, with its own waiting ones
         * (all of version 2: the struct says version 2 on entry). */
        CHECK_OK(mpt_options_init(&got, MPT_OPTIONS_VERSION));
        got.group_shared = 7;
        CHECK_OK(mpt_get_options(d, &got));
        CHECK(got.version == MPT_OPTIONS_VERSION && got.group_shared == 0 && got.as_monitor == 0 &&
              got.as_throttle == 1 && got.auto_emit == 1 && got.hardcap == MPT_HARDCAP_LIMIT &&
              got.refresh_s == o.refresh_s && got.timer_slack_ns == wishes.timer_slack_ns);
        CHECK_FAIL(mpt_get_options(d, NULL), MPT_STATUS_NULL_POINTER, "out_options");
        CHECK_OK(mpt_throttle_created(d, &made));
        CHECK(!made);
        CHECK_FAIL(mpt_latest(d, &r), MPT_STATUS_MONITOR_OFF, NULL);
        CHECK_OK(mpt_is_running(d, &running));
        CHECK(running);
        CHECK_STATUS(mpt_has_fuel(d, NULL), MPT_STATUS_NO_FUEL);
        CHECK_OK(mpt_stop(d, NULL));
        CHECK_OK(mpt_throttle_free(d));
    }
    CHECK_STATUS(mpt_stop(a, NULL), MPT_STATUS_WRONG_STATE);
    CHECK_OK(mpt_throttle_free(b));
    CHECK_OK(mpt_throttle_free(a));
    CHECK_OK(mpt_throttle_unlink(n));
}

static void unlink_keeps_handles(void) {
    const char *n = name_for("unlink");
    char path[256];
    struct stat st;
    mpt_throttle *a, *b = NULL, *c, *gone = NULL;
    mpt_summary s;
    bool running = true;

    a = create(n, 5, 1000.0, NULL);
    CHECK_OK(mpt_throttle_open(n, NULL, &b));
    CHECK_OK(mpt_start(a));
    CHECK_OK(mpt_throttle_unlink(n));
    shm_path(path, sizeof path, n);
    CHECK(stat(path, &st) != 0 && errno == ENOENT);
    if (b != NULL) {
        CHECK_OK(mpt_has_fuel(b, NULL));
        CHECK_STATUS(mpt_has_fuel(a, NULL), MPT_STATUS_NO_FUEL);
    }
    CHECK_FAIL(mpt_throttle_open(n, NULL, &gone), MPT_STATUS_NOT_FOUND, n);
    CHECK_FAIL(mpt_throttle_unlink(n), MPT_STATUS_NOT_FOUND, n);

    /* A new throttle under the old name. */
    c = create(n, 7, 1.0, NULL);
    CHECK_OK(mpt_is_running(c, &running));
    CHECK(!running);
    CHECK_OK(mpt_get_summary(c, &s));
    CHECK(s.total == 0);
    CHECK_OK(mpt_stop(a, &s));
    CHECK(s.total == 1);
    CHECK_OK(mpt_throttle_free(c));
    CHECK_OK(mpt_throttle_free(b));
    CHECK_OK(mpt_throttle_free(a));
    CHECK_OK(mpt_throttle_unlink(n));
}

/* The bytes of named object `name` (malloc'ed), or NULL. */
static unsigned char *read_object(const char *name, size_t *len) {
    char path[256];
    struct stat st;
    unsigned char *buf;
    int fd;
    ssize_t got;

    shm_path(path, sizeof path, name);
    fd = open(path, O_RDONLY);
    if (fd < 0 || fstat(fd, &st) != 0) {
        return NULL;
    }
    buf = malloc((size_t)st.st_size);
    got = buf == NULL ? -1 : read(fd, buf, (size_t)st.st_size);
    close(fd);
    if (got != (ssize_t)st.st_size) {
        free(buf);
        return NULL;
    }
    *len = (size_t)st.st_size;
    return buf;
}

/* Writes a new object `name` (mode 0600) of `len` bytes. */
static bool write_object(const char *name, const unsigned char *bytes, size_t len) {
    char path[256];
    int fd;
    bool ok;

    shm_path(path, sizeof path, name);
    fd = open(path, O_WRONLY | O_CREAT | O_EXCL, 0600);
    if (fd < 0) {
        return false;
    }
    ok = write(fd, bytes, len) == (ssize_t)len;
    close(fd);
    return ok;
}

static void not_throttles(void) {
    const char *good = name_for("good");
    const char *shrt = name_for("short");
    const char *foreign = name_for("foreign");
    const char *newer = name_for("newer");
    mpt_throttle *t = create(good, 5, 1.0, NULL);
    mpt_throttle *u = NULL;
    unsigned char *bytes;
    size_t len = 0;
    uint32_t version;

    CHECK_OK(mpt_throttle_free(t));
    bytes = read_object(good, &len);
    CHECK(bytes != NULL && len > 4096);
    if (bytes == NULL) {
        return;
    }
    CHECK(write_object(shrt, bytes, 4096));
    CHECK_FAIL(mpt_throttle_open(shrt, NULL, &u), MPT_STATUS_CORRUPT, shrt);
    CHECK_FAIL(mpt_throttle_create_named(shrt, 5, 1.0, NULL, &u), MPT_STATUS_CORRUPT,
               shrt);

    memcpy(bytes, "NOTMPTHR", 8);
    CHECK(write_object(foreign, bytes, len));
    CHECK_FAIL(mpt_throttle_open(foreign, NULL, &u), MPT_STATUS_CORRUPT, "magic");

    memcpy(bytes, "MPTHRTL", 8); /* the magic word again, with its NUL */
    memcpy(&version, bytes + 8, sizeof version);
    version++;
    memcpy(bytes + 8, &version, sizeof version);
    CHECK(write_object(newer, bytes, len));
    CHECK_FAIL(mpt_throttle_open(newer, NULL, &u), MPT_STATUS_UNSUPPORTED, "newer");
    CHECK(u == NULL);
    free(bytes);
    CHECK_OK(mpt_throttle_unlink(good));
    CHECK_OK(mpt_throttle_unlink(shrt));
    CHECK_OK(mpt_throttle_unlink(foreign));
    CHECK_OK(mpt_throttle_unlink(newer));
}

/*
 * As nobody, in a child: root's throttle is refused. Exit code = failures.
 * `inherited` is the child's copy of the parent's handle, freed here.
 */
static int as_nobody(const char *name, mpt_throttle *inherited) {
    mpt_throttle *t = NULL;
    int before = check_failed;
    CHECK_OK(mpt_throttle_free(inherited));
    if (setgroups(0, NULL) != 0 || setgid(65534) != 0 || setuid(65534) != 0) {
        return 100;
    }
    CHECK_FAIL(mpt_throttle_open(name, NULL, &t), MPT_STATUS_PERMISSION_DENIED,
               "another user");
    CHECK_FAIL(mpt_throttle_create_named(name, 5, 1.0, NULL, &t),
               MPT_STATUS_PERMISSION_DENIED, "another user");
    CHECK_FAIL(mpt_throttle_unlink(name), MPT_STATUS_PERMISSION_DENIED, "another user");
    CHECK(t == NULL);
    return check_failed - before;
}

static void other_user(void) {
    const char *n;
    mpt_throttle *t;
    pid_t pid;
    int status = 0;

    if (geteuid() != 0) {
        printf("other_user: skipped (needs root)\n");
        return;
    }
    n = name_for("perm");
    t = create(n, 5, 1.0, NULL);
    fflush(stdout);
    pid = fork();
    if (pid == 0) {
        _exit(as_nobody(n, t));
    }
    CHECK(pid > 0);
    while (pid > 0 && waitpid(pid, &status, 0) < 0 && errno == EINTR) {
    }
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK_OK(mpt_throttle_free(t));
    CHECK_OK(mpt_throttle_unlink(n));
}

/*
 * A program built against version 1 of the header: its mpt_options is 40
 * bytes. Here the struct ends where a guard page begins, so a read or write
 * of a byte beyond the 40 crashes this test.
 */
static void options_version_1(void) {
    const char *n = name_for("v1");
    long page = sysconf(_SC_PAGESIZE);
    unsigned char *mem = mmap(NULL, (size_t)page * 2, PROT_READ | PROT_WRITE,
                              MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    mpt_options *v1, full;
    mpt_throttle *t = NULL, *u = NULL, *w = NULL;
    char path[256];
    struct stat st;

    CHECK(mem != MAP_FAILED);
    if (mem == MAP_FAILED) {
        return;
    }
    CHECK(mprotect(mem + page, (size_t)page, PROT_NONE) == 0);
    v1 = (mpt_options *)(void *)(mem + page - 40);
    memset(mem + page - 48, 0x5A, 48);
    CHECK_OK(mpt_options_init(v1, 1));
    CHECK(v1->version == 1 && v1->as_throttle == 1 && v1->as_monitor == 1 &&
          v1->auto_emit == MPT_AUTO_EMIT_DEFAULT && v1->hardcap == MPT_HARDCAP_LIMIT &&
          v1->timer_slack_ns == 1 && v1->refresh_s == 0.01 && v1->spin_s == 0.0);
    CHECK(mem[page - 48] == 0x5A && mem[page - 41] == 0x5A);
    v1->as_monitor = 0;
    CHECK_OK(mpt_throttle_create_named(n, 2, 1000.0, v1, &t));
    shm_path(path, sizeof path, n);
    CHECK(stat(path, &st) == 0 && (st.st_mode & 07777) == 0600);
    CHECK_OK(mpt_throttle_create_named(n, 2, 1000.0, v1, &u));
    CHECK_OK(mpt_throttle_open(n, v1, &w));
    CHECK_OK(mpt_throttle_free(w));
    w = NULL;
    CHECK_OK(mpt_throttle_new(4, 1.0, v1, &w));
    /* Read back as version 1: 40 bytes. Also when the version field holds
     * anything else (an old program that did not set it). */
    memset(v1, 0x5A, 40);
    v1->version = 1;
    CHECK_OK(mpt_get_options(t, v1));
    CHECK(v1->version == 1 && v1->as_monitor == 0 && v1->as_throttle == 1);
    memset(v1, 0x5A, 40);
    CHECK_OK(mpt_get_options(t, v1));
    CHECK(v1->version == 1 && v1->as_monitor == 0 && v1->refresh_s == 0.01);
    /* An opener of version 1 cannot ask for group sharing: off. */
    CHECK_OK(mpt_options_init(&full, MPT_OPTIONS_VERSION));
    CHECK_OK(mpt_get_options(u, &full));
    CHECK(full.version == 2 && full.group_shared == 0 && full.as_monitor == 0);
    CHECK_OK(mpt_throttle_free(w));
    CHECK_OK(mpt_throttle_free(u));
    CHECK_OK(mpt_throttle_free(t));
    CHECK_OK(mpt_throttle_unlink(n));
    CHECK(munmap(mem, (size_t)page * 2) == 0);
}

/* group_shared at creation: mode 0660, this process's group, in the header. */
static void group_shared_own(void) {
    const char *n = name_for("group");
    mpt_options o, plain, got;
    mpt_throttle *t, *u = NULL, *c = NULL;
    char path[256];
    struct stat st;

    CHECK_OK(mpt_options_init(&o, MPT_OPTIONS_VERSION));
    CHECK(o.group_shared == 0);
    o.group_shared = 1;
    t = create(n, 3, 1.0, &o);
    shm_path(path, sizeof path, n);
    CHECK(stat(path, &st) == 0);
    CHECK((st.st_mode & 07777) == 0660);
    CHECK(st.st_uid == geteuid() && st.st_gid == getegid());
    CHECK_OK(mpt_options_init(&got, MPT_OPTIONS_VERSION));
    CHECK_OK(mpt_get_options(t, &got));
    CHECK(got.group_shared == 1);
    /* Part of the configuration. */
    CHECK_OK(mpt_options_init(&plain, MPT_OPTIONS_VERSION));
    CHECK_FAIL(mpt_throttle_create_named(n, 3, 1.0, &plain, &c), MPT_STATUS_MISMATCH,
               "group");
    CHECK_FAIL(mpt_throttle_create_named(n, 3, 1.0, NULL, &c), MPT_STATUS_MISMATCH, NULL);
    CHECK(c == NULL);
    /* Its owner opens it, asking or not. */
    CHECK_OK(mpt_throttle_open(n, NULL, &u));
    CHECK_OK(mpt_throttle_free(u));
    u = NULL;
    CHECK_OK(mpt_throttle_open(n, &o, &u));
    CHECK_OK(mpt_throttle_free(u));
    u = NULL;
    o.group_shared = 2;
    CHECK_FAIL(mpt_throttle_open(n, &o, &u), MPT_STATUS_INVALID_ARGUMENT, "group_shared");
    CHECK(u == NULL);
    CHECK_OK(mpt_throttle_free(t));
    CHECK_OK(mpt_throttle_unlink(n));
    /* A private one is not group-shared (mode 0600, group_shared 0). */
    t = create(n, 3, 1.0, &plain);
    CHECK(stat(path, &st) == 0 && (st.st_mode & 07777) == 0600);
    got.group_shared = 9;
    CHECK_OK(mpt_get_options(t, &got));
    CHECK(got.group_shared == 0);
    o.group_shared = 1;
    CHECK_FAIL(mpt_throttle_create_named(n, 3, 1.0, &o, &c), MPT_STATUS_MISMATCH, "group");
    CHECK_OK(mpt_throttle_free(t));
    CHECK_OK(mpt_throttle_unlink(n));
}

int main(void) {
    int i;
    bad_names();
    missing();
    create_open_mismatch();
    unlink_keeps_handles();
    not_throttles();
    other_user();
    options_version_1();
    group_shared_own();
    for (i = 0; i < name_count; i++) {
        (void)mpt_throttle_unlink(names[i]);
    }
    return check_report("named");
}
