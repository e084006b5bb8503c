/* Service URLs and digests as a user or client writes them: parsing never
 * crashes and rejects with one line; in-memory store URLs are also opened,
 * which runs each backend's own checks (host, path, query) without touching
 * the disk. The first byte picks the parser. */
#include <kiln/castore/digest.h>
#include <kiln/store/store.h>
#include <kiln/util/url.h>

#include "fuzz.h"

static void digest(const char *s)
{
        struct kiln_error *err = NULL;
        struct kiln_digest d, again;
        int r = kiln_digest_parse(s, &d, &err);
        if (r < 0)
                return fuzz_rejected(r, &err);
        char b64[KILN_DIGEST_B64_BUFSZ], hex[KILN_DIGEST_HEX_BUFSZ];
        FUZZ_CHECK(kiln_digest_parse(kiln_digest_to_b64(&d, b64), &again, &err) == 0);
        FUZZ_CHECK(kiln_digest_eq(&d, &again));
        FUZZ_CHECK(kiln_digest_parse(kiln_digest_to_hex(&d, hex), &again, &err) == 0);
        FUZZ_CHECK(kiln_digest_eq(&d, &again));
}

static void url(const char *s)
{
        struct kiln_error *err = NULL;
        struct kiln_url u = {0};
        int r = kiln_url_parse(s, &u, &err);
        if (r < 0) {
                fuzz_rejected(r, &err);
                return;
        }
        FUZZ_CHECK(u.scheme && u.type && u.path);
        free(kiln_url_query_get(&u, "x"));
        kiln_url_done(&u);
}

static void store(const char *s)
{
        struct kiln_error *err = NULL;
        if (strncmp(s, "memory:", 7) && strncmp(s, "objectstore+memory:", 19))
                return;
        struct kiln_blob_service *b = NULL;
        int r = kiln_blob_service_open(s, &b, &err);
        if (r < 0)
                fuzz_rejected(r, &err);
        else
                kiln_blob_service_free(b);
        struct kiln_directory_service *d = NULL;
        r = kiln_directory_service_open(s, &d, &err);
        if (r < 0)
                fuzz_rejected(r, &err);
        else
                kiln_directory_service_free(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
        if (size < 1 || size > 4096)
                return 0;
        char *s = kiln_malloc(size);
        memcpy(s, data + 1, size - 1);
        s[size - 1] = '\0';
        switch (data[0] % 3) {
        case 0:
                digest(s);
                break;
        case 1:
                url(s);
                break;
        default:
                store(s);
                break;
        }
        free(s);
        return 0;
}
