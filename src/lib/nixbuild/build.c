/* A build session: the graph of derivations to build (those with an output
 * Nix does not have yet, and the input derivations they need), run by
 * o->jobs worker threads in dependency order. After the first failure no
 * new build starts; running ones finish. */
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include "nixbuild_int.h"

enum job_state { JOB_WAITING, JOB_RUNNING, JOB_DONE, JOB_FAILED };

struct job {
        char *drv_path;
        struct kiln_nix_derivation *drv;
        size_t *deps; /* jobs whose outputs this one needs */
        size_t n_deps;
        enum job_state state;
};

struct session {
        struct nixbuild nb;
        pthread_mutex_t lock;
        pthread_cond_t cond;
        struct job *jobs;
        size_t n_jobs;
        size_t running;
        bool stop;
        struct kiln_error *error; /* the first failure */
        struct kiln_nixbuild_result *result; /* of the one job of a basic build */
};

static void say(const struct kiln_nixbuild_options *o, const char *fmt, ...) _printf_(2, 3);
static void say(const struct kiln_nixbuild_options *o, const char *fmt, ...)
{
        if (!o->log)
                return;
        va_list ap;
        va_start(ap, fmt);
        char *line;
        if (vasprintf(&line, fmt, ap) >= 0) {
                o->log(o->userdata, line);
                free(line);
        }
        va_end(ap);
}

static int all_outputs_valid(struct session *s, const struct kiln_nix_derivation *d, bool *ret,
                             struct kiln_error **err)
{
        *ret = true;
        for (size_t i = 0; i < d->n_outputs && *ret; i++) {
                const struct kiln_nix_drv_output *o = &d->outputs[i];
                if (o->kind != KILN_NIX_OUTPUT_INPUT_ADDRESSED && o->kind != KILN_NIX_OUTPUT_FIXED) {
                        *ret = false;
                        break;
                }
                _cleanup_free_ char *p = kiln_nix_store_path_to_string(&o->path);
                struct kiln_nix_path_info info;
                int r = kiln_nix_daemon_query_path_info(s->nb.daemon, p, &info, err);
                if (r < 0)
                        return r;
                if (r > 0)
                        kiln_nix_path_info_done(&info);
                *ret = r > 0;
        }
        return 0;
}

/* Adds drv_path (and, if it must be built, its input derivations) to the
 * graph; *ret gets its job index. */
static int add_job(struct session *s, const char *drv_path, size_t *ret, unsigned depth,
                   struct kiln_error **err)
{
        for (size_t i = 0; i < s->n_jobs; i++)
                if (!strcmp(s->jobs[i].drv_path, drv_path)) {
                        *ret = i;
                        return 0;
                }
        if (depth > 10000)
                return kiln_error_set(err, ELOOP, "%s: derivations nested too deeply", drv_path);
        struct kiln_nix_store_path sp;
        int r = kiln_nix_store_path_parse(drv_path, strlen(drv_path), &sp, err);
        if (r < 0)
                return r;
        struct kiln_nix_derivation *d;
        r = kiln_nix_derivation_read_file(AT_FDCWD, drv_path, &d, err);
        if (r < 0)
                return r;
        bool valid;
        r = all_outputs_valid(s, d, &valid, err);
        if (r < 0) {
                kiln_nix_derivation_free(d);
                return r;
        }
        size_t me = s->n_jobs++;
        s->jobs = kiln_reallocarray(s->jobs, s->n_jobs, sizeof(*s->jobs));
        s->jobs[me] = (struct job){
                .drv_path = kiln_strdup(drv_path),
                .drv = d,
                .state = valid ? JOB_DONE : JOB_WAITING,
        };
        *ret = me;
        if (valid)
                return 0;
        for (size_t i = 0; i < d->n_input_drvs; i++) {
                _cleanup_free_ char *in = kiln_nix_store_path_to_string(&d->input_drvs[i].drv);
                size_t dep;
                r = add_job(s, in, &dep, depth + 1, err);
                if (r < 0)
                        return r;
                struct job *j = &s->jobs[me]; /* the array may have moved */
                j->deps = kiln_reallocarray(j->deps, j->n_deps + 1, sizeof(*j->deps));
                j->deps[j->n_deps++] = dep;
        }
        return 0;
}

