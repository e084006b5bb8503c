/* Daemon logging: one line per call at debug level (KILN_LOG=debug), one
 * line per failed call and per server problem on stderr. */
#pragma once

#include <stdbool.h>

#include <kiln/util/util.h>

bool daemon_log_debug_enabled(void);
void daemon_log_debug(const char *fmt, ...) _printf_(1, 2);
void daemon_log_error(const char *fmt, ...) _printf_(1, 2);
