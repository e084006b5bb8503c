/* kiln run: a hermetic build for people. */
#include <fcntl.h>

#include <kiln/util/fsutil.h>
#include <kiln/ingest/import.h>
#include <kiln/castore/json.h>

#include "cli.h"

static const char usage[] =
        "usage: kiln run [options] -- COMMAND [ARGS...]\n"
        "Imports the inputs, runs COMMAND hermetically and prints each output node and the\n"
        "needles (input paths) found in it. Inputs appear at /<inputs-dir>/NAME; each\n"
        "output's parent directory (or the output itself, at top level) is writable;\n"
        "/build is the writable working directory.\n\n"
        "  --input NAME=HOST_PATH        import HOST_PATH as input NAME (repeatable)\n"
        "  --output PATH                 a path the command creates (repeatable)\n"
        "  --env KEY=VALUE               environment variable (repeatable)\n"
        "  --needle STRING               also report whether STRING occurs in outputs\n"
        "  --inputs-dir DIR              where inputs appear (default: inputs)\n"
        "  --network                     allow network access (default: loopback only)\n"
        "  --bin-sh                      provide a static /bin/sh\n"
        "  --timeout SECONDS             kill the build after this long\n"
        "  --export DIR                  write the outputs to DIR/<basename>\n"
        "  --no-cache                    build even if the action cache remembers this build\n"
        "  --build-service-addr URL      build service (default: kiln's sandbox, see kiln build)\n"
        CLI_BUILD_VIEW_USAGE CLI_STORE_USAGE;