static const struct job *job_of(struct session *s, const struct kiln_nix_store_path *drv)
{
        _cleanup_free_ char *p = kiln_nix_store_path_to_string(drv);
        for (size_t i = 0; i < s->n_jobs; i++)
                if (!strcmp(s->jobs[i].drv_path, p))
                        return &s->jobs[i];
        return NULL;
}

/* The store paths a build reads: its input sources and the outputs it uses
 * of its input derivations. */
static int input_roots(struct session *s, const struct job *j, struct kiln_strv *ret,
                       struct kiln_error **err)
{
        const struct kiln_nix_derivation *d = j->drv;
        for (size_t i = 0; i < d->n_input_srcs; i++) {
                _cleanup_free_ char *p = kiln_nix_store_path_to_string(&d->input_srcs[i]);
                kiln_strv_push(ret, p);
        }
        for (size_t i = 0; i < d->n_input_drvs; i++) {
                const struct kiln_nix_drv_input *in = &d->input_drvs[i];
                const struct job *dep = job_of(s, &in->drv);
                for (size_t k = 0; k < in->n_outputs; k++) {
                        const struct kiln_nix_drv_output *o =
                                dep ? kiln_nix_derivation_output(dep->drv, in->outputs[k]) : NULL;
                        if (!o)
                                return kiln_error_set(err, EINVAL,
                                                      "%s: input derivation has no output '%s'",
                                                      j->drv_path, in->outputs[k]);
                        _cleanup_free_ char *p = kiln_nix_store_path_to_string(&o->path);
                        kiln_strv_push(ret, p);
                }
        }
        return 0;
}

/* Nix's default system features, and kvm where /dev/kvm can be used. */
static bool has_feature(const char *f)
{
        static const char *const features[] = {"nixos-test", "benchmark", "big-parallel"};
        for (size_t i = 0; i < KILN_ARRAY_SIZE(features); i++)
                if (!strcmp(f, features[i]))
                        return true;
        return !strcmp(f, "kvm") && access("/dev/kvm", R_OK | W_OK) == 0;
}

static int check_features(const struct job *j, struct kiln_error **err)
{
        const char *req = kiln_nix_derivation_env_get(j->drv, "requiredSystemFeatures");
        if (!req)
                return 0;
        _cleanup_free_ char *copy = kiln_strdup(req);
        for (char *save = NULL, *f = strtok_r(copy, " \t\n\r", &save); f;
             f = strtok_r(NULL, " \t\n\r", &save))
                if (!has_feature(f))
                        return kiln_error_set(err, ENOEXEC,
                                              "a '%s' with features {%s} is required to build "
                                              "'%s', but kiln does not provide '%s'",
                                              j->drv->system, req, j->drv_path, f);
        return 0;
}

/* Whether output i of the request refers to output k (needle k: outputs
 * come first among the needles, in the derivation's order). */
static bool refers_to(const struct kiln_nixbuild_plan *plan, const struct kiln_build *b, size_t i,
                      const char *path)
{
        for (size_t n = 0; n < b->outputs[i].n_needles; n++)
                if (!strcmp(plan->needle_paths.v[b->outputs[i].needles[n]], path))
                        return true;
        return false;
}

/* Registers the outputs so that one referring to another comes after it,
 * as Nix needs (a path is valid only with its references); a cycle between
 * outputs fails as in Nix. */
static int register_outputs(struct session *s, const struct job *j,
                            const struct kiln_nixbuild_plan *plan, const struct kiln_build *b,
                            struct kiln_error **err)
{
        size_t n = b->n_outputs, left = n;
        bool *done = kiln_calloc(n, sizeof(*done));
        int r = 0;
        while (r == 0 && left) {
                bool progress = false;
                for (size_t i = 0; r == 0 && i < n; i++) {
                        if (done[i])
                                continue;
                        bool ready = true;
                        for (size_t k = 0; k < n && ready; k++) {
                                _cleanup_free_ char *pk = kiln_asprintf("/%s", plan->req.outputs.v[k]);
                                if (k != i && !done[k] && refers_to(plan, b, i, pk))
                                        ready = false;
                        }
                        if (!ready)
                                continue;
                        r = nixbuild_register_output(&s->nb, j->drv, j->drv_path,
                                                     plan->output_names.v[i], plan, &b->outputs[i],
                                                     err);
                        done[i] = true;
                        left--;
                        progress = true;
                }
                if (r == 0 && !progress)
                        r = kiln_error_set(err, EINVAL,
                                           "cycle detected in the references of the outputs of "
                                           "'%s'",
                                           j->drv_path);
        }
        free(done);
        return r;
}

