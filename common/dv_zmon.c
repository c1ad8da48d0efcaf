/* dv_zmon - watches a connecting socket's connection; see dv_zmon.h. */
#include "dv_zmon.h"

#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <zmq.h>

void
dv_zmon_start(dv_zmon_t *m, void *ctx, void *sock)
{
    m->pair = NULL;
    m->connected = false;
    char addr[96];
    snprintf(addr, sizeof addr, "inproc://dv-zmon-%p-%u", (void *)m, ++m->seq);
    if (zmq_socket_monitor(sock, addr,
                           ZMQ_EVENT_HANDSHAKE_SUCCEEDED |
                               ZMQ_EVENT_DISCONNECTED) != 0)
        return;
    void *pair = zmq_socket(ctx, ZMQ_PAIR);
    int zero = 0;
    if (pair)
        zmq_setsockopt(pair, ZMQ_LINGER, &zero, sizeof zero);
    if (pair && zmq_connect(pair, addr) != 0) {
        zmq_close(pair);
        pair = NULL;
    }
    if (!pair)
        zmq_socket_monitor(sock, NULL, 0);
    m->pair = pair;
}

void
dv_zmon_stop(dv_zmon_t *m, void *sock)
{
    if (sock && m->pair)
        zmq_socket_monitor(sock, NULL, 0);
    if (m->pair)
        zmq_close(m->pair);
    m->pair = NULL;
    m->connected = false;
}

void *
dv_zmon_socket(const dv_zmon_t *m)
{
    return m->pair;
}

/* Receives one frame without waiting; false if there is none. *more says
 * whether another frame of the message follows. */
static bool
s_recv(void *pair, uint16_t *event, bool *more)
{
    zmq_msg_t f;
    zmq_msg_init(&f);
    if (zmq_msg_recv(&f, pair, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&f);
        return false;
    }
    if (event && zmq_msg_size(&f) >= 2)
        memcpy(event, zmq_msg_data(&f), 2);
    *more = zmq_msg_more(&f);
    zmq_msg_close(&f);
    return true;
}

bool
dv_zmon_lost(dv_zmon_t *m)
{
    bool lost = false, more;
    uint16_t event = 0;
    while (m->pair && s_recv(m->pair, &event, &more)) {
        /* An event is two frames: its number and value, then the
         * endpoint. */
        while (more && s_recv(m->pair, NULL, &more))
            ;
        if (event == ZMQ_EVENT_HANDSHAKE_SUCCEEDED) {
            m->connected = true;
        } else if (event == ZMQ_EVENT_DISCONNECTED && m->connected) {
            m->connected = false;
            lost = true;
        }
        event = 0;
    }
    return lost;
}
