/* fuzz_replay - the main() of every fuzz target built without libFuzzer:
 * replays each file in the directories given (the seed corpus and the
 * regressions) through LLVMFuzzerTestOneInput, so a fuzz target doubles as
 * a ctest. A target that crashes or trips a sanitizer fails the test; no
 * input at all fails it too, since that is a broken setup. */
#include <dirent.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Runs one file through the target, from a buffer of exactly its size so
 * AddressSanitizer catches a read one byte past the end. */
static int
s_replay_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    long n = fseek(f, 0, SEEK_END) == 0 ? ftell(f) : -1;
    uint8_t *buf =
        n >= 0 && fseek(f, 0, SEEK_SET) == 0 ? malloc(n ? (size_t)n : 1) : NULL;
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        fclose(f);
        return -1;
    }
    fclose(f);
    LLVMFuzzerTestOneInput(buf, (size_t)n);
    free(buf);
    return 0;
}

int
main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s DIR...\n", argv[0]);
        return 2;
    }
    int files = 0;
    for (int i = 1; i < argc; i++) {
        DIR *dir = opendir(argv[i]);
        if (!dir) {
            fprintf(stderr, "%s: cannot open %s\n", argv[0], argv[i]);
            return 1;
        }
        struct dirent *de;
        while ((de = readdir(dir))) {
            if (de->d_name[0] == '.')
                continue;
            char path[4096];
            snprintf(path, sizeof path, "%s/%s", argv[i], de->d_name);
            if (s_replay_file(path) != 0) {
                fprintf(stderr, "%s: cannot read %s\n", argv[0], path);
                closedir(dir);
                return 1;
            }
            files++;
        }
        closedir(dir);
    }
    if (files == 0) {
        fprintf(stderr, "%s: no inputs found\n", argv[0]);
        return 1;
    }
    printf("%s: %d inputs replayed, 0 failed\n", argv[0], files);
    return 0;
}