/* A build's log, passed on line by line as "<name>> line", as Nix shows
 * the logs of builds running side by side. */
struct job_log {
        const struct kiln_nixbuild_options *o;
        const char *name;
        struct kiln_buf line;
};

static void log_flush(struct job_log *l)
{
        kiln_buf_append_byte(&l->line, 0);
        say(l->o, "%s> %s", l->name, (const char *)l->line.data);
        l->line.len = 0;
}

static void on_output(void *userdata, int stream, const void *p, size_t n)
{
        (void)stream;
        struct job_log *l = userdata;
        const char *c = p;
        for (size_t i = 0; i < n; i++) {
                if (c[i] == '\n')
                        log_flush(l);
                else if (l->line.len < 64 * 1024)
                        kiln_buf_append_byte(&l->line, (uint8_t)c[i]);
        }
}

struct job_events {
        const struct kiln_nixbuild_options *o;
        const char *drv_path;
};

static void job_event(void *ud, const struct kiln_build_event *ev)
{
        struct job_events *je = ud;
        je->o->event(je->o->userdata, je->drv_path, ev);
}

/* Nix's --repeat: the build again o->repeat times, each compared with the
 * first (b); the first's outputs are the ones kept. */
static int repeat_build(struct session *s, const struct job *j,
                        const struct kiln_nixbuild_plan *plan, const struct kiln_build_call *call,
                        const struct kiln_build *b, struct kiln_error **err)
{
        const struct kiln_nixbuild_options *o = s->nb.o;
        struct kiln_build_call again_call = *call;
        again_call.no_cache = true;
        for (unsigned k = 1; k <= o->repeat; k++) {
                say(o, "repeating the build of '%s' (%u of %u)...", j->drv_path, k, o->repeat);
                struct kiln_build again = {0};
                int r = kiln_build_service_build(o->builds, &plan->req, &again_call, &again, err);
                if (r < 0)
                        return kiln_error_prefix(err, r, "builder for '%s' failed (repeat %u)",
                                                 j->drv_path, k);
                if (s->result)
                        s->result->times_built++;
                const char *differs = NULL;
                for (size_t i = 0; !differs && i < b->n_outputs; i++)
                        if (i >= again.n_outputs ||
                            !kiln_node_eq(&b->outputs[i].node, &again.outputs[i].node))
                                differs = plan->req.outputs.v[i];
                kiln_build_done(&again);
                if (!differs)
                        continue;
                if (s->result)
                        s->result->non_deterministic = true;
                /* Nix's words */
                if (o->enforce_determinism)
                        return kiln_error_set(err, KILN_NIXBUILD_NOT_DETERMINISTIC,
                                              "derivation '%s' may not be deterministic: output "
                                              "'/%s' differs",
                                              j->drv_path, differs);
                say(o, "warning: derivation '%s' may not be deterministic: output '/%s' differs",
                    j->drv_path, differs);
                return 0;
        }
        return 0;
}

