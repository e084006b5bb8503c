/* The store options shared by every verb. */
#include <stdlib.h>

#include <kiln/castore/json.h>

#include "cli.h"

bool cli_stores_option(struct cli_stores *s, int opt, const char *arg)
{
        switch (opt) {
        case CLI_OPT_BLOB_ADDR:
                s->blob_url = arg;
                return true;
        case CLI_OPT_DIR_ADDR:
                s->dir_url = arg;
                return true;
        }
        return false;
}

int cli_parse_store_options(const char *verb, const char *usage, int argc, char **argv,
                            struct cli_stores *s)
{
        static const struct option opts[] = {
                {"help", no_argument, NULL, 'h'},
                CLI_STORE_OPTIONS,
                {},
        };
        int c;
        while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                if (cli_stores_option(s, c, optarg))
                        continue;
                if (c == 'h') {
                        fputs(usage, stdout);
                        return 0;
                }
                return cli_usage_error(verb, "invalid option");
        }
        return -1;
}

static char *pick(const char *opt, const char *env, char *(*fallback)(void))
{
        if (opt)
                return kiln_strdup(opt);
        const char *e = getenv(env);
        if (e && *e)
                return kiln_strdup(e);
        return fallback();
}

int cli_stores_open(struct cli_stores *s, unsigned which)
{
        _cleanup_free_ char *blob_url = pick(s->blob_url, "BLOB_SERVICE_ADDR",
                                             kiln_default_blob_url);
        _cleanup_free_ char *dir_url = pick(s->dir_url, "DIRECTORY_SERVICE_ADDR",
                                            kiln_default_directory_url);
        _cleanup_(kiln_error_freep) struct kiln_error *err = NULL;
        if ((which & CLI_BLOBS) && kiln_blob_service_open(blob_url, &s->blobs, &err) < 0)
                return cli_fail(err);
        if ((which & CLI_DIRS) && kiln_directory_service_open(dir_url, &s->dirs, &err) < 0) {
                kiln_blob_service_free(s->blobs);
                s->blobs = NULL;
                return cli_fail(err);
        }
        return 0;
}

void cli_stores_close(struct cli_stores *s)
{
        kiln_directory_service_free(s->dirs);
        kiln_blob_service_free(s->blobs);
        s->dirs = NULL;
        s->blobs = NULL;
}

void cli_print_json(json_t *j)
{
        _cleanup_free_ char *s = kiln_json_dumps(j);
        puts(s);
}
