/* kiln build [REQUEST.json|-] */
#include <kiln/build/build.h>

#include "cli.h"

static const char usage[] =
        "usage: kiln build [options] [REQUEST.json|-]\n"
        "Sends a proto3 JSON BuildRequest (from the file, or stdin) to the build service\n"
        "and prints the resulting Build as JSON (with --json, the build's events instead,\n"
        "the last one, completed, holding the Build).\n\n"
        "  --build-service-addr URL      build service (env BUILD_SERVICE_ADDR; default:\n"
        "                                sandbox://$KILN_HOME/bundles, or oci:// where\n"
        "                                user namespaces are off)\n"
        "  --timeout SECONDS             kill the build after this long\n"
        "  --no-cache                    build even if the action cache remembers this\n"
        "                                request, and do not remember it (default: the\n"
        "                                cache lmdb://$KILN_HOME/action-cache answers a\n"
        "                                request built before whose outputs are stored)\n"
        CLI_BUILD_VIEW_USAGE CLI_STORE_USAGE;

int cmd_build(int argc, char **argv)
{
        static const struct option opts[] = {
                {"build-service-addr", required_argument, NULL, CLI_OPT_BUILD_ADDR},
                {"timeout", required_argument, NULL, 't'},
                {"no-cache", no_argument, NULL, 'C'},
                {"help", no_argument, NULL, 'h'},
                CLI_BUILD_VIEW_OPTIONS,
                CLI_STORE_OPTIONS,
                {},
        };
        struct cli_stores stores = {0};
        const char *build_url = NULL;
        unsigned timeout = 0;
        bool no_cache = false;
        struct cli_build_view view = {0};
        int c;
        while ((c = getopt_long(argc, argv, "hLK", opts, NULL)) != -1) {
                if (cli_stores_option(&stores, c, optarg) || cli_build_view_option(&view, c))
                        continue;
                switch (c) {
                case CLI_OPT_BUILD_ADDR:
                        build_url = optarg;
                        break;
                case 't': {
                        char *end;
                        unsigned long v = strtoul(optarg, &end, 10);
                        if (*end || !*optarg || v == 0 || v > 7 * 24 * 3600)
                                return cli_usage_error("build", "invalid --timeout '%s'",
                                                       optarg);
                        timeout = (unsigned)v;
                        break;
                }
                case 'C':
                        no_cache = true;
                        break;
                case 'h':
                        fputs(usage, stdout);
                        return 0;
                default:
                        return cli_usage_error("build", "invalid option");
                }
        }
        if (argc - optind > 1)
                return cli_usage_error("build", "expected at most one REQUEST file");
        const char *file = optind < argc ? argv[optind] : "-";

        json_error_t jerr;
        json_t *j = !strcmp(file, "-") ? json_loadf(stdin, 0, &jerr) : json_load_file(file, 0, &jerr);
        if (!j)
                return cli_failf("%s: invalid JSON at line %d: %s", file, jerr.line, jerr.text);
        _cleanup_(kiln_error_freep) struct kiln_error *err = NULL;
        struct kiln_build_request req;
        int r = kiln_build_request_from_json(j, &req, &err);
        json_decref(j);
        if (r < 0)
                return cli_failf("%s: %s", file, kiln_error_msg(err));

        int status = 1;
        struct kiln_build_service *svc = NULL;
        if (cli_stores_open(&stores, CLI_BLOBS | CLI_DIRS) == 0 &&
            cli_build_service_open(&stores, build_url, &svc) == 0 &&
            (no_cache || cli_build_service_cache(&stores, NULL, &svc) == 0)) {
                struct kiln_build build;
                if (cli_build_run(svc, &req, timeout, &view, &build, &err) < 0) {
                        status = cli_fail(err);
                } else {
                        if (!view.json) {
                                json_t *out = kiln_build_to_json(&build);
                                cli_print_json(out);
                                json_decref(out);
                        }
                        kiln_build_done(&build);
                        status = 0;
                }
        }
        kiln_build_service_free(svc);
        cli_stores_close(&stores);
        kiln_build_request_done(&req);
        return status;
}
