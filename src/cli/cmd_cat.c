/* kiln cat b3:<digest>... */
#include "cli.h"

static const char usage[] = "usage: kiln cat [options] DIGEST...\n"
                            "Writes the blobs (b3:<base64> or hex digests) to stdout.\n\n"
                            CLI_STORE_USAGE;

static int cat_one(struct kiln_blob_service *blobs, const char *arg, uint8_t *buf, size_t size,
                   struct kiln_error **err)
{
        struct kiln_digest d;
        int r = kiln_digest_parse(arg, &d, err);
        if (r < 0)
                return r;
        _cleanup_(kiln_blob_reader_freep) struct kiln_blob_reader *rd = NULL;
        r = kiln_blob_open_read(blobs, &d, &rd, err);
        if (r < 0)
                return r;
        if (r == 0)
                return kiln_error_set(err, ENOENT, "blob %s not found", KILN_DIGEST_B64(&d));
        for (;;) {
                const void *p;
                ssize_t n = kiln_blob_reader_read_view(rd, buf, size, &p, err);
                if (n < 0)
                        return (int)n;
                if (n == 0)
                        return 0;
                r = kiln_write_all(STDOUT_FILENO, p, (size_t)n);
                if (r < 0)
                        return kiln_error_errno(err, -r, "write to stdout");
        }
}

int cmd_cat(int argc, char **argv)
{
        struct cli_stores stores = {0};
        int status = cli_parse_store_options("cat", usage, argc, argv, &stores);
        if (status >= 0)
                return status;
        if (optind >= argc)
                return cli_usage_error("cat", "no DIGEST given");
        if (cli_stores_open(&stores, CLI_BLOBS))
                return 1;
        size_t size = 1024 * 1024;
        _cleanup_free_ uint8_t *buf = kiln_malloc(size);
        _cleanup_(kiln_error_freep) struct kiln_error *err = NULL;
        status = 0;
        for (int i = optind; i < argc; i++)
                if (cat_one(stores.blobs, argv[i], buf, size, &err) < 0) {
                        status = cli_fail(err);
                        kiln_error_clear(&err);
                }
        cli_stores_close(&stores);
        return status;
}