static int build_job(struct session *s, const struct job *j, struct kiln_error **err)
{
        const struct kiln_nixbuild_options *o = s->nb.o;
        struct kiln_strv roots = {0}, closure = {0};
        struct kiln_node *nodes = NULL;
        size_t n_nodes = 0;
        struct kiln_nixbuild_plan plan = {0};
        struct kiln_build b = {0};
        bool built = false;
        int r = check_features(j, err);
        if (r == 0)
                r = input_roots(s, j, &roots, err);
        if (r == 0)
                r = nixbuild_closure(&s->nb, &roots, &closure, err);
        if (r == 0)
                nodes = kiln_calloc(closure.n ? closure.n : 1, sizeof(*nodes));
        for (size_t i = 0; r == 0 && i < closure.n; i++) {
                r = nixbuild_input_node(&s->nb, closure.v[i], &nodes[i], err);
                if (r == 0)
                        n_nodes++;
        }
        if (r == 0)
                r = kiln_nixbuild_request(j->drv, j->drv_path, nodes, n_nodes, &o->request, &plan,
                                          err);
        if (r == 0) {
                say(o, "building '%s'...", j->drv_path);
                _cleanup_free_ char *name = NULL;
                struct kiln_nix_store_path sp;
                if (kiln_nix_store_path_parse(j->drv_path, strlen(j->drv_path), &sp, NULL) == 0)
                        kiln_nix_drv_name_from_path(&sp, &name, NULL);
                struct job_log jl = {.o = o, .name = name ? name : j->drv_path};
                struct kiln_build_call call = {
                        .cancel = o->cancel,
                        .output = o->log && !o->quiet ? on_output : NULL,
                        .userdata = &jl,
                        .timeout = o->timeout,
                        .max_silent = o->max_silent,
                        .max_log = o->max_log,
                        .keep_failed = o->keep_failed,
                };
                struct kiln_build_events events = {0};
                struct job_events je = {.o = o, .drv_path = j->drv_path};
                if (o->event)
                        kiln_build_events_init(&events, job_event, &je, &call);
                r = kiln_build_service_build(o->builds, &plan.req, &call, &b, err);
                if (o->event)
                        kiln_build_events_end(&events, r, r < 0 ? NULL : &b, err ? *err : NULL);
                if (jl.line.len)
                        log_flush(&jl);
                kiln_buf_done(&jl.line);
                if (r < 0)
                        r = kiln_error_prefix(err, r, "builder for '%s' failed", j->drv_path);
                built = r == 0;
                if (s->result)
                        s->result->times_built = 1;
                if (built)
                        r = repeat_build(s, j, &plan, &call, &b, err);
        }
        if (r == 0 && b.n_outputs != plan.req.outputs.n)
                r = kiln_error_set(err, EPROTO, "%s: the build service returned %zu outputs, not %zu",
                                   j->drv_path, b.n_outputs, plan.req.outputs.n);
        if (r == 0)
                r = register_outputs(s, j, &plan, &b, err);
        if (built)
                kiln_build_done(&b);
        kiln_nixbuild_plan_done(&plan);
        for (size_t i = 0; i < n_nodes; i++)
                kiln_node_done(&nodes[i]);
        free(nodes);
        kiln_strv_done(&roots);
        kiln_strv_done(&closure);
        return r;
}

/* A waiting job whose inputs are all built; fails jobs whose input failed. */
static struct job *next_job(struct session *s)
{
        for (size_t i = 0; i < s->n_jobs; i++) {
                struct job *j = &s->jobs[i];
                if (j->state != JOB_WAITING)
                        continue;
                bool ready = true;
                for (size_t k = 0; k < j->n_deps; k++) {
                        enum job_state st = s->jobs[j->deps[k]].state;
                        if (st == JOB_FAILED) {
                                j->state = JOB_FAILED;
                                ready = false;
                                break;
                        }
                        if (st != JOB_DONE)
                                ready = false;
                }
                if (ready)
                        return j;
        }
        return NULL;
}

static bool any_waiting(struct session *s)
{
        for (size_t i = 0; i < s->n_jobs; i++)
                if (s->jobs[i].state == JOB_WAITING)
                        return true;
        return false;
}

static void *worker(void *arg)
{
        struct session *s = arg;
        pthread_mutex_lock(&s->lock);
        for (;;) {
                struct job *j = s->stop ? NULL : next_job(s);
                if (!j) {
                        if (s->stop || !any_waiting(s) || !s->running)
                                break;
                        pthread_cond_wait(&s->cond, &s->lock);
                        continue;
                }
                j->state = JOB_RUNNING;
                s->running++;
                size_t idx = (size_t)(j - s->jobs);
                pthread_mutex_unlock(&s->lock);
                struct kiln_error *e = NULL;
                int r = build_job(s, &s->jobs[idx], &e);
                pthread_mutex_lock(&s->lock);
                s->running--;
                s->jobs[idx].state = r < 0 ? JOB_FAILED : JOB_DONE;
                if (r < 0) {
                        s->stop = true;
                        if (!s->error)
                                s->error = TAKE_PTR(e);
                }
                kiln_error_free(e);
                pthread_cond_broadcast(&s->cond);
        }
        pthread_cond_broadcast(&s->cond);
        pthread_mutex_unlock(&s->lock);
        return NULL;
}

