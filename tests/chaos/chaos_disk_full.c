/* Chaos 4: the store's filesystem fills up, and frees again. The store is
 * on a small tmpfs of its own (harness_mount_tmpfs, so this needs root;
 * the harness unmounts it at teardown whatever happened). While the disk
 * is full, submits must be refused naming the cause ("no space left on
 * device"); no acknowledged job may be lost, none may run twice because of
 * the outage, and once space is free the broker catches up by itself (no
 * restart). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cmocka.h>

#include "chaos.h"
#include "dv_clock.h"

enum {
    BEFORE = 100,   /* jobs submitted before the disk fills */
    ROUND = 40,     /* jobs per submit while it is full */
    PAD = 4000,     /* payload padding: the store must grow to take them */
    ROUNDS_MAX = 8, /* submit rounds while full */
};

/* Writes to path until the filesystem is full. Returns bytes written. */
static long
s_fill(const char *path)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd < 0)
        return -1;
    static char chunk[65536];
    memset(chunk, 'f', sizeof chunk);
    long total = 0;
    for (int i = 0; i < 100000; i++) { /* bounded: far past any tmpfs here */
        ssize_t n = write(fd, chunk, sizeof chunk);
        if (n <= 0)
            break;
        total += n;
    }
    /* The last bytes: a page at a time. */
    for (int i = 0; i < 100000 && write(fd, chunk, 512) > 0; i++)
        total += 512;
    close(fd);
    return total;
}

/* The store's files and the room left on its filesystem: a store that
 * stays full after the space came back shows here who holds the disk (its
 * WAL, when nothing checkpoints it). */
static void
s_print_space(const char *mnt, const char *store)
{
    char wal[sizeof((harness_t *)0)->store + 8];
    snprintf(wal, sizeof wal, "%s-wal", store);
    struct stat db_st, wal_st;
    struct statvfs fs;
    long long db = stat(store, &db_st) == 0 ? (long long)db_st.st_size : -1;
    long long wl = stat(wal, &wal_st) == 0 ? (long long)wal_st.st_size : -1;
    long long room = statvfs(mnt, &fs) == 0
                         ? (long long)fs.f_bavail * (long long)fs.f_frsize
                         : -1;
    printf("chaos[disk_full] store at the end: database %lld bytes, WAL %lld "
           "bytes, %lld bytes free\n",
           db, wl, room);
    fflush(stdout);
}

static void
t_disk_full(void **state)
{
    harness_t *h = *state;
    uint64_t seed = chaos_seed("disk_full");
    uint64_t rng = seed;
    if (geteuid() != 0) {
        printf("chaos[disk_full] SKIPPED: mounting a tmpfs for the store "
               "needs root (CI runs as root)\n");
        skip();
    }
    char mnt[256];
    if (harness_mount_tmpfs(h, "store", 16 << 20, mnt, sizeof mnt) != 0) {
        printf("chaos[disk_full] SKIPPED: cannot mount a tmpfs at %s/store: "
               "%s\n",
               h->dir, strerror(errno));
        skip();
    }
    snprintf(h->store, sizeof h->store, "%s/drover.db", mnt);

    chaos_wargs_t wargs;
    chaos_wargs(h, 2, 0, &wargs);
    chaos_start(h, &wargs, 2, NULL);
    pid_t broker = h->broker;

    chaos_ids_t acked = { 0 };
    chaos_submit_all(h, "df-before", seed, BEFORE, 50, 200, &rng, 30000,
                     &acked);
    char prefix[64];

    char filler[400];
    snprintf(filler, sizeof filler, "%s/filler", mnt);
    long filled = s_fill(filler);
    assert_true(filled > 0);

    /* While full: rounds of keyed submits, each tried for a moment. */
    chaos_submit_stats_t full = { 0 };
    int rounds = 0, unacked = 0;
    for (; rounds < ROUNDS_MAX; rounds++) {
        snprintf(prefix, sizeof prefix, "df-%" PRIu64 "-r%d", seed, rounds);
        unacked += chaos_submit_keyed(h->client, prefix, ROUND, 50, 200, PAD,
                                      &rng, 1500, &acked, &full);
    }
    printf("chaos[disk_full] filled=%ld bytes; while full: rounds=%d "
           "submits=%d refused=%d refused_naming_no_space=%d "
           "left_without_ack=%d last_error='%s'\n",
           filled, rounds, full.submits, full.refused, full.refused_nospace,
           unacked, full.last_error);
    fflush(stdout);

    /* Free the space; the same keys again until every job is in. */
    assert_int_equal(unlink(filler), 0);
    int64_t freed = dv_mono_ms();
    chaos_submit_stats_t after = { 0 };
    int left = 0;
    for (int r = 0; r < rounds; r++) {
        snprintf(prefix, sizeof prefix, "df-%" PRIu64 "-r%d", seed, r);
        left += chaos_submit_keyed(h->client, prefix, ROUND, 50, 200, PAD, &rng,
                                   30000, &acked, &after);
    }
    int64_t catch_up_ms = dv_mono_ms() - freed;
    printf("chaos[disk_full] after freeing: all submits in after %" PRId64
           " ms (refused %d on the way, left %d)\n",
           catch_up_ms, after.refused, left);
    fflush(stdout);

    chaos_account_t a;
    chaos_account(h, "disk_full", &acked, 120000, &a);
    s_print_space(mnt, h->store);
    chaos_ids_free(&acked);
    /* The same broker, never restarted, caught up by itself. */
    assert_int_equal(kill(broker, 0), 0);
    assert_int_equal(h->broker, broker);
    assert_int_equal(left, 0);
    assert_int_equal(a.acknowledged, BEFORE + ROUNDS_MAX * ROUND);
    /* Run twice: nothing was killed and no worker was cut off, so no job
     * has a reason to run twice: the outage must not cause any. */
    chaos_assert_account(&a, 0);
    if (full.refused == 0)
        fail_msg("no submit was refused while the store's disk was full");
    if (full.refused_nospace != full.refused)
        fail_msg("%d of %d refusals while the disk was full do not name the "
                 "cause (\"no space left on device\"); last: '%s'",
                 full.refused - full.refused_nospace, full.refused,
                 full.last_error);
}

int
main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(t_disk_full, harness_setup,
                                        harness_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
