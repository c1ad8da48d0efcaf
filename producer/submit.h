/* submit - the `drover submit` command. */
#ifndef SUBMIT_H
#define SUBMIT_H

int submit_main(int argc, char **argv);

#endif
