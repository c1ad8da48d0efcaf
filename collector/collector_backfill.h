/* collector_backfill - the finished jobs whose events were lost, read back
 * from the broker and put into the history.
 *
 * A broker never waits for a slow subscriber: its PUB socket drops what a
 * full subscriber cannot take, and the collector sees a gap in the events'
 * sequence numbers. The snapshot it asks for then repairs the live state;
 * this module repairs the history. Each gap gives a window of time (from
 * the last event before it, less a margin, to the first event after it);
 * the module pages
 * through the jobs that finished in it with ctrl "finished" (since, until,
 * after, limit), on the dealer the snapshots use, one page in flight per
 * broker, and writes each job the history lacks, or has unfinished, with
 * its final state (collector_store_backfill), counting it then in the
 * totals and rates (collector_state_backfill). A job the history has
 * finished already is left alone and not counted again, so a window read
 * twice does no harm. Windows of gaps that come while one is being read
 * are merged into it.
 *
 * A broker that does not know the verb (an older one) is not asked again
 * (logged once); a page refused or not answered in time is asked again
 * after a pause. Loop thread only; never blocks (the store's writes go
 * into the open group).
 */
#ifndef COLLECTOR_BACKFILL_H
#define COLLECTOR_BACKFILL_H

#include <msgpack.h>
#include <stdbool.h>
#include <stdint.h>

#include "collector_state.h"
#include "collector_store.h"
#include "dv_proto.h"

/* A gap's window starts this much before the last event before it (a
 * job's end is stored a moment before its event is made, and after the
 * collector's own absence the window starts at its last commit, on its
 * own clock). */
#define COLLECTOR_BACKFILL_MARGIN_MS 2000
/* Jobs asked for in one page. */
#define COLLECTOR_BACKFILL_PAGE 1000

typedef struct collector_backfill collector_backfill_t;

/* For nbrokers brokers (COLLECTOR_BROKERS_MAX at most). NULL when out of
 * memory. */
collector_backfill_t *collector_backfill_new(int nbrokers);

/* NULL-safe; sets *self_p to NULL. */
void collector_backfill_destroy(collector_backfill_t **self_p);

/* Broker b's events between the times from_ms and to_ms (epoch ms, the
 * events on either side of the gap) were lost: read that window back. */
void collector_backfill_gap(collector_backfill_t *self, int b, int64_t from_ms,
                            int64_t to_ms);

/* If broker b has a page to ask for now (a window pending, none in flight,
 * not pausing after a failure), appends its args to args and returns true;
 * the caller sends ctrl "finished" with them and calls
 * collector_backfill_sent(). */
bool collector_backfill_due(collector_backfill_t *self, int b, int64_t mono,
                            msgpack_sbuffer *args);

/* The page was sent as request req (0: it could not be sent; asked again
 * after a pause). */
void collector_backfill_sent(collector_backfill_t *self, int b, uint64_t req,
                             int64_t mono);

/* Whether req is broker b's page in flight. */
bool collector_backfill_owns(const collector_backfill_t *self, int b,
                             uint64_t req);

/* A page in flight for longer than timeout_ms is given up and asked again
 * after a pause. Returns ms until this needs looking at again (at most
 * max_ms). */
int64_t collector_backfill_check(collector_backfill_t *self, int b,
                                 int64_t mono, int64_t timeout_ms,
                                 int64_t max_ms);

/* The broker's answer (reply or error) to b's page: the jobs the history
 * lacks go into it (store, under the broker's endpoint) and are counted
 * (state), at now_ms. Returns how many were added, or -1 when the answer
 * was a refusal (logged). */
int collector_backfill_answer(collector_backfill_t *self, int b,
                              const dv_msg_t *msg, collector_store_t *store,
                              collector_state_t *state, const char *endpoint,
                              int64_t now_ms, int64_t mono);

/* Jobs added for broker b since the start. */
uint64_t collector_backfill_added(const collector_backfill_t *self, int b);

#endif
