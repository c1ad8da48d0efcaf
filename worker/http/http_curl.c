/* http_curl - libcurl's multi interface inside the supervisor's poll:
 * curl says which sockets it waits on (http_on_socket) and when its next
 * timeout is (http_on_timer); the lane hands those sockets to zmq_poll
 * and their readiness back to curl, then settles finished requests. Also
 * the response body sink. Never blocks.
 *
 * Out of memory: a socket curl asks for that cannot be tracked fails its
 * transfer (curl reports it as an error for that request); poll items
 * that do not fit are left to curl's timer.
 */
#include <stdlib.h>
#include <string.h>

#include "dv_clock.h"
#include "http_internal.h"

int
http_on_socket(CURL *easy, curl_socket_t fd, int what, void *userp,
               void *socketp)
{
    (void)easy;
    (void)socketp;
    handler_http_t *self = userp;
    if (fd < 0)
        return 0;
    if (fd >= self->fdmap_len) {
        int n = self->fdmap_len ? self->fdmap_len : 256;
        while (n <= fd)
            n *= 2;
        int *m = realloc(self->fdmap, (size_t)n * sizeof *m);
        if (!m)
            return -1; /* curl fails the transfer that wanted the socket */
        for (int i = self->fdmap_len; i < n; i++)
            m[i] = -1;
        self->fdmap = m;
        self->fdmap_len = n;
    }
    int k = self->fdmap[fd];
    if (what == CURL_POLL_REMOVE) {
        if (k >= 0) {
            /* Swap the last one into its place. */
            self->socks[k] = self->socks[--self->nsocks];
            if (k < self->nsocks)
                self->fdmap[self->socks[k].fd] = k;
            self->fdmap[fd] = -1;
        }
        return 0;
    }
    if (k < 0) {
        if (self->nsocks == self->socks_cap) {
            int cap = self->socks_cap ? self->socks_cap * 2 : 64;
            http_sock_t *s = realloc(self->socks, (size_t)cap * sizeof *s);
            if (!s)
                return -1;
            self->socks = s;
            self->socks_cap = cap;
        }
        k = self->nsocks++;
        self->socks[k].fd = fd;
        self->fdmap[fd] = k;
    }
    self->socks[k].what = what;
    return 0;
}

int
http_on_timer(CURLM *multi, long timeout_ms, void *userp)
{
    (void)multi;
    handler_http_t *self = userp;
    self->timer_at = timeout_ms < 0 ? INT64_MAX : dv_mono_ms() + timeout_ms;
    return 0;
}

size_t
http_on_body(char *data, size_t size, size_t n, void *userp)
{
    http_req_t *r = userp;
    size_t len = size * n;
    if (r->resp_len + len > HTTP_RESPONSE_MAX) {
        r->too_big = true;
        return 0; /* curl fails the transfer with CURLE_WRITE_ERROR */
    }
    if (r->resp_len + len + 1 > r->resp_cap) {
        size_t cap = r->resp_cap ? r->resp_cap : 1024;
        while (cap < r->resp_len + len + 1)
            cap *= 2;
        char *p = realloc(r->resp, cap);
        if (!p)
            return 0;
        r->resp = p;
        r->resp_cap = cap;
    }
    memcpy(r->resp + r->resp_len, data, len);
    r->resp_len += len;
    r->resp[r->resp_len] = '\0';
    return len;
}

int
http_poll_count(const void *lane)
{
    return ((const handler_http_t *)lane)->nsocks;
}

int
http_poll_items(void *lane, zmq_pollitem_t *items, int max)
{
    handler_http_t *self = lane;
    if (self->poll_cap < self->nsocks) {
        int cap = self->nsocks * 2;
        int *m = realloc(self->poll_map, (size_t)cap * sizeof *m);
        if (m) {
            self->poll_map = m;
            self->poll_cap = cap;
        }
        /* else: poll what fits; curl's timer looks after the rest */
    }
    if (max > self->poll_cap)
        max = self->poll_cap;
    int n = 0;
    for (int i = 0; i < self->nsocks && n < max; i++) {
        const http_sock_t *s = &self->socks[i];
        short ev = 0;
        if (s->what == CURL_POLL_IN || s->what == CURL_POLL_INOUT)
            ev |= ZMQ_POLLIN;
        if (s->what == CURL_POLL_OUT || s->what == CURL_POLL_INOUT)
            ev |= ZMQ_POLLOUT;
        items[n] = (zmq_pollitem_t){ NULL, s->fd, ev, 0 };
        self->poll_map[n] = s->fd;
        n++;
    }
    return n;
}

void
http_io(void *lane, const zmq_pollitem_t *items, int n)
{
    handler_http_t *self = lane;
    if (!self->multi)
        return;
    int running;
    for (int k = 0; k < n; k++) {
        short re = items[k].revents;
        if (!re)
            continue;
        int ev = 0;
        if (re & ZMQ_POLLIN)
            ev |= CURL_CSELECT_IN;
        if (re & ZMQ_POLLOUT)
            ev |= CURL_CSELECT_OUT;
        if (re & ZMQ_POLLERR)
            ev |= CURL_CSELECT_ERR | CURL_CSELECT_IN;
        curl_multi_socket_action(self->multi, self->poll_map[k], ev, &running);
    }
    if (self->timer_at <= dv_mono_ms()) {
        self->timer_at = INT64_MAX; /* curl may set a new one in there */
        curl_multi_socket_action(self->multi, CURL_SOCKET_TIMEOUT, 0, &running);
    }
    http_harvest(self);
}
