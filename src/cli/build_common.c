/* What `kiln build` and `kiln run` share: choosing the build service and
 * running a build with progress on the terminal and cancellation on signals. */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <time.h>

#include <kiln/build/action_cache.h>
#include <kiln/build/events.h>
#include <kiln/runner/runner.h>

#include "cli.h"

int cli_build_service_open(struct cli_stores *s, const char *url,
                           struct kiln_build_service **ret)
{
        _cleanup_free_ char *u = NULL;
        if (url)
                u = kiln_strdup(url);
        else if (getenv("BUILD_SERVICE_ADDR") && *getenv("BUILD_SERVICE_ADDR"))
                u = kiln_strdup(getenv("BUILD_SERVICE_ADDR"));
        else {
                _cleanup_free_ char *home = kiln_home();
                _cleanup_free_ char *root = kiln_asprintf("%s/bundles", home);
                u = kiln_runner_default_url(root);
        }
        kiln_runner_register();
        _cleanup_(kiln_error_freep) struct kiln_error *err = NULL;
        if (kiln_build_service_open(u, s->blobs, s->dirs, ret, &err) < 0)
                return cli_fail(err);
        return 0;
}

int cli_build_service_cache(struct cli_stores *s, const char *url,
                            struct kiln_build_service **svc)
{
        _cleanup_(kiln_error_freep) struct kiln_error *err = NULL;
        struct kiln_action_cache *cache = NULL;
        _cleanup_free_ char *def = NULL;
        if (!url)
                url = def = kiln_default_action_cache_url();
        if (strcmp(url, "none") && strcmp(kiln_build_service_name(*svc), "grpc") &&
            kiln_action_cache_open(url, &cache, &err) < 0)
                return cli_fail(err);
        *svc = kiln_build_service_cached_new(*svc, cache, s->blobs, s->dirs);
        return 0;
}

bool cli_build_view_option(struct cli_build_view *v, int c)
{
        if (c == CLI_OPT_JSON)
                v->json = true;
        else if (c == 'L')
                v->logs = true;
        else if (c == 'K')
                v->keep_failed = true;
        else
                return false;
        return true;
}

/* What stderr shows while a build runs: a status line redrawn every 100 ms
 * on a terminal, and the build's output above it. One lock orders every
 * write to stderr and stdout. */
struct ticker {
        pthread_mutex_t lock;
        const char *phase;
        size_t ahead;
        struct timespec start;
        atomic_bool done;
        bool tty;
        bool line; /* the status line is on screen */
};

static void clear_line(struct ticker *t)
{
        if (t->line)
                fputs("\r\033[K", stderr);
        t->line = false;
}

static void on_progress(void *userdata, const char *phase)
{
        struct ticker *t = userdata;
        pthread_mutex_lock(&t->lock);
        t->phase = phase;
        pthread_mutex_unlock(&t->lock);
}

static void on_position(void *userdata, size_t ahead)
{
        struct ticker *t = userdata;
        pthread_mutex_lock(&t->lock);
        t->ahead = ahead;
        pthread_mutex_unlock(&t->lock);
}

static void on_output(void *userdata, int stream, const void *p, size_t n)
{
        (void)stream;
        struct ticker *t = userdata;
        pthread_mutex_lock(&t->lock);
        clear_line(t);
        fwrite(p, 1, n, stderr);
        fflush(stderr);
        pthread_mutex_unlock(&t->lock);
}

static void on_retrying(void *userdata, const struct kiln_error *why, unsigned attempt,
                        unsigned attempts)
{
        struct ticker *t = userdata;
        pthread_mutex_lock(&t->lock);
        clear_line(t);
        fprintf(stderr, "kiln: %s; sending the build again (attempt %u of %u)\n",
                kiln_error_msg(why), attempt, attempts);
        pthread_mutex_unlock(&t->lock);
}

