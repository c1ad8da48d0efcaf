#include "cli.h"
#include <stdio.h>
int
cancel_main(int argc, char **argv)
{
    (void)argc; (void)argv;
    return 1;
}
int
status_main(int argc, char **argv)
{
    (void)argc; (void)argv;
    return 1;
}
