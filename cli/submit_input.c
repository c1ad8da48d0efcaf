/* submit_input - reads and checks the lines of `drover submit --file`; see
 * submit_input.h. */
#include "submit_input.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <jansson.h>

#include "lineref.h"

/* Below this many bytes one thread parses the whole file: a thread costs
 * more than it saves (a line of a few fields takes about a microsecond). */
#define S_SPLIT_BYTES (256 * 1024)

char *
submit_input_read_all(FILE *f, size_t *len)
{
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t r = fread(buf + n, 1, cap - n, f);
        n += r;
        if (r == 0)
            break;
        if (n == cap) {
            char *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                return NULL;
            }
            buf = nb;
            cap *= 2;
        }
    }
    if (!buf || ferror(f)) {
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

int
submit_input_add(submit_input_t *in, const drover_job_t *job, unsigned line)
{
    if (in->n == in->cap) {
        size_t cap = in->cap ? in->cap * 2 : 1024;
        drover_job_t *jobs = realloc(in->jobs, cap * sizeof *jobs);
        if (!jobs)
            return -1;
        in->jobs = jobs;
        unsigned *lines = realloc(in->lines, cap * sizeof *lines);
        if (!lines)
            return -1;
        in->lines = lines;
        in->cap = cap;
    }
    in->jobs[in->n] = *job;
    in->lines[in->n] = line;
    in->n++;
    return 0;
}

void
submit_input_free(submit_input_t *in)
{
    free(in->jobs);
    free(in->lines);
    free(in->ids);
    free(in->dup);
    jobline_arena_destroy(&in->more);
    memset(in, 0, sizeof *in);
}

static void
s_bad(submit_bads_t *b, unsigned line, const char *why)
{
    if (b->n < SUBMIT_BAD_LISTED) {
        b->list[b->n].line = line;
        snprintf(b->list[b->n].why, sizeof b->list[b->n].why, "%s", why);
        b->n++;
    }
    b->count++;
}

/* One part of the file: whole lines, numbered from 1 within it. Its jobs
 * go to jobs[0..n) and their line numbers to lines[0..n): arrays with room
 * for a job on every line. */
typedef struct {
    const char *text;
    size_t len;
    const drover_job_t *defaults;
    jobline_arena_t *arena;
    drover_job_t *jobs;
    unsigned *lines_of;
    size_t n;
    submit_bads_t bads;
    unsigned lines;      /* lines read */
    unsigned nomem_line; /* 0, or where memory ran out */
} s_part_t;

/* Lines in text[0..len) (a last one without a newline counts). */
static size_t
s_count_lines(const char *text, size_t len)
{
    size_t n = 0;
    for (const char *p = text, *end = text + len; p < end; n++) {
        const char *nl = memchr(p, '\n', (size_t)(end - p));
        p = nl ? nl + 1 : end;
    }
    return n;
}

void *
submit_big_alloc(size_t size)
{
    const size_t huge = 2u << 20;
    if (size >= huge) {
        size_t room = (size + huge - 1) / huge * huge;
        void *p = NULL;
        if (posix_memalign(&p, huge, room) == 0) {
            madvise(p, room, MADV_HUGEPAGE);
            return p;
        }
    }
    return malloc(size ? size : 1);
}

static void *
s_parse(void *arg)
{
    s_part_t *p = arg;
    size_t pos = 0;
    while (pos < p->len) {
        const char *start = p->text + pos;
        const char *nl = memchr(start, '\n', p->len - pos);
        size_t n = nl ? (size_t)(nl - start) : p->len - pos;
        pos += n + 1;
        p->lines++;
        drover_job_t job;
        char why[256];
        int rc = jobline_parse(start, n, p->defaults, p->arena, &job, why,
                               sizeof why);
        if (rc == JOBLINE_NOMEM) {
            p->nomem_line = p->lines;
            break;
        }
        if (rc == JOBLINE_JOB) {
            p->jobs[p->n] = job;
            p->lines_of[p->n++] = p->lines;
        } else if (rc == JOBLINE_BAD) {
            s_bad(&p->bads, p->lines, why);
        }
    }
    return NULL;
}

/* Checks each job's references to lines against the jobs before it, and
 * drops the jobs whose references name no earlier line with a job (later
 * references to those fail too, as they would have in one pass). */
static void
s_check_refs(submit_input_t *in, submit_bads_t *bads)
{
    size_t k = 0;
    for (size_t i = 0; i < in->n; i++) {
        char why[256];
        if (in->jobs[i].nafter + in->jobs[i].nafter_any &&
            lineref_check(in->lines, k, &in->jobs[i], in->lines[i], why,
                          sizeof why) != 0) {
            s_bad(bads, in->lines[i], why);
            bads->refs++;
            continue;
        }
        if (k != i) {
            in->jobs[k] = in->jobs[i];
            in->lines[k] = in->lines[i];
        }
        k++;
    }
    in->n = k;
}

/* Adds the listed bad lines of from (their numbers shifted by offset) to
 * into, keeping into's list the first ones in line order. */
static void
s_merge_bads(submit_bads_t *into, const submit_bads_t *from, unsigned offset)
{
    submit_bads_t m = { .count = into->count + from->count,
                        .refs = into->refs + from->refs };
    size_t i = 0, j = 0;
    while (m.n < SUBMIT_BAD_LISTED && (i < into->n || j < from->n)) {
        bool take_into =
            j >= from->n ||
            (i < into->n && into->list[i].line <= from->list[j].line + offset);
        if (take_into) {
            m.list[m.n++] = into->list[i++];
        } else {
            m.list[m.n] = from->list[j++];
            m.list[m.n++].line += offset;
        }
    }
    *into = m;
}

/* Where the second half starts: after the newline nearest the middle, or
 * len when the file is small (one part). */
static size_t
s_middle(const char *text, size_t len)
{
    if (len < S_SPLIT_BYTES || sysconf(_SC_NPROCESSORS_ONLN) < 2)
        return len;
    const char *nl = memchr(text + len / 2, '\n', len - len / 2);
    return nl ? (size_t)(nl - text) + 1 : len;
}

int
submit_input_read(const char *path, const drover_job_t *defaults,
                  jobline_arena_t *arena, submit_input_t *in,
                  submit_bads_t *bads, unsigned *line)
{
    FILE *f = stdin;
    if (strcmp(path, "-") != 0 && !(f = fopen(path, "rb")))
        return SUBMIT_INPUT_NO_OPEN;
    size_t len = 0;
    char *text = submit_input_read_all(f, &len);
    int err = errno;
    if (f != stdin)
        fclose(f);
    if (!text) {
        errno = err;
        return SUBMIT_INPUT_NO_READ;
    }
    size_t pos = 0;
    if (len >= 3 && !memcmp(text, "\xef\xbb\xbf", 3))
        pos = 3; /* a UTF-8 byte order mark, as some editors write */
    size_t mid = pos + s_middle(text + pos, len - pos);
    /* Room for a job on every line, the second half's after the first's
     * (moved down over the room of lines that were no job, if any). */
    size_t na = s_count_lines(text + pos, mid - pos);
    size_t nb = s_count_lines(text + mid, len - mid);
    in->cap = na + nb;
    in->jobs = submit_big_alloc(in->cap * sizeof *in->jobs);
    in->lines = submit_big_alloc(in->cap * sizeof *in->lines);
    s_part_t a = { .text = text + pos,
                   .len = mid - pos,
                   .defaults = defaults,
                   .arena = arena,
                   .jobs = in->jobs,
                   .lines_of = in->lines };
    s_part_t b = { .text = text + mid,
                   .len = len - mid,
                   .defaults = defaults,
                   .jobs = in->jobs + na,
                   .lines_of = in->lines + na };
    if (!in->jobs || !in->lines ||
        (b.len && !(b.arena = jobline_arena_new()))) {
        free(text);
        *line = 1;
        return SUBMIT_INPUT_NOMEM;
    }
    in->more = b.arena;
    pthread_t t;
    bool threaded = false;
    if (b.len) {
        /* Jansson makes its hash seed on first use; before a second
         * thread may race for it. */
        json_object_seed(0);
        threaded = pthread_create(&t, NULL, s_parse, &b) == 0;
    }
    s_parse(&a);
    if (threaded)
        pthread_join(t, NULL);
    else if (b.len)
        s_parse(&b);
    free(text);
    if (a.nomem_line || b.nomem_line) {
        *line = a.nomem_line ? a.nomem_line : a.lines + b.nomem_line;
        return SUBMIT_INPUT_NOMEM;
    }
    if (b.n && a.n < na) {
        memmove(in->jobs + a.n, b.jobs, b.n * sizeof *in->jobs);
        memmove(in->lines + a.n, b.lines_of, b.n * sizeof *in->lines);
    }
    for (size_t i = 0; i < b.n; i++)
        in->lines[a.n + i] += a.lines;
    in->n = a.n + b.n;
    *bads = a.bads;
    s_merge_bads(bads, &b.bads, a.lines);
    submit_bads_t refs = { 0 };
    s_check_refs(in, &refs);
    s_merge_bads(bads, &refs, 0);
    return SUBMIT_INPUT_OK;
}
