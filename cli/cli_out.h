/* cli_out - how drover's commands print for people: numbers and durations,
 * table cells that never cut a word silently, and the one progress bar
 * (submit --wait, watch, top). JSON output is cli_print_json (cli_cmd.h).
 *
 * The formatting functions return rotating static buffers (16 live at
 * once), so several can go in one printf.
 */
#ifndef CLI_OUT_H
#define CLI_OUT_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

/* 1,234,567 */
const char *cli_num(int64_t v);

/* 850ms, 1.2s, 3m04s, 2h05m, 3d04h; "-" when negative. */
const char *cli_dur(int64_t ms);

/* A rate at sensible precision: 0, 0.42, 4.2, 42, 4,200. */
const char *cli_rate(double r);

/* s fitted into width columns (UTF-8 characters): as it is when it fits or
 * wide is set, else cut at a character boundary with "…" as its last
 * column. NULL is "-". */
const char *cli_cell(const char *s, int width, bool wide);

/* Prints s left-aligned in width columns (padded with spaces, cut as
 * cli_cell), then sep. */
void cli_col(FILE *out, const char *s, int width, bool wide, const char *sep);

/* What a progress bar shows. */
typedef struct {
    int64_t done, total; /* ended, of total */
    int64_t succeeded, dead, cancelled;
    int64_t running; /* -1: not known */
    double rate;     /* jobs ended per second */
    double eta_s;    /* < 0: not known */
} cli_progress_t;

/* The progress bar, on a terminal: redrawn in place on out
 *     [########----------] 1,234/2,000  62%  ok 1,200  dead 34  410/s  ETA 2s
 * final ends the line. */
void cli_bar(FILE *out, const cli_progress_t *p, bool final);

/* The same as a line for logs and pipes ("label: 1,234/2,000 (62%) ..."). */
void cli_progress_line(FILE *out, const char *label, const cli_progress_t *p);

#endif
