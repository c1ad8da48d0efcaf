/* collector_store_be - what a history backend provides to collector_store.
 *
 * collector_store.c picks a backend by the --store URL and forwards every
 * call of collector_store.h to it, unchanged: each entry has the contract
 * of the function of the same name there. A backend defines its own
 * struct collector_store_be; only it looks inside.
 *
 * Backends: collector_store_sqlite.c (a file, the default) and
 * collector_store_pg.c (PostgreSQL over libpq). Both keep the same tables
 * and columns and give the same JSON for every read, so the query verbs
 * and the HTTP API do not know which one runs.
 */
#ifndef COLLECTOR_STORE_BE_H
#define COLLECTOR_STORE_BE_H

#include "collector_store.h"

typedef struct collector_store_be collector_store_be_t;

typedef struct {
    const char *name; /* "sqlite", "postgres" */
    /* arg: the file path (SQLite) or the whole URL (PostgreSQL). Logs
     * collector.store_open_failed and returns NULL on failure. */
    collector_store_be_t *(*open)(const char *arg);
    void (*close)(collector_store_be_t **self_p);
    /* For status and logs: never holds a password. */
    const char *(*path)(const collector_store_be_t *self);
    int (*event)(collector_store_be_t *self, const char *broker,
                 const dv_event_t *ev, int64_t run_ms,
                 const collector_store_fold_t *fold);
    int (*backfill)(collector_store_be_t *self, const char *broker,
                    const dv_finished_job_t *job);
    int (*broker_save)(collector_store_be_t *self, const char *endpoint,
                       const char *instance, uint64_t seq);
    int (*broker_load)(collector_store_be_t *self, const char *endpoint,
                       char *instance, size_t size, uint64_t *seq,
                       int64_t *saved_ms);
    int (*commit)(collector_store_be_t *self);
    json_t *(*jobs)(collector_store_be_t *self,
                    const collector_jobs_filter_t *f);
    json_t *(*job)(collector_store_be_t *self, const char *id, int *found);
    json_t *(*batch)(collector_store_be_t *self, const char *name,
                     int64_t since_ms);
    json_t *(*failures)(collector_store_be_t *self, int64_t since_ms);
    int (*expire)(collector_store_be_t *self, int64_t cutoff_ms, int max_rows);
} collector_store_ops_t;

/* Every state a jobs row may hold (dv_state_name of DV_STATE_QUEUED up to
 * DV_STATE_WAITING), as an SQL list, for "state IN (...)": jobs_state
 * (state, updated_at) is the only index on updated_at, and with the states
 * named the store reads one range of it per state. collector_test checks
 * it against dv_state_name. */
#define COLLECTOR_STORE_STATES                                                 \
    "'queued', 'scheduled', 'running', 'succeeded', 'failed', 'dead', "        \
    "'cancelled', 'unknown', 'waiting'"

/* Room for collector_store_all_states()'s statement. */
#define COLLECTOR_STORE_ALL_STATES_SQL 8192

/* Writes into sql a listing of all states, newest first, over jobs_state:
 * head, then branch once per state (its one "%s" replaced with the
 * state's name quoted) wrapped in open and close and joined by UNION ALL,
 * then tail. branch is the listing of one state with ORDER BY and LIMIT,
 * so each reads only its newest rows, and tail orders their union and
 * limits it again. Returns 0, or -1 when it does not fit. */
int collector_store_all_states(char *sql, size_t size, const char *branch,
                               const char *head, const char *open,
                               const char *close, const char *tail);

extern const collector_store_ops_t collector_store_sqlite_ops;
extern const collector_store_ops_t collector_store_pg_ops;

#endif