static int cmp_str(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

static void strv_sort_unique(struct kiln_strv *s)
{
        if (s->n < 2)
                return;
        qsort(s->v, s->n, sizeof(char *), cmp_str);
        size_t o = 1;
        for (size_t i = 1; i < s->n; i++) {
                if (!strcmp(s->v[o - 1], s->v[i]))
                        free(s->v[i]);
                else
                        s->v[o++] = s->v[i];
        }
        s->n = o;
}

static int cmp_env(const void *a, const void *b)
{
        return strcmp(((const struct kiln_env_var *)a)->key, ((const struct kiln_env_var *)b)->key);
}

static int cmp_node(const void *a, const void *b)
{
        const struct kiln_node *x = a, *y = b;
        return kiln_bytes_cmp(x->name.data, x->name.len, y->name.data, y->name.len);
}

/* Sets KEY=VALUE, replacing an earlier value of KEY. */
static void set_env(struct kiln_build_request *r, const char *key, const char *value)
{
        for (size_t i = 0; i < r->n_env; i++)
                if (!strcmp(r->env[i].key, key)) {
                        free(r->env[i].value);
                        r->env[i].value = (uint8_t *)kiln_strdup(value);
                        r->env[i].value_len = strlen(value);
                        return;
                }
        r->env = kiln_reallocarray(r->env, r->n_env + 1, sizeof(*r->env));
        r->env[r->n_env++] = (struct kiln_env_var){
                .key = kiln_strdup(key),
                .value = (uint8_t *)kiln_strdup(value),
                .value_len = strlen(value),
        };
}

struct input_arg {
        char *name;
        const char *path;
};

/* What the command line asks for beyond the request itself. */
struct run_args {
        struct input_arg *inputs;
        size_t n_inputs;
        struct kiln_strv extra_needles;
        const char *build_url, *export_dir;
        unsigned timeout;
        bool no_cache;
        struct cli_build_view view;
};

static void run_args_done(struct run_args *a)
{
        for (size_t i = 0; i < a->n_inputs; i++)
                free(a->inputs[i].name);
        free(a->inputs);
        kiln_strv_done(&a->extra_needles);
}

/* The request kiln run starts from: Nix's build environment, /build. */
static void request_defaults(struct kiln_build_request *req)
{
        req->constraints.present = true;
        req->constraints.system = kiln_strdup("x86_64-linux");
        req->working_dir = kiln_strdup("build");
        req->inputs_dir = kiln_strdup("inputs");
        set_env(req, "HOME", "/homeless-shelter");
        set_env(req, "PATH", "/bin");
        set_env(req, "TMPDIR", "/build");
        set_env(req, "NIX_BUILD_TOP", "/build");
}

/* Parses the options into req and a: -1 to go on, else the exit status
 * (0 after --help, 2 for a usage error). */
static int parse_args(int argc, char **argv, struct cli_stores *stores,
                      struct kiln_build_request *req, struct run_args *a)
{
        static const struct option opts[] = {
                {"input", required_argument, NULL, 'i'},
                {"output", required_argument, NULL, 'o'},
                {"env", required_argument, NULL, 'e'},
                {"needle", required_argument, NULL, 'n'},
                {"inputs-dir", required_argument, NULL, 'd'},
                {"network", no_argument, NULL, 'N'},
                {"bin-sh", no_argument, NULL, 'B'},
                {"timeout", required_argument, NULL, 't'},
                {"export", required_argument, NULL, 'x'},
                {"no-cache", no_argument, NULL, 'C'},
                {"build-service-addr", required_argument, NULL, CLI_OPT_BUILD_ADDR},
                {"help", no_argument, NULL, 'h'},
                CLI_BUILD_VIEW_OPTIONS,
                CLI_STORE_OPTIONS,
                {},
        };
        int c;
        while ((c = getopt_long(argc, argv, "+hLK", opts, NULL)) != -1) {
                if (cli_stores_option(stores, c, optarg) || cli_build_view_option(&a->view, c))
                        continue;
                char *eq;
                switch (c) {
                case 'i':
                        eq = strchr(optarg, '=');
                        if (!eq || eq == optarg || !eq[1])
                                return cli_usage_error(
                                        "run", "--input wants NAME=HOST_PATH, got '%s'", optarg);
                        a->inputs = kiln_reallocarray(a->inputs, a->n_inputs + 1,
                                                      sizeof(*a->inputs));
                        a->inputs[a->n_inputs++] = (struct input_arg){
                                .name = strndup(optarg, (size_t)(eq - optarg)), .path = eq + 1};
                        break;
                case 'o':
                        kiln_strv_push(&req->outputs, optarg);
                        break;
                case 'e':
                        eq = strchr(optarg, '=');
                        if (!eq || eq == optarg)
                                return cli_usage_error("run", "--env wants KEY=VALUE, got '%s'",
                                                       optarg);
                        *eq = '\0';
                        set_env(req, optarg, eq + 1);
                        *eq = '=';
                        break;
                case 'n':
                        kiln_strv_push(&a->extra_needles, optarg);
                        break;
                case 'd':
                        free(req->inputs_dir);
                        req->inputs_dir = kiln_strdup(optarg);
                        break;
                case 'N':
                        req->constraints.network_access = true;
                        break;
                case 'B':
                        req->constraints.provide_bin_sh = true;
                        break;
                case 't': {
                        char *end;
                        unsigned long v = strtoul(optarg, &end, 10);
                        if (*end || !*optarg || v == 0 || v > 7 * 24 * 3600)
                                return cli_usage_error("run", "invalid --timeout '%s'", optarg);
                        a->timeout = (unsigned)v;
                        break;
                }
                case 'x':
                        a->export_dir = optarg;
                        break;
                case 'C':
                        a->no_cache = true;
                        break;
                case CLI_OPT_BUILD_ADDR:
                        a->build_url = optarg;
                        break;
                case 'h':
                        fputs(usage, stdout);
                        return 0;
                default:
                        return cli_usage_error("run", "invalid option");
                }
        }
        if (optind >= argc)
                return cli_usage_error("run", "no COMMAND given (put it after --)");
        for (int i = optind; i < argc; i++)
                kiln_strv_push(&req->command_args, argv[i]);
        return -1;
}

/* Scratch space: /build, and where each output lives. 0, or 2 for an output
 * path that is not clean. */
static int set_scratch_paths(struct kiln_build_request *req)
{
        kiln_strv_push(&req->scratch_paths, "build");
        for (size_t i = 0; i < req->outputs.n; i++) {
                const char *o = req->outputs.v[i];
                if (!kiln_path_is_clean_relative(o) || !*o)
                        return cli_usage_error(
                                "run", "--output must be a clean relative path, got '%s'", o);
                const char *slash = strrchr(o, '/');
                char *scratch = slash ? strndup(o, (size_t)(slash - o)) : kiln_strdup(o);
                kiln_strv_push(&req->scratch_paths, scratch);
                free(scratch);
        }
        strv_sort_unique(&req->scratch_paths);
        strv_sort_unique(&req->outputs);
        qsort(req->env, req->n_env, sizeof(*req->env), cmp_env);
        return 0;
}

/* Imports the inputs; their in-sandbox paths are the default needles. */
static int import_inputs(const struct cli_stores *stores, const struct run_args *a,
                         struct kiln_build_request *req, struct kiln_error **err)
{
        req->inputs = kiln_calloc(a->n_inputs, sizeof(*req->inputs));
        for (size_t i = 0; i < a->n_inputs; i++) {
                struct kiln_import_options o = {.blobs = stores->blobs, .dirs = stores->dirs};
                struct kiln_node *n = &req->inputs[req->n_inputs];
                int r = kiln_import_path(&o, AT_FDCWD, a->inputs[i].path, n, err);
                if (r < 0)
                        return r;
                req->n_inputs++;
                kiln_node_set_name(n, a->inputs[i].name, strlen(a->inputs[i].name));
                char *needle = req->inputs_dir[0] ? kiln_asprintf("/%s/%s", req->inputs_dir,
                                                                  a->inputs[i].name)
                                                  : kiln_asprintf("/%s", a->inputs[i].name);
                kiln_strv_push(&req->needles, needle);
                free(needle);
        }
        qsort(req->inputs, req->n_inputs, sizeof(*req->inputs), cmp_node);
        for (size_t i = 0; i < a->extra_needles.n; i++)
                kiln_strv_push(&req->needles, a->extra_needles.v[i]);
        return 0;
}

/* One JSON line per output (its node and the needles found in it), and the
 * outputs written under export_dir if asked. Returns the exit status. */
static int report_outputs(const struct cli_stores *stores, const struct kiln_build_request *req,
                          const struct kiln_build *build, const char *export_dir, bool print)
{
        struct kiln_error *err = NULL;
        int status = 0;
        for (size_t i = 0; i < build->n_outputs; i++) {
                const struct kiln_build_output *bo = &build->outputs[i];
                json_t *line = json_object();
                json_object_set_new(line, "output", json_string(req->outputs.v[i]));
                struct kiln_node anon;
                kiln_node_copy(&anon, &bo->node);
                kiln_node_set_name(&anon, NULL, 0);
                json_object_set_new(line, "node", kiln_node_to_json(&anon));
                json_t *found = json_array();
                for (size_t k = 0; k < bo->n_needles; k++)
                        if (bo->needles[k] < req->needles.n)
                                json_array_append_new(
                                        found, json_string(req->needles.v[bo->needles[k]]));
                json_object_set_new(line, "needles", found);
                if (print)
                        cli_print_json(line);
                json_decref(line);
                if (export_dir) {
                        if (i == 0 && kiln_mkdir_p(export_dir, 0755) < 0) {
                                status = cli_failf("cannot create %s: %m", export_dir);
                                kiln_node_done(&anon);
                                break;
                        }
                        _cleanup_free_ char *dest = kiln_asprintf(
                                "%s/%.*s", export_dir, (int)bo->node.name.len,
                                (const char *)bo->node.name.data);
                        if (kiln_export_node(stores->blobs, stores->dirs, &anon, AT_FDCWD, dest,
                                             &err) < 0) {
                                status = cli_fail(err);
                                kiln_error_clear(&err);
                        }
                }
                kiln_node_done(&anon);
        }
        return status;
}

int cmd_run(int argc, char **argv)
{
        struct cli_stores stores = {0};
        struct kiln_build_request req = {0};
        struct run_args a = {0};
        struct kiln_error *err = NULL;
        request_defaults(&req);

        int status = parse_args(argc, argv, &stores, &req, &a);
        if (status >= 0)
                goto out;
        status = set_scratch_paths(&req);
        if (status)
                goto out;

        status = 1;
        if (cli_stores_open(&stores, CLI_BLOBS | CLI_DIRS))
                goto out;
        if (import_inputs(&stores, &a, &req, &err) < 0 ||
            kiln_build_request_validate(&req, &err) < 0) {
                cli_fail(err);
                goto out;
        }

        struct kiln_build_service *svc = NULL;
        if (cli_build_service_open(&stores, a.build_url, &svc))
                goto out;
        if (!a.no_cache && cli_build_service_cache(&stores, NULL, &svc)) {
                kiln_build_service_free(svc);
                goto out;
        }
        struct kiln_build build;
        int r = cli_build_run(svc, &req, a.timeout, &a.view, &build, &err);
        kiln_build_service_free(svc);
        if (r < 0) {
                cli_fail(err);
                goto out;
        }
        /* With --json the completed event said it all; --export still works. */
        status = report_outputs(&stores, &req, &build, a.export_dir, !a.view.json);
        kiln_build_done(&build);
out:
        kiln_error_free(err);
        run_args_done(&a);
        kiln_build_request_done(&req);
        cli_stores_close(&stores);
        return status;
}
