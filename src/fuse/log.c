/* What every part of the mount shares: its log line, and the per-thread
 * reply buffers. */
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>

#include "fuse_int.h"

void kfuse_log(struct kiln_fuse *f, const char *fmt, ...)
{
        char line[1024];
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(line, sizeof(line), fmt, ap);
        va_end(ap);
        if (f->opts.log) {
                f->opts.log(f->opts.log_ctx, line);
                return;
        }
        /* One write per line, so lines from concurrent threads do not mix. */
        char out[1100];
        int n = snprintf(out, sizeof(out), "kiln: fuse: %s\n", line);
        if (n > (int)sizeof(out) - 1)
                n = (int)sizeof(out) - 1;
        (void)!write(STDERR_FILENO, out, (size_t)n);
}

static __thread uint8_t *thread_buf;
static __thread size_t thread_buf_cap;

/* Kept for the thread's life: page faults are expensive, reuse is cheap. */
void *kfuse_thread_buf(size_t n)
{
        if (n > thread_buf_cap) {
                free(thread_buf);
                thread_buf_cap = KILN_MAX(n, (size_t)64 * 1024);
                thread_buf = kiln_malloc(thread_buf_cap);
        }
        return thread_buf;
}

void kfuse_thread_buf_free(void)
{
        free(thread_buf);
        thread_buf = NULL;
        thread_buf_cap = 0;
}
