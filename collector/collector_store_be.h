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

extern const collector_store_ops_t collector_store_sqlite_ops;
extern const collector_store_ops_t collector_store_pg_ops;

#endif
