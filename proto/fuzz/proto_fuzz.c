/* proto_fuzz - fuzz target for the wire decoder.
 *
 * Each input is decoded. A failed decode must own nothing and say why. A
 * message that decodes must encode, decode again to the same type, and
 * encode to the same bytes: decode and encode agree on every field.
 *
 * Built with clang and -DDROVER_FUZZ=ON this is a libFuzzer target
 * (DROVER_LIBFUZZER is defined). Otherwise main() replays every file in the
 * directories named on the command line, so ctest keeps the seed corpus and
 * every input that ever crashed (regressions/) passing. */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dv_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void
s_die(const char *what, const char *why)
{
    fprintf(stderr, "proto_fuzz: %s: %s\n", what, why ? why : "");
    abort();
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    dv_msg_t m, again;
    char why[512];
    int rc = dv_msg_decode(data, size, &m, why, sizeof why);
    if (rc != DV_OK) {
        if (m.priv_ || why[0] == '\0')
            s_die("failed decode kept memory or gave no reason", why);
        dv_msg_release(&m);
        return 0;
    }

    msgpack_sbuffer first, second;
    msgpack_sbuffer_init(&first);
    msgpack_sbuffer_init(&second);
    if (dv_msg_encode(&m, &first) != DV_OK)
        s_die("encode of a decoded message failed", dv_msg_type_name(m.type));
    rc = dv_msg_decode(first.data, first.size, &again, why, sizeof why);
    if (rc != DV_OK)
        s_die("re-decode failed", why);
    if (again.type != m.type)
        s_die("re-decode changed the type", dv_msg_type_name(again.type));
    if (dv_msg_encode(&again, &second) != DV_OK)
        s_die("second encode failed", dv_msg_type_name(m.type));
    if (first.size != second.size ||
        memcmp(first.data, second.data, first.size) != 0)
        s_die("encode(decode(x)) is not a fixed point",
              dv_msg_type_name(m.type));

    dv_msg_release(&again);
    dv_msg_release(&m);
    msgpack_sbuffer_destroy(&second);
    msgpack_sbuffer_destroy(&first);
    return 0;
}

#ifndef DROVER_LIBFUZZER

/* Runs one file through the target, from a buffer of exactly its size so
 * AddressSanitizer catches a read one byte past the end. */
static int
s_replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    size_t cap = 4096, n = 0;
    uint8_t *buf = malloc(cap);
    size_t r;
    while (buf && (r = fread(buf + n, 1, cap - n, f)) > 0) {
        n += r;
        if (n == cap) {
            uint8_t *nb = realloc(buf, cap * 2);
            if (!nb) {
                free(buf);
                buf = NULL;
                break;
            }
            buf = nb;
            cap *= 2;
        }
    }
    fclose(f);
    if (!buf)
        return -1;
    uint8_t *exact = malloc(n ? n : 1);
    if (!exact) {
        free(buf);
        return -1;
    }
    memcpy(exact, buf, n);
    free(buf);
    LLVMFuzzerTestOneInput(exact, n);
    free(exact);
    return 0;
}

int
main(int argc, char **argv)
{
    int files = 0;
    if (argc < 2) {
        fprintf(stderr, "usage: %s DIR...\n", argv[0]);
        return 2;
    }
    for (int i = 1; i < argc; i++) {
        DIR *dir = opendir(argv[i]);
        if (!dir) {
            fprintf(stderr, "proto_fuzz: cannot open %s\n", argv[i]);
            return 1;
        }
        struct dirent *de;
        while ((de = readdir(dir))) {
            if (de->d_name[0] == '.')
                continue;
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", argv[i], de->d_name);
            if (s_replay_file(path) != 0) {
                fprintf(stderr, "proto_fuzz: cannot read %s\n", path);
                closedir(dir);
                return 1;
            }
            files++;
        }
        closedir(dir);
    }
    /* Replaying nothing would pass silently: treat it as a broken setup. */
    if (files == 0) {
        fprintf(stderr, "proto_fuzz: no inputs found\n");
        return 1;
    }
    printf("proto_fuzz: %d inputs replayed, 0 failed\n", files);
    return 0;
}

#endif
