/* `drover top`: a live view of the collector's state (ncurses), refreshed
 * every --interval: brokers, workers summary, rates, queues with their
 * state and limits, workers and failures by category. q quits, r
 * refreshes now. With --json, one snapshot of the same. */
#include <curses.h>
#include <inttypes.h>
#include <locale.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
#include "cli_cmd.h"
#include "dv_clock.h"
#include "monitor.h"

/* One screen line, cut to the terminal's width. */
static void
s_line(int *y, int attr, const char *fmt, ...)
{
    if (*y >= LINES)
        return;
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    if (attr)
        attron(attr);
    mvaddnstr(*y, 0, text, COLS > 0 ? COLS : 80);
    if (attr)
        attroff(attr);
    (*y)++;
}

static double
s_rate1(const json_t *rates, const char *kind)
{
    return json_number_value(json_array_get(json_object_get(rates, kind), 0));
}

/* name padded to width columns, or cut with an ellipsis. */
static const char *
s_pad(const char *name, int width, bool wide)
{
    static char bufs[4][600];
    static int next;
    char *b = bufs[next++ & 3];
    const char *cell = cli_cell(name, width, wide);
    int cols = 0;
    for (const char *p = cell; *p; p++)
        cols += ((unsigned char)*p & 0xc0) != 0x80;
    snprintf(b, sizeof bufs[0], "%s%*s", cell, cols < width ? width - cols : 0,
             "");
    return b;
}

static void
s_draw(const char *ep, const json_t *st, const json_t *wk, const char *error,
       bool wide)
{
    erase();
    int y = 0;
    char clock[32];
    time_t now = time(NULL);
    strftime(clock, sizeof clock, "%H:%M:%S", localtime(&now));
    s_line(&y, A_BOLD, "drover top  %s  %s   (q quits)", ep, clock);
    if (!st) {
        y++;
        s_line(&y, A_BOLD, "%s", error);
        s_line(&y, 0, "retrying every refresh...");
        refresh();
        return;
    }
    int64_t wall = dv_now_ms();
    size_t i;
    json_t *b;
    json_array_foreach(json_object_get(st, "brokers"), i, b)
    {
        const json_t *last = json_object_get(b, "last_event_ms");
        s_line(&y, 0, "broker %s  %s  seq %s  last event %s ago",
               monitor_str(b, "endpoint", "?"), monitor_str(b, "state", "?"),
               cli_num(monitor_int(b, "last_seq")),
               json_is_integer(last) ? cli_dur(wall - json_integer_value(last))
                                     : "never");
    }
    const json_t *w = json_object_get(st, "workers");
    s_line(&y, 0,
           "workers %s online: %s busy, %s idle, %s draining; %s/%s slots "
           "busy; %s jobs started",
           cli_num(monitor_int(w, "online")), cli_num(monitor_int(w, "busy")),
           cli_num(monitor_int(w, "idle")), cli_num(monitor_int(w, "draining")),
           cli_num(monitor_int(w, "busy_slots")),
           cli_num(monitor_int(w, "slots")),
           cli_num(monitor_int(w, "running_jobs")));
    const json_t *r = json_object_get(st, "rates");
    s_line(&y, 0, "jobs/s (1m): in %s  succeeded %s  failed %s  dead %s",
           cli_rate(s_rate1(r, "submitted")), cli_rate(s_rate1(r, "succeeded")),
           cli_rate(s_rate1(r, "failed")), cli_rate(s_rate1(r, "dead")));
    const json_t *h = json_object_get(st, "health");
    const char *hs = monitor_str(h, "state", "?");
    const json_t *reasons = json_object_get(h, "reasons");
    s_line(&y, strcmp(hs, "healthy") ? A_BOLD : 0, "health: %s%s%s", hs,
           json_array_size(reasons) ? ": " : "",
           json_array_size(reasons)
               ? json_string_value(json_array_get(reasons, 0))
               : "");
    y++;
    s_line(&y, A_REVERSE,
           "%-16s %-6s %7s %6s %7s %7s %6s %6s %6s %8s %8s %8s %7s", "QUEUE",
           "STATE", "QUEUED", "SCHED", "RUNNING", "WORKERS", "IN/s", "OK/s",
           "FAIL/s", "WAIT p99", "RUN p99", "LIMIT/s", "MAX RUN");
    json_t *q;
    json_array_foreach(json_object_get(st, "queues"), i, q)
    {
        const json_t *rates = json_object_get(q, "rates");
        const json_t *wt = json_object_get(q, "wait_ms");
        const json_t *rn = json_object_get(q, "run_ms");
        double limit = json_number_value(json_object_get(q, "rate_limit"));
        int64_t max_running = monitor_int(q, "max_running");
        s_line(&y, 0, "%s %-6s %7s %6s %7s %7s %6s %6s %6s %8s %8s %8s %7s",
               s_pad(monitor_str(q, "name", "?"), 16, wide),
               json_is_true(json_object_get(q, "paused")) ? "paused" : "active",
               cli_num(monitor_int(q, "queued")),
               cli_num(monitor_int(q, "scheduled")),
               cli_num(monitor_int(q, "running")),
               cli_num(monitor_int(q, "workers")),
               cli_rate(s_rate1(rates, "submitted")),
               cli_rate(s_rate1(rates, "succeeded")),
               cli_rate(s_rate1(rates, "failed")),
               monitor_int(wt, "count") ? cli_dur(monitor_int(wt, "p99")) : "-",
               monitor_int(rn, "count") ? cli_dur(monitor_int(rn, "p99")) : "-",
               limit > 0 ? cli_rate(limit) : "-",
               max_running > 0 ? cli_num(max_running) : "-");
    }
    y++;
    /* Failures at the bottom: reserve their lines before the workers. */
    const json_t *cats =
        json_object_get(json_object_get(st, "failures"), "categories");
    int reserve = json_array_size(cats) ? (int)json_array_size(cats) + 2 : 0;
    s_line(&y, A_REVERSE, "%-22s %-8s %5s %4s %7s %10s %7s %9s", "WORKER",
           "STATE", "SLOTS", "BUSY", "LEASED", "PROCESSED", "FAILED",
           "LAST SEEN");
    const json_t *workers = json_object_get(wk, "workers");
    size_t shown = 0;
    json_array_foreach(workers, i, w)
    {
        if (y >= LINES - reserve - 1)
            break;
        const json_t *busy = json_object_get(w, "busy");
        s_line(&y, 0, "%s %-8s %5s %4s %7s %10s %7s %5s ago",
               s_pad(monitor_str(w, "name", "?"), 22, wide),
               monitor_str(w, "state", "?"),
               cli_num(monitor_int(w, "concurrency")),
               json_is_integer(busy) ? cli_num(json_integer_value(busy)) : "-",
               cli_num(monitor_int(w, "running")),
               cli_num(monitor_int(w, "processed")),
               cli_num(monitor_int(w, "failed")),
               cli_dur(monitor_int(w, "heartbeat_age_ms")));
        shown++;
    }
    if (shown < json_array_size(workers))
        s_line(&y, 0, "... %zu more workers", json_array_size(workers) - shown);
    if (reserve) {
        y++;
        s_line(&y, A_REVERSE, "%-18s %7s  %s", "FAILURES (1h)", "COUNT",
               "HINT");
        json_t *c;
        json_array_foreach(cats, i, c)
        {
            const char *cat = monitor_str(c, "category", "unknown");
            const char *hint = monitor_hint(cat);
            s_line(&y, 0, "%-18s %7s  %s", cat,
                   cli_num(monitor_int(c, "count")), hint ? hint : "");
        }
    }
    refresh();
}

