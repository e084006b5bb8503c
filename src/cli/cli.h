/* The kiln command line: one cmd_<verb>() per file, dispatched by main.c.
 * A verb returns the process exit status and prints its own errors. */
#pragma once

#include <stdio.h>

#include <kiln/error.h>

int cmd_hash(int argc, char **argv);

/* Prints "kiln: <msg>" (and strerror of the code when the message lacks
 * detail) on stderr; returns the exit status 1. */
int cli_fail(const struct kiln_error *e);
/* Prints "kiln: <formatted>" on stderr; returns 1. */
int cli_failf(const char *fmt, ...) _printf_(1, 2);
