/* submit_example - submits 10 echo jobs with libdrover, waits for them and
 * prints each result.
 *
 *     cc submit_example.c $(pkg-config --cflags --libs libdrover)
 *     ./a.out [ENDPOINTS]    (default $DROVER_BROKER or tcp://127.0.0.1:7700)
 *
 * Needs a broker and a worker serving the "default" queue, e.g. `drover up`. */
#include <stdio.h>
#include <stdlib.h>

#include <drover.h>

#define N_JOBS 10

static int
on_result(const drover_result_t *r, void *arg)
{
    int *failed = arg;
    if (r->result_json)
        printf("job %zu %s %s: %s\n", r->index, r->id, r->state,
               r->result_json);
    else {
        printf("job %zu %s %s after %d attempt(s): %s %s\n", r->index, r->id,
               r->state, r->attempts, r->category ? r->category : "",
               r->error ? r->error : "");
        (*failed)++;
    }
    return 0; /* keep waiting for the others */
}

int
main(int argc, char **argv)
{
    drover_client_t *client = drover_connect(argc > 1 ? argv[1] : NULL, 5000);
    if (!client) {
        fprintf(stderr, "connect: %s\n", drover_last_error(NULL));
        return 2;
    }

    /* Ten jobs, all sent in one round trip. */
    drover_job_t jobs[N_JOBS];
    char payloads[N_JOBS][64];
    for (int i = 0; i < N_JOBS; i++) {
        drover_job_init(&jobs[i]);
        jobs[i].type = "echo";
        snprintf(payloads[i], sizeof payloads[i], "{\"n\": %d}", i);
        jobs[i].payload_json = payloads[i];
        jobs[i].batch = "example";
    }
    drover_ack_t acks[N_JOBS];
    int rc = drover_submit_many(client, jobs, N_JOBS, acks);
    if (rc != DROVER_OK) {
        fprintf(stderr, "submit: %s: %s\n", drover_strerror(rc),
                drover_last_error(client));
        drover_close(&client);
        return 3;
    }

    const char *ids[N_JOBS];
    size_t n = 0;
    for (int i = 0; i < N_JOBS; i++) {
        if (acks[i].error[0])
            fprintf(stderr, "job %d refused: %s\n", i, acks[i].error);
        else
            ids[n++] = acks[i].id;
    }
    printf("submitted %zu jobs\n", n);

    /* Results arrive as the jobs end, in any order. */
    int failed = 0;
    rc = drover_wait(client, ids, n, 60000, on_result, &failed);
    if (rc != DROVER_OK)
        fprintf(stderr, "wait: %s: %s\n", drover_strerror(rc),
                drover_last_error(client));
    drover_close(&client);
    return rc == DROVER_OK && failed == 0 && n == N_JOBS ? 0 : 1;
}
