#include "submit.h"
#include <stdio.h>
int
submit_main(int argc, char **argv)
{
    (void)argc; (void)argv;
    fprintf(stderr, "drover submit: not built yet\n");
    return 2;
}
