/* The kiln command line: one cmd_<verb>() per file, dispatched by main.c.
 * A verb returns the process exit status and prints its own errors. */
#pragma once

#include <getopt.h>
#include <stdio.h>

#include <kiln/util/error.h>
#include <jansson.h>

#include <kiln/build/service.h>
#include <kiln/store/store.h>

int cmd_hash(int argc, char **argv);
/* `kiln nix serve` relayed to a `kiln nix serve --listen` (serve_relay.c):
 * the exit status, or -1 when kiln-core is to serve the session itself. */
int serve_relay(int argc, char **argv);

/* GLIBC_TUNABLES for kiln-core's heap on huge pages (tunables.c): set by
 * `kiln` before it executes kiln-core, undone by kiln-core at start. */
void tunables_for_core(void);
void tunables_restore(void);

int cmd_import(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_cat(int argc, char **argv);
int cmd_ls(int argc, char **argv);
int cmd_daemon(int argc, char **argv);
int cmd_mount(int argc, char **argv);
int cmd_build(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_nix(int argc, char **argv);

/* A verb of a verb table, which ends with a NULL name. */
struct cli_verb {
        const char *name;
        int (*run)(int argc, char **argv);
        const char *summary;
};
/* Runs the verb argv[1] of `prog` ("kiln", "kiln nix") with argv + 1; --help
 * lists the verbs (names padded to `width`); returns the exit status. */
int cli_dispatch(const char *prog, const struct cli_verb *verbs, int width, int argc, char **argv);

/* Prints "kiln: <msg>" on stderr; returns the exit status 1. */
int cli_fail(const struct kiln_error *e);
/* Prints "kiln: <formatted>" on stderr; returns 1. */
int cli_failf(const char *fmt, ...) _printf_(1, 2);
/* FUSE reads served by this process's mounts (builds' inputs included);
 * false in a build without FUSE. */
bool cli_fuse_read_stats(uint64_t *reads, uint64_t *bytes);
/* For a bad command line: prints "kiln <verb>: <formatted>" and a hint;
 * returns the exit status 2. */
int cli_usage_error(const char *verb, const char *fmt, ...) _printf_(2, 3);

/* The store options every verb takes. */
enum {
        CLI_OPT_BLOB_ADDR = 0x1000,
        CLI_OPT_DIR_ADDR,
        CLI_OPT_BUILD_ADDR,
        CLI_OPT_JSON,
};
#define CLI_STORE_OPTIONS                                                                          \
        {"blob-service-addr", required_argument, NULL, CLI_OPT_BLOB_ADDR},                         \
                {"directory-service-addr", required_argument, NULL, CLI_OPT_DIR_ADDR}
#define CLI_STORE_USAGE                                                                            \
        "  --blob-service-addr URL       blob store (env BLOB_SERVICE_ADDR; default: the\n"        \
        "                                embedded store under $KILN_HOME)\n"                       \
        "  --directory-service-addr URL  directory store (env DIRECTORY_SERVICE_ADDR)\n"

struct cli_stores {
        const char *blob_url; /* from the option, else NULL */
        const char *dir_url;
        struct kiln_blob_service *blobs;
        struct kiln_directory_service *dirs;
};

/* Takes a store option from getopt; returns true if `opt` was one. */
bool cli_stores_option(struct cli_stores *s, int opt, const char *arg);
enum {
        CLI_BLOBS = 1 << 0,
        CLI_DIRS = 1 << 1,
};
/* Parses the options of a verb that takes only --help and the store
 * options. Returns -1 to go on (operands from optind), else the exit status
 * (0 after --help, 2 for a bad option). */
int cli_parse_store_options(const char *verb, const char *usage, int argc, char **argv,
                            struct cli_stores *s);
/* Opens the configured stores named by `which` (option, else environment,
 * else the default embedded store). Prints the error and returns 1 on
 * failure, else 0. */
int cli_stores_open(struct cli_stores *s, unsigned which);
void cli_stores_close(struct cli_stores *s);

/* The build service: --build-service-addr, else BUILD_SERVICE_ADDR, else the
 * local OCI runner oci://$KILN_HOME/bundles over the stores in `s` (which
 * must be open and outlive it). Prints the error and returns 1 on failure. */
int cli_build_service_open(struct cli_stores *s, const char *url,
                           struct kiln_build_service **ret);
/* Puts the caching build service (kiln/build/action_cache.h) in front of
 * *svc: identical requests in flight run once, and with an action cache
 * (`url`, else lmdb://$KILN_HOME/action-cache; "none": no cache) a finished
 * build is remembered and answered again while its outputs are in the
 * stores of `s`. A grpc+… build service gets no cache (the daemon behind it
 * keeps its own). Prints the error and returns 1 on failure (*svc is then
 * still the caller's). */
int cli_build_service_cache(struct cli_stores *s, const char *url,
                            struct kiln_build_service **svc);

/* How a build is shown while it runs. */
struct cli_build_view {
        bool json; /* its events as proto3 JSON lines on stdout, Completed or Failed last */
        bool logs; /* its output on stderr as it comes (default: stderr is a terminal) */
        bool keep_failed; /* keep its directory if it fails (kiln_build_call) */
};
#define CLI_BUILD_VIEW_OPTIONS                                   \
        {"json", no_argument, NULL, CLI_OPT_JSON},               \
        {"print-build-logs", no_argument, NULL, 'L'},            \
        {"keep-failed", no_argument, NULL, 'K'}
#define CLI_BUILD_VIEW_USAGE                                                                  \
        "  --json                        print the build's events as they happen, one proto3\n" \
        "                                JSON line each (kiln.build.v1.BuildEvent)\n"         \
        "  -L, --print-build-logs        show the build's output on stderr (the default on\n"  \
        "                                a terminal)\n"                                          \
        "  -K, --keep-failed             keep the directory of the build if it fails, on the\n" \
        "                                machine that ran it (the failure names it)\n"
/* Takes the view options: true when `c` was one of them. */
bool cli_build_view_option(struct cli_build_view *v, int c);

/* Runs a build, showing the phase, the queue position and elapsed time on
 * stderr while it runs when stderr is a terminal, and what `view` asks for;
 * SIGINT/SIGTERM cancel it. */
int cli_build_run(struct kiln_build_service *svc, const struct kiln_build_request *req,
                  unsigned timeout, const struct cli_build_view *view, struct kiln_build *ret,
                  struct kiln_error **err);

/* Writes a JSON value as one line to stdout. */
void cli_print_json(json_t *j);