static int run_workers(struct session *s, unsigned n)
{
        pthread_t *t = kiln_calloc(n, sizeof(*t));
        unsigned started = 0;
        for (; started < n; started++)
                if (pthread_create(&t[started], NULL, worker, s))
                        break;
        if (!started)
                worker(s);
        for (unsigned i = 0; i < started; i++)
                pthread_join(t[i], NULL);
        free(t);
        return 0;
}

int kiln_nixbuild_build(const struct kiln_nixbuild_options *o, const char *const *drvs, size_t n,
                        struct kiln_strv *ret, struct kiln_error **err)
{
        struct session s = {.nb.o = o};
        pthread_mutex_init(&s.nb.daemon_lock, NULL);
        pthread_mutex_init(&s.nb.import_lock, NULL);
        pthread_mutex_init(&s.lock, NULL);
        pthread_cond_init(&s.cond, NULL);
        size_t *roots = kiln_calloc(n ? n : 1, sizeof(*roots));
        int r = 0;
        if (o->pathinfo_only)
                r = kiln_error_set(err, EINVAL, "kiln_nixbuild_build needs Nix's daemon");
        if (r == 0)
                r = kiln_nix_daemon_open(o->nix_daemon, &s.nb.daemon, err);
        for (size_t i = 0; r == 0 && i < n; i++)
                r = add_job(&s, drvs[i], &roots[i], 0, err);
        if (r == 0) {
                run_workers(&s, o->jobs ? o->jobs : 1);
                if (s.error) {
                        r = -s.error->code;
                        if (err)
                                *err = TAKE_PTR(s.error);
                }
        }
        for (size_t i = 0; r == 0 && i < n; i++) {
                const struct kiln_nix_derivation *d = s.jobs[roots[i]].drv;
                for (size_t k = 0; k < d->n_outputs; k++) {
                        _cleanup_free_ char *p = kiln_nix_store_path_to_string(&d->outputs[k].path);
                        kiln_strv_push(ret, p);
                }
        }
        kiln_error_free(s.error);
        for (size_t i = 0; i < s.n_jobs; i++) {
                free(s.jobs[i].drv_path);
                kiln_nix_derivation_free(s.jobs[i].drv);
                free(s.jobs[i].deps);
        }
        free(s.jobs);
        free(roots);
        kiln_nix_daemon_close(s.nb.daemon);
        pthread_mutex_destroy(&s.nb.daemon_lock);
        pthread_mutex_destroy(&s.nb.import_lock);
        pthread_mutex_destroy(&s.lock);
        pthread_cond_destroy(&s.cond);
        return r;
}

int kiln_nixbuild_build_basic(const struct kiln_nixbuild_options *o,
                              const struct kiln_nix_derivation *d, const char *drv_path,
                              struct kiln_nixbuild_result *ret_result, struct kiln_error **err)
{
        struct kiln_nixbuild_result unused;
        if (!ret_result)
                ret_result = &unused;
        *ret_result = (struct kiln_nixbuild_result){0};
        if (d->n_input_drvs)
                return kiln_error_set(err, EINVAL,
                                      "%s: a basic derivation has no input derivations", drv_path);
        struct session s = {.nb.o = o, .result = ret_result};
        pthread_mutex_init(&s.nb.daemon_lock, NULL);
        pthread_mutex_init(&s.nb.import_lock, NULL);
        int r = 0;
        if (!o->pathinfo_only)
                r = kiln_nix_daemon_open(o->nix_daemon, &s.nb.daemon, err);
        /* The job only borrows d: build_job reads it and never frees it. */
        struct job j = {.drv_path = (char *)drv_path, .drv = (struct kiln_nix_derivation *)d};
        if (r == 0)
                r = build_job(&s, &j, err);
        kiln_nix_daemon_close(s.nb.daemon);
        pthread_mutex_destroy(&s.nb.daemon_lock);
        pthread_mutex_destroy(&s.nb.import_lock);
        return r;
}
