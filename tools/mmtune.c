/* mmtune.c — the command-line interface (placeholder until the CLI lands). */
#include <stdio.h>
#include "mmtune.h"
int main(void) { printf("mmtune %s\n", MMT_VERSION_STRING); return 0; }