static struct {
    int64_t interval_ms;
} s_o;

static const dv_flag_t s_flags[] = {
    DV_FLAG_DUR("interval", &s_o.interval_ms, 100, 3600 * 1000.0,
                .arg = "SECONDS", .dflt = "1",
                .help = "how often the view is refreshed"),
    DV_FLAG_TABLE_END,
};

/* --json: one snapshot of what the screen shows. */
static int
s_snapshot(cli_t *c, const char *ep)
{
    json_t *st = NULL, *wk = NULL;
    int rc = monitor_query(ep, "top", "status", NULL, NULL, 2000, &st, true);
    if (rc == 0)
        rc = monitor_query(ep, "top", "workers", NULL, NULL, 2000, &wk, true);
    if (rc != 0) {
        json_decref(st);
        return cli_fail(c, (cli_exit_t)rc, NULL, "%s", monitor_query_error());
    }
    json_t *out = json_pack("{s:O, s:O}", "status", st, "workers",
                            json_object_get(wk, "workers"));
    cli_print_json(out);
    json_decref(out);
    json_decref(st);
    json_decref(wk);
    return 0;
}

static int
s_top(cli_t *c, int argc, char **argv)
{
    (void)argc;
    (void)argv;
    const char *ep = monitor_endpoint(c->collector);
    if (c->json)
        return s_snapshot(c, ep);
    if (!isatty(STDOUT_FILENO) || !isatty(STDIN_FILENO))
        return cli_fail(c, CLI_USAGE, "usage",
                        "needs a terminal; `drover status`, the listings and "
                        "`drover top --json` work anywhere");
    setlocale(LC_ALL, "");
    initscr();
    cbreak();
    noecho();
    keypad(stdscr, TRUE);
    curs_set(0);
    timeout((int)s_o.interval_ms);
    for (;;) {
        json_t *st = NULL, *wk = NULL;
        char error[256] = "";
        int rc =
            monitor_query(ep, "top", "status", NULL, NULL, 2000, &st, true);
        if (rc == 0)
            rc = monitor_query(ep, "top", "workers", NULL, NULL, 2000, &wk,
                               true);
        if (rc != 0) {
            json_decref(st);
            st = NULL;
            snprintf(error, sizeof error,
                     "cannot reach the collector at %s (is `drover collector` "
                     "running?)",
                     ep);
        }
        s_draw(ep, st, wk, error, c->wide);
        json_decref(st);
        json_decref(wk);
        int key = getch();
        if (key == 'q' || key == 'Q' || key == 27)
            break;
    }
    endwin();
    return 0;
}

const cli_cmd_t cli_top = {
    .name = "top",
    .summary = "live view of workers, queues and their limits, failures",
    .about = "A live view from the collector, refreshed every --interval: "
             "brokers, workers online and busy, jobs per second, health, "
             "queues with their state (active or paused), depth, rates, 99th "
             "percentile wait and run times, rate limit (LIMIT/s) and "
             "running limit (MAX RUN), workers, and failed attempts of the "
             "last hour by category. Keys: q quits, any other refreshes "
             "now. Needs a terminal; with --json, prints one snapshot "
             "(the collector's status and its workers) and exits.",
    .examples = "  drover top --interval 0.5\n  drover top --json | jq "
                "'.status.queues[] | {name, paused}'\n",
    .flags = s_flags,
    .shared = CLI_JSON | CLI_COLLECTOR | CLI_WIDE,
    .run = s_top,
};