static void on_event(void *userdata, const struct kiln_build_event *ev)
{
        struct ticker *t = userdata;
        json_t *j = kiln_build_event_to_json(ev);
        pthread_mutex_lock(&t->lock);
        cli_print_json(j);
        pthread_mutex_unlock(&t->lock);
        json_decref(j);
}

static double elapsed(const struct timespec *start)
{
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        return (double)(now.tv_sec - start->tv_sec) + (double)(now.tv_nsec - start->tv_nsec) / 1e9;
}

static void *tick(void *arg)
{
        struct ticker *t = arg;
        while (!atomic_load(&t->done)) {
                pthread_mutex_lock(&t->lock);
                if (!strcmp(t->phase, "queued"))
                        fprintf(stderr, "\r\033[Kkiln: queued, %zu ahead %.1fs", t->ahead,
                                elapsed(&t->start));
                else
                        fprintf(stderr, "\r\033[Kkiln: %s %.1fs", t->phase, elapsed(&t->start));
                t->line = true;
                pthread_mutex_unlock(&t->lock);
                struct timespec ts = {0, 100 * 1000 * 1000};
                nanosleep(&ts, NULL);
        }
        pthread_mutex_lock(&t->lock);
        clear_line(t);
        pthread_mutex_unlock(&t->lock);
        return NULL;
}

/* Signals arrive at a dedicated thread that triggers the cancel token. */
struct signal_waiter {
        sigset_t set;
        struct kiln_cancel *cancel;
};

static void *wait_signals(void *arg)
{
        struct signal_waiter *w = arg;
        int sig;
        if (sigwait(&w->set, &sig) == 0 && sig != SIGUSR2)
                kiln_cancel_trigger(w->cancel);
        return NULL;
}

int cli_build_run(struct kiln_build_service *svc, const struct kiln_build_request *req,
                  unsigned timeout, const struct cli_build_view *view, struct kiln_build *ret,
                  struct kiln_error **err)
{
        struct ticker t = {.phase = "starting", .tty = isatty(STDERR_FILENO)};
        pthread_mutex_init(&t.lock, NULL);
        clock_gettime(CLOCK_MONOTONIC, &t.start);
        _cleanup_(kiln_cancel_freep) struct kiln_cancel *cancel = kiln_cancel_new();

        struct signal_waiter w = {.cancel = cancel};
        sigemptyset(&w.set);
        sigaddset(&w.set, SIGINT);
        sigaddset(&w.set, SIGTERM);
        sigaddset(&w.set, SIGUSR2); /* wakes the waiter at the end */
        sigset_t old;
        pthread_sigmask(SIG_BLOCK, &w.set, &old);
        pthread_t sig_thread, tick_thread;
        pthread_create(&sig_thread, NULL, wait_signals, &w);
        if (t.tty)
                pthread_create(&tick_thread, NULL, tick, &t);

        struct kiln_build_call call = {
                .cancel = cancel,
                .progress = on_progress,
                .queue_position = on_position,
                .retrying = on_retrying,
                .output = view->logs || t.tty ? on_output : NULL,
                .userdata = &t,
                .timeout = timeout,
                .keep_failed = view->keep_failed,
        };
        /* --json: the events on stdout instead, the status line still on a
         * terminal. */
        struct kiln_build_events events = {.phase = on_progress, .position = on_position};
        if (view->json)
                kiln_build_events_init(&events, on_event, &t, &call);
        int r = kiln_build_service_build(svc, req, &call, ret, err);

        atomic_store(&t.done, true);
        if (t.tty)
                pthread_join(tick_thread, NULL);
        if (view->json)
                kiln_build_events_end(&events, r, r < 0 ? NULL : ret, err ? *err : NULL);
        pthread_kill(sig_thread, SIGUSR2);
        pthread_join(sig_thread, NULL);
        pthread_sigmask(SIG_SETMASK, &old, NULL);
        pthread_mutex_destroy(&t.lock);
        return r;
}
