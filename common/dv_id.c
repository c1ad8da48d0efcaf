#include "dv_id.h"
#include "dv_clock.h"

#include <stdio.h>
#include <string.h>
#include <sys/random.h>

static int64_t s_last_ms;
static uint64_t s_counter; /* 74 bits of rand_a + rand_b; we use the low 62 */
static uint16_t s_rand_a;

void
dv_id_new(dv_id_t *id)
{
    int64_t ms = dv_now_ms();
    if (ms > s_last_ms) {
        s_last_ms = ms;
        uint8_t r[10];
        if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r)
            memset(r, 0x5a, sizeof r);
        s_rand_a = (uint16_t)((r[0] << 8 | r[1]) & 0x0fff);
        s_counter = 0;
        for (int i = 2; i < 10; i++)
            s_counter = s_counter << 8 | r[i];
        s_counter &= 0x0fffffffffffffffULL; /* room to count up */
    } else {
        /* Same (or earlier: clock stepped back) millisecond: keep ordering. */
        s_counter++;
        if (s_counter & 0x4000000000000000ULL) {
            s_last_ms++;
            s_counter = 0;
        }
        ms = s_last_ms;
    }
    uint64_t t = (uint64_t)ms;
    for (int i = 0; i < 6; i++)
        id->b[i] = (uint8_t)(t >> (40 - 8 * i));
    id->b[6] = (uint8_t)(0x70 | (s_rand_a >> 8));
    id->b[7] = (uint8_t)s_rand_a;
    uint64_t c = s_counter;
    id->b[8] = (uint8_t)(0x80 | ((c >> 56) & 0x3f));
    for (int i = 9; i < 16; i++)
        id->b[i] = (uint8_t)(c >> (8 * (15 - i)));
}

void
dv_id_format(const dv_id_t *id, char out[DV_ID_TEXT_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    int o = 0;
    for (int i = 0; i < 16; i++) {
        if (i == 4 || i == 6 || i == 8 || i == 10)
            out[o++] = '-';
        out[o++] = hex[id->b[i] >> 4];
        out[o++] = hex[id->b[i] & 15];
    }
    out[o] = '\0';
}

static int
s_hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int
dv_id_parse(const char *text, unsigned len, dv_id_t *id)
{
    if (!text || len != DV_ID_TEXT_LEN)
        return -1;
    int b = 0;
    for (unsigned i = 0; i < len;) {
        if (i == 8 || i == 13 || i == 18 || i == 23) {
            if (text[i] != '-')
                return -1;
            i++;
            continue;
        }
        int hi = s_hexval(text[i]), lo = s_hexval(text[i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        id->b[b++] = (uint8_t)(hi << 4 | lo);
        i += 2;
    }
    return b == 16 ? 0 : -1;
}

int64_t
dv_id_time_ms(const dv_id_t *id)
{
    int64_t t = 0;
    for (int i = 0; i < 6; i++)
        t = t << 8 | id->b[i];
    return t;
}
