#include "cli.h"
#include <stdio.h>
int
up_main(int argc, char **argv)
{
    (void)argc; (void)argv;
    fprintf(stderr, "drover up: not built yet\n");
    return 1;
}
