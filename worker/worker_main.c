#include "worker.h"
#include <stdio.h>
int
worker_main(int argc, char **argv)
{
    (void)argc; (void)argv;
    fprintf(stderr, "drover worker: not built yet\n");
    return 1;
}
