/* Watching a running build: its stdout and stderr flow through pipes into
 * the bundle's log files and a tail kept for failure messages, while the
 * wall-clock limit, the silence limit, the log size cap and the caller's
 * cancel token are enforced. The build never writes to a host file itself,
 * so a build that prints forever fills nothing but the capped log. */
#include <fcntl.h>
#include <poll.h>
#include <time.h>

#include "runner.h"

/* Bytes read per read(): a pipe holds 64 KiB, a small buffer on the thread's
 * stack costs fewer fresh pages per build (page faults are expensive: docs/ARCHITECTURE.md). */
#define READ_SIZE (16 * 1024)
/* Seconds between checks of the process limit (v1 has no notification). */
#define CHECK_INTERVAL 0.25

static double now(void)
{
        struct timespec ts;
        clock_gettime(CLOCK_MONOTONIC, &ts);
        return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void tail_append(struct runner_tail *t, const char *p, size_t n)
{
        if (n >= RUNNER_TAIL_SIZE) {
                memcpy(t->buf, p + n - RUNNER_TAIL_SIZE, RUNNER_TAIL_SIZE);
                t->start = 0;
                t->len = RUNNER_TAIL_SIZE;
                return;
        }
        size_t end = (t->start + t->len) % RUNNER_TAIL_SIZE;
        size_t first = KILN_MIN(n, RUNNER_TAIL_SIZE - end);
        memcpy(t->buf + end, p, first);
        memcpy(t->buf, p + first, n - first);
        if (t->len + n > RUNNER_TAIL_SIZE) {
                t->start = (t->start + t->len + n - RUNNER_TAIL_SIZE) % RUNNER_TAIL_SIZE;
                t->len = RUNNER_TAIL_SIZE;
        } else {
                t->len += n;
        }
}

char *runner_tail_text(const struct runner_tail *t, int lines)
{
        char *s = kiln_malloc(t->len + 1);
        size_t first = KILN_MIN(t->len, RUNNER_TAIL_SIZE - t->start);
        memcpy(s, t->buf + t->start, first);
        memcpy(s + first, t->buf, t->len - first);
        size_t n = t->len;
        while (n > 0 && s[n - 1] == '\n')
                n--;
        s[n] = '\0';
        if (n == 0) {
                free(s);
                return NULL;
        }
        char *start = s + n;
        int seen = 0;
        while (start > s) {
                if (start[-1] == '\n' && ++seen == lines)
                        break;
                start--;
        }
        if (start != s)
                memmove(s, start, strlen(start) + 1);
        return s;
}

/* Reads what one pipe has; closes it at EOF. Returns the bytes read (0 at
 * EOF or when nothing is there) and sets *full past the log cap. */
static size_t pump(struct runner_watch *w, int *fd, int log, struct runner_tail *t, int stream,
                   bool *full)
{
        char buf[READ_SIZE];
        ssize_t n = read(*fd, buf, sizeof(buf));
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
                return 0;
        if (n <= 0) {
                /* EOF, or an error a pipe cannot really have: stop reading */
                close(*fd);
                *fd = -1;
                return 0;
        }
        size_t keep = (size_t)n;
        if (w->max_log && w->logged + (uint64_t)n > w->max_log) {
                keep = w->logged >= w->max_log ? 0 : (size_t)(w->max_log - w->logged);
                *full = true;
        }
        w->logged += (uint64_t)n;
        tail_append(t, buf, (size_t)n);
        /* A log that cannot be written (disk full) must not fail the build:
         * the tail still carries the end of the output. */
        if (log >= 0 && keep)
                (void)kiln_write_all(log, buf, keep);
        if (w->on_output && keep)
                w->on_output(w->on_output_userdata, stream, buf, keep);
        return (size_t)n;
}

/* After the process exited: what its pipes still hold, up to EOF or until
 * nothing more is there (a writer of a pipe may outlive it for a moment). */
static bool drain(struct runner_watch *w)
{
        bool full = false;
        for (int rounds = 0; rounds < 4096 && !full && (w->out_fd >= 0 || w->err_fd >= 0);
             rounds++) {
                size_t got = 0;
                if (w->out_fd >= 0)
                        got += pump(w, &w->out_fd, w->out_log, &w->out_tail, 1, &full);
                if (w->err_fd >= 0 && !full)
                        got += pump(w, &w->err_fd, w->err_log, &w->err_tail, 2, &full);
                if (!got)
                        break;
        }
        return full;
}

int runner_watch_run(struct runner_watch *w, struct kiln_error **err)
{
        if ((w->out_fd >= 0 && fcntl(w->out_fd, F_SETFL, O_NONBLOCK) < 0) ||
            (w->err_fd >= 0 && fcntl(w->err_fd, F_SETFL, O_NONBLOCK) < 0))
                return kiln_error_errno(err, errno, "watch the build's output");
        double start = now(), last_output = start, next_check = start + CHECK_INTERVAL;
        double deadline = w->timeout ? start + w->timeout : 0;
        for (;;) {
                double t = now(), wake = 0;
                if (deadline) {
                        if (t >= deadline)
                                return RUNNER_TIMEOUT;
                        wake = deadline;
                }
                if (w->pids_hit) {
                        if (t >= next_check) {
                                if (w->pids_hit(w->cgroup))
                                        return RUNNER_PIDS;
                                next_check = t + CHECK_INTERVAL;
                        }
                        if (!wake || next_check < wake)
                                wake = next_check;
                }
                if (w->max_silent) {
                        double quiet_end = last_output + w->max_silent;
                        if (t >= quiet_end)
                                return RUNNER_SILENT;
                        if (!wake || quiet_end < wake)
                                wake = quiet_end;
                }
                int timeout_ms = wake ? (int)((wake - t) * 1000) + 1 : -1;
                struct pollfd p[4] = {
                        {.fd = w->pidfd, .events = POLLIN},
                        {.fd = w->out_fd, .events = POLLIN},
                        {.fd = w->err_fd, .events = POLLIN},
                        {.fd = w->cancel_fd, .events = POLLIN},
                };
                int n = poll(p, 4, timeout_ms);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return kiln_error_errno(err, errno, "poll");
                }
                if (p[3].revents)
                        return RUNNER_CANCELLED;
                bool full = false;
                size_t got = 0;
                if (p[1].revents)
                        got += pump(w, &w->out_fd, w->out_log, &w->out_tail, 1, &full);
                if (p[2].revents && !full)
                        got += pump(w, &w->err_fd, w->err_log, &w->err_tail, 2, &full);
                if (full)
                        return RUNNER_LOG_FULL;
                if (got)
                        last_output = now();
                if (p[0].revents & POLLIN)
                        return drain(w) ? RUNNER_LOG_FULL : RUNNER_EXITED;
        }
}
