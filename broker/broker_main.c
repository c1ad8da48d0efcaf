#include "broker.h"
#include <stdio.h>
int
broker_main(int argc, char **argv)
{
    (void)argc; (void)argv;
    fprintf(stderr, "drover broker: not built yet\n");
    return 1;
}
