/* `drover top`: a live view of the collector's state (ncurses), refreshed
 * every --interval: brokers, workers summary, rates, queues, workers and
 * failures by category. q quits, r refreshes now. */
#include <curses.h>
#include <getopt.h>
#include <inttypes.h>
#include <jansson.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"
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

static void
s_draw(const char *ep, const json_t *st, const json_t *wk, const char *error)
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
    s_line(&y, A_REVERSE, "%-16s %7s %6s %5s %4s %6s %6s %6s %8s %8s", "QUEUE",
           "QUEUED", "SCHED", "RUN", "WRK", "IN/s", "OK/s", "FAIL/s",
           "WAIT p99", "RUN p99");
    json_t *q;
    json_array_foreach(json_object_get(st, "queues"), i, q)
    {
        const json_t *rates = json_object_get(q, "rates");
        const json_t *wt = json_object_get(q, "wait_ms");
        const json_t *rn = json_object_get(q, "run_ms");
        s_line(&y, 0, "%-16.16s %7s %6s %5s %4s %6s %6s %6s %8s %8s",
               monitor_str(q, "name", "?"), cli_num(monitor_int(q, "queued")),
               cli_num(monitor_int(q, "scheduled")),
               cli_num(monitor_int(q, "running")),
               cli_num(monitor_int(q, "workers")),
               cli_rate(s_rate1(rates, "submitted")),
               cli_rate(s_rate1(rates, "succeeded")),
               cli_rate(s_rate1(rates, "failed")),
               monitor_int(wt, "count") ? cli_dur(monitor_int(wt, "p99")) : "-",
               monitor_int(rn, "count") ? cli_dur(monitor_int(rn, "p99"))
                                        : "-");
    }
    y++;
    /* Failures at the bottom: reserve their lines before the workers. */
    const json_t *cats =
        json_object_get(json_object_get(st, "failures"), "categories");
    int reserve = json_array_size(cats) ? (int)json_array_size(cats) + 2 : 0;
    s_line(&y, A_REVERSE, "%-22s %-8s %5s %4s %7s %10s %7s %6s", "WORKER",
           "STATE", "SLOTS", "BUSY", "LEASED", "PROCESSED", "FAILED", "SEEN");
    const json_t *workers = json_object_get(wk, "workers");
    size_t shown = 0;
    json_array_foreach(workers, i, w)
    {
        if (y >= LINES - reserve - 1)
            break;
        const json_t *busy = json_object_get(w, "busy");
        s_line(&y, 0, "%-22.22s %-8s %5s %4s %7s %10s %7s %6s",
               monitor_str(w, "name", "?"), monitor_str(w, "state", "?"),
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

int
top_main(int argc, char **argv)
{
    static const char usage[] =
        "usage: drover top [--collector EP] [--interval S]\n"
        "\n"
        "A live view from the collector, refreshed every S seconds (1):\n"
        "brokers, workers online and busy, jobs/s, health, queues with depth,\n"
        "rates and p99 latencies, workers, failed attempts of the last hour\n"
        "by category. Keys: q quits, r refreshes now. Needs a terminal.\n";
    static const struct option opts[] = {
        { "collector", required_argument, 0, 'c' },
        { "interval", required_argument, 0, 'i' },
        { "help", no_argument, 0, 'h' },
        { 0, 0, 0, 0 },
    };
    const char *collector = NULL;
    int64_t interval_ms = 1000;
    optind = 1;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'c':
            collector = optarg;
            break;
        case 'i':
            if (dv_duration_parse(optarg, &interval_ms) != 0 ||
                interval_ms < 100) {
                fprintf(stderr, "drover top: --interval: at least 0.1 s\n");
                return 2;
            }
            break;
        case 'h':
            fputs(usage, stdout);
            return 0;
        default:
            fputs(usage, stderr);
            return 2;
        }
    }
    if (optind != argc) {
        fputs(usage, stderr);
        return 2;
    }
    if (!isatty(STDOUT_FILENO) || !isatty(STDIN_FILENO)) {
        fprintf(stderr, "drover top: needs a terminal; `drover status` and "
                        "--json listings work anywhere\n");
        return 2;
    }
    const char *ep = monitor_endpoint(collector);
    initscr();
    cbreak();
    noecho();
    keypad(stdscr, TRUE);
    curs_set(0);
    timeout((int)interval_ms);
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
        s_draw(ep, st, wk, error);
        json_decref(st);
        json_decref(wk);
        int key = getch();
        if (key == 'q' || key == 'Q' || key == 27)
            break;
    }
    endwin();
    return 0;
}
