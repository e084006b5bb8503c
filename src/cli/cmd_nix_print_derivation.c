/* kiln nix print-derivation DRV... */
#include <fcntl.h>

#include "cli_nix.h"

static const char usage[] =
    "usage: kiln nix print-derivation [options] DRV...\n"
    "Parses each .drv file strictly and prints it back in ATerm form, which for\n"
    "anything Nix wrote is the same bytes (no newline is added).\n\n"
    "  -h, --help          show this help\n";

int cmd_nix_print_derivation(int argc, char **argv)
{
        static const struct option opts[] = {
            {"help", no_argument, NULL, 'h'},
            {},
        };
        int c;
        while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
                if (c == 'h') {
                        fputs(usage, stdout);
                        return 0;
                }
                return cli_usage_error("nix print-derivation", "invalid option");
        }
        if (optind >= argc)
                return cli_usage_error("nix print-derivation", "no DRV given");
        _cleanup_(kiln_error_freep) struct kiln_error *err = NULL;
        struct kiln_buf out = KILN_BUF_INIT;
        int status = 0;
        for (int i = optind; i < argc; i++) {
                _cleanup_(kiln_nix_derivation_freep) struct kiln_nix_derivation *d = NULL;
                if (kiln_nix_derivation_read_file(AT_FDCWD, argv[i], &d, &err) < 0) {
                        status = cli_fail(err);
                        kiln_error_clear(&err);
                        continue;
                }
                kiln_buf_clear(&out);
                kiln_nix_derivation_print(d, &out);
                int r = kiln_write_all(STDOUT_FILENO, out.data, out.len);
                if (r < 0) {
                        status = cli_failf("nix print-derivation: write to standard output: %s",
                                           strerror(-r));
                        break;
                }
        }
        kiln_buf_done(&out);
        return status;
}
