/* Nix's serve protocol (what `nix-store --serve --write` speaks on stdin and
 * stdout, Nix 2.8's serve-protocol.hh, version 2.7) over kiln's stores: the
 * PathInfo store says which /nix/store paths kiln holds, castore holds their
 * contents, and derivations are built through kiln's build service. This is
 * what Nix's legacy ssh:// store and its build hook talk to, so a kiln
 * machine can be a Nix remote builder. Everything the client sends is
 * checked before the store changes; an error ends the session, as it ends
 * nix-store --serve. */
#include <inttypes.h>
#include <poll.h>
#include <pthread.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <time.h>
#include <unistd.h>

#include <kiln/nix/nar.h>
#include <kiln/nix/pathinfo.h>
#include <kiln/nix/wire.h>
#include <kiln/nixbuild/serve.h>
#include <kiln/util/cancel.h>

#define SERVE_MAGIC_1 0x390c9debu
#define SERVE_MAGIC_2 0x5452eecbu
#define SERVE_VERSION 0x207u

enum {
        CMD_QUERY_VALID_PATHS = 1,
        CMD_QUERY_PATH_INFOS = 2,
        CMD_DUMP_STORE_PATH = 3,
        CMD_IMPORT_PATHS = 4,
        CMD_EXPORT_PATHS = 5,
        CMD_BUILD_PATHS = 6,
        CMD_QUERY_CLOSURE = 7,
        CMD_BUILD_DERIVATION = 8,
        CMD_ADD_TO_STORE_NAR = 9,
};

/* BuildResult::Status */
enum {
        BUILT = 0,
        PERMANENT_FAILURE = 3,
        TIMED_OUT = 8,
        MISC_FAILURE = 9,
        LOG_LIMIT_EXCEEDED = 11,
        NOT_DETERMINISTIC = 12,
};

/* Repeats of one build a client may ask for (--repeat). */
#define MAX_REPEAT 64

#define MAX_PATHS   (1u << 20)
#define MAX_STRING  (64u << 20)
#define STRING_PATH 4096

struct serve {
        struct kiln_nix_conn c;
        unsigned minor; /* the protocol minor version both sides speak */
        bool write, ignore_hangup;
        struct kiln_nixbuild_options o;
};

static void say(const struct serve *s, const char *fmt, ...) _printf_(2, 3);
static void say(const struct serve *s, const char *fmt, ...)
{
        if (!s->o.log)
                return;
        va_list ap;
        va_start(ap, fmt);
        char *line;
        if (vasprintf(&line, fmt, ap) >= 0) {
                s->o.log(s->o.userdata, line);
                free(line);
        }
        va_end(ap);
}

static int valid_path(struct serve *s, const char *path, bool *ret, struct kiln_error **err)
{
        struct kiln_nix_store_path sp;
        int r = kiln_nix_store_path_parse(path, strlen(path), &sp, err);
        if (r < 0)
                return r;
        struct kiln_nix_pathinfo pi;
        r = kiln_nix_pathinfo_get(s->o.pathinfo, path, &pi, err);
        if (r < 0)
                return r;
        *ret = r > 0;
        if (r > 0)
                kiln_nix_pathinfo_done(&pi);
        return 0;
}

static void write_strv(struct serve *s, const struct kiln_strv *v)
{
        kiln_nix_write_u64(&s->c, v->n);
        for (size_t i = 0; i < v->n; i++)
                kiln_nix_write_string(&s->c, v->v[i]);
}

static int query_valid_paths(struct serve *s, struct kiln_error **err)
{
        uint64_t lock, substitute;
        _cleanup_(kiln_strv_done) struct kiln_strv paths = {0}, valid = {0};
        int r = kiln_nix_read_u64(&s->c, &lock, err);
        if (r == 0)
                r = kiln_nix_read_u64(&s->c, &substitute, err);
        if (r == 0)
                r = kiln_nix_read_strings(&s->c, MAX_PATHS, STRING_PATH, &paths, err);
        for (size_t i = 0; r == 0 && i < paths.n; i++) {
                bool ok;
                r = valid_path(s, paths.v[i], &ok, err);
                if (r == 0 && ok)
                        kiln_strv_push(&valid, paths.v[i]);
        }
        if (r < 0)
                return r;
        write_strv(s, &valid);
        return 0;
}

static int query_path_infos(struct serve *s, struct kiln_error **err)
{
        _cleanup_(kiln_strv_done) struct kiln_strv paths = {0};
        int r = kiln_nix_read_strings(&s->c, MAX_PATHS, STRING_PATH, &paths, err);
        for (size_t i = 0; r == 0 && i < paths.n; i++) {
                struct kiln_nix_store_path sp;
                r = kiln_nix_store_path_parse(paths.v[i], strlen(paths.v[i]), &sp, err);
                if (r < 0)
                        break;
                struct kiln_nix_pathinfo pi;
                r = kiln_nix_pathinfo_get(s->o.pathinfo, paths.v[i], &pi, err);
                if (r <= 0)
                        continue; /* an unknown path is left out, as Nix does */
                r = 0;
                kiln_nix_write_string(&s->c, pi.path);
                kiln_nix_write_string(&s->c, pi.deriver ? pi.deriver : "");
                write_strv(s, &pi.references);
                kiln_nix_write_u64(&s->c, pi.nar_size); /* download size */
                kiln_nix_write_u64(&s->c, pi.nar_size);
                if (s->minor >= 4) {
                        kiln_nix_write_string(
                            &s->c, KILN_NIX_HASH_STR(&pi.nar_hash, KILN_NIX_NIXBASE32, true));
                        kiln_nix_write_string(&s->c, pi.ca ? pi.ca : "");
                        kiln_nix_write_u64(&s->c, 0); /* signatures */
                }
                kiln_nix_pathinfo_done(&pi);
        }
        if (r < 0)
                return r;
        kiln_nix_write_string(&s->c, "");
        return 0;
}

static int conn_sink_write(void *ctx, const void *p, size_t n, struct kiln_error **err)
{
        struct kiln_nix_conn *c = ctx;
        kiln_nix_write_raw(c, p, n);
        return c->wlen >= 256 * 1024 ? kiln_nix_flush(c, err) : 0;
}

/* The store path's record, with its contents present. */
static int get_held(struct serve *s, const char *path, struct kiln_nix_pathinfo *ret,
                    struct kiln_error **err)
{
        struct kiln_nix_store_path sp;
        int r = kiln_nix_store_path_parse(path, strlen(path), &sp, err);
        if (r < 0)
                return r;
        r = kiln_nix_pathinfo_get(s->o.pathinfo, path, ret, err);
        if (r == 0)
                r = kiln_error_set(err, ENOENT, "path '%s' is not valid", path);
        return r < 0 ? r : 0;
}

static int dump_store_path(struct serve *s, struct kiln_error **err)
{
        _cleanup_free_ char *path = NULL;
        int r = kiln_nix_read_string(&s->c, STRING_PATH, &path, NULL, err);
        struct kiln_nix_pathinfo pi;
        if (r == 0)
                r = get_held(s, path, &pi, err);
        if (r < 0)
                return r;
        struct kiln_nix_nar_sink sink = {.write = conn_sink_write, .ctx = &s->c};
        struct kiln_nix_nar_info info;
        r = kiln_nix_nar_dump_node(s->o.blobs, s->o.dirs, &pi.node, &sink, &info, err);
        if (r == 0 && (info.size != pi.nar_size || !kiln_nix_hash_eq(&info.hash, &pi.nar_hash)))
                r = kiln_error_set(err, EBADMSG, "the NAR of '%s' differs from its recorded hash",
                                   path);
        kiln_nix_pathinfo_done(&pi);
        return r;
}

static int cmp_str(const void *a, const void *b)
{
        return strcmp(*(char *const *)a, *(char *const *)b);
}

static int query_closure(struct serve *s, struct kiln_error **err)
{
        uint64_t include_outputs;
        _cleanup_(kiln_strv_done) struct kiln_strv roots = {0}, closure = {0};
        int r = kiln_nix_read_u64(&s->c, &include_outputs, err);
        if (r == 0)
                r = kiln_nix_read_strings(&s->c, MAX_PATHS, STRING_PATH, &roots, err);
        for (size_t i = 0; r == 0 && i < roots.n; i++) {
                struct kiln_nix_store_path sp;
                r = kiln_nix_store_path_parse(roots.v[i], strlen(roots.v[i]), &sp, err);
        }
        if (r == 0)
                r = kiln_nix_pathinfo_closure(s->o.pathinfo, &roots, &closure, err);
        if (r < 0)
                return r;
        if (closure.n)
                qsort(closure.v, closure.n, sizeof(char *), cmp_str);
        write_strv(s, &closure);
        return 0;
}

/* Reads exactly `left` bytes of the connection: the NAR of AddToStoreNar. */
struct sized_source {
        struct kiln_nix_conn *c;
        uint64_t left;
};

static ssize_t sized_read(void *ctx, void *buf, size_t n, struct kiln_error **err)
{
        struct sized_source *src = ctx;
        if (n > src->left)
                n = (size_t)src->left;
        if (n == 0)
                return 0;
        int r = kiln_nix_read_raw(src->c, buf, n, err);
        if (r < 0)
                return r;
        src->left -= n;
        return (ssize_t)n;
}

/* Records one path whose NAR is already in castore as node. */
static int record_path(struct serve *s, const char *path, struct kiln_strv *refs,
                       const char *deriver, const char *ca, struct kiln_node *node,
                       const struct kiln_nix_nar_info *nar, struct kiln_error **err)
{
        const char *base = strrchr(path, '/') + 1;
        kiln_node_set_name(node, base, strlen(base));
        if (refs->n)
                qsort(refs->v, refs->n, sizeof(char *), cmp_str);
        struct kiln_nix_pathinfo rec = {
            .path = (char *)path,
            .node = *node,
            .nar_hash = nar->hash,
            .nar_size = nar->size,
            .references = *refs,
            .deriver = deriver && *deriver ? (char *)deriver : NULL,
            .ca = ca && *ca ? (char *)ca : NULL,
        };
        return kiln_nix_pathinfo_put(s->o.pathinfo, &rec, err);
}

/* Each reference other than the path itself must be held already. */
static int check_refs(struct serve *s, const char *path, const struct kiln_strv *refs,
                      struct kiln_error **err)
{
        struct kiln_nix_store_path sp;
        int r = 0;
        for (size_t i = 0; r == 0 && i < refs->n; i++) {
                r = kiln_nix_store_path_parse(refs->v[i], strlen(refs->v[i]), &sp, err);
                bool ok = true;
                if (r == 0 && strcmp(refs->v[i], path))
                        r = valid_path(s, refs->v[i], &ok, err);
                if (r == 0 && !ok)
                        r = kiln_error_set(err, EINVAL,
                                           "cannot add path '%s' because it lacks a valid "
                                           "reference '%s'",
                                           path, refs->v[i]);
        }
        return r;
}

static int add_to_store_nar(struct serve *s, struct kiln_error **err)
{
        if (!s->write)
                return kiln_error_set(err, EPERM, "importing paths is not allowed");
        _cleanup_free_ char *path = NULL, *deriver = NULL, *hash = NULL, *ca = NULL;
        _cleanup_(kiln_strv_done) struct kiln_strv refs = {0}, sigs = {0};
        uint64_t reg_time, nar_size, ultimate;
        struct kiln_nix_store_path sp;
        struct kiln_nix_hash want;
        int r = kiln_nix_read_string(&s->c, STRING_PATH, &path, NULL, err);
        if (r == 0)
                r = kiln_nix_read_string(&s->c, STRING_PATH, &deriver, NULL, err);
        if (r == 0)
                r = kiln_nix_read_string(&s->c, 1024, &hash, NULL, err);
        if (r == 0)
                r = kiln_nix_read_strings(&s->c, MAX_PATHS, STRING_PATH, &refs, err);
        if (r == 0)
                r = kiln_nix_read_u64(&s->c, &reg_time, err);
        if (r == 0)
                r = kiln_nix_read_u64(&s->c, &nar_size, err);
        if (r == 0)
                r = kiln_nix_read_u64(&s->c, &ultimate, err);
        if (r == 0)
                r = kiln_nix_read_strings(&s->c, 1024, 4096, &sigs, err);
        if (r == 0)
                r = kiln_nix_read_string(&s->c, 1024, &ca, NULL, err);
        if (r < 0)
                return r;
        /* Check everything the client claims before reading the NAR. */
        r = kiln_nix_store_path_parse(path, strlen(path), &sp, err);
        if (r == 0 && *deriver)
                r = kiln_nix_store_path_parse(deriver, strlen(deriver), &sp, err);
        if (r == 0)
                r = kiln_nix_hash_parse(hash, KILN_NIX_HASH_SHA256, &want, err);
        if (r == 0 && want.algo != KILN_NIX_HASH_SHA256)
                r = kiln_error_set(err, EINVAL, "NAR hash of '%s' is not SHA-256", path);
        if (r == 0 && nar_size == 0)
                r = kiln_error_set(err, EINVAL, "narInfo is too old and missing the narSize field");
        if (r == 0)
                r = check_refs(s, path, &refs, err);
        if (r < 0)
                return kiln_error_prefix(err, r, "add '%s'", path);

        struct sized_source ss = {.c = &s->c, .left = nar_size};
        struct kiln_nix_nar_source src = {.read = sized_read, .ctx = &ss};
        struct kiln_node node = {0};
        struct kiln_nix_nar_info got;
        r = kiln_nix_nar_import(s->o.blobs, s->o.dirs, &src, &node, &got, err);
        if (r < 0)
                return kiln_error_prefix(err, r, "add '%s'", path);
        if (got.size != nar_size || !kiln_nix_hash_eq(&got.hash, &want)) {
                kiln_node_done(&node);
                return kiln_error_set_lines(
                    err, EINVAL,
                    "hash mismatch importing path '%s';\n  specified: %s "
                    "(%" PRIu64 " bytes)\n  got:       %s (%" PRIu64 " bytes)",
                    path, KILN_NIX_HASH_STR(&want, KILN_NIX_NIXBASE32, true), nar_size,
                    KILN_NIX_HASH_STR(&got.hash, KILN_NIX_NIXBASE32, true), got.size);
        }
        r = record_path(s, path, &refs, deriver, ca, &node, &got, err);
        kiln_node_done(&node);
        if (r < 0)
                return r;
        kiln_nix_write_u64(&s->c, 1);
        return 0;
}

/* The NAR of an export archive has no length in front: this source reads it
 * from the connection token by token, following just enough of its
 * grammar (parentheses, and which strings are values) to stop right after
 * the NAR's last byte. The NAR reader checks everything else. */
struct framed_source {
        struct kiln_nix_conn *c;
        int depth;       /* open parentheses */
        bool started;    /* the first "(" seen */
        bool value_next; /* the next string is a value, not a token */
        bool done;
        /* the string being passed on */
        uint8_t len_bytes[8];
        unsigned len_have;
        uint64_t left; /* bytes of body and padding still to pass on */
        uint64_t body_len;
        char tok[16];
        unsigned tok_len;
};

static void framed_token(struct framed_source *f)
{
        bool is_value = f->value_next;
        f->value_next = false;
        if (is_value || f->body_len > sizeof(f->tok))
                return;
        const char *t = f->tok;
        size_t n = f->tok_len;
#define TOK(s) (n == sizeof(s) - 1 && !memcmp(t, s, n))
        if (TOK("(")) {
                f->depth++;
                f->started = true;
        } else if (TOK(")")) {
                if (--f->depth <= 0 && f->started)
                        f->done = true;
        } else if (TOK("type") || TOK("contents") || TOK("target") || TOK("name") ||
                   TOK("executable")) {
                f->value_next = true;
        }
#undef TOK
}

static ssize_t framed_read(void *ctx, void *buf, size_t n, struct kiln_error **err)
{
        struct framed_source *f = ctx;
        uint8_t *out = buf;
        size_t got = 0;
        while (got < n && !f->done) {
                int r;
                if (f->len_have < 8) {
                        r = kiln_nix_read_raw(f->c, &f->len_bytes[f->len_have], 1, err);
                        if (r < 0)
                                return r;
                        out[got++] = f->len_bytes[f->len_have++];
                        if (f->len_have == 8) {
                                uint64_t len = 0;
                                for (int i = 7; i >= 0; i--)
                                        len = len << 8 | f->len_bytes[i];
                                if (len > (1ull << 62))
                                        return kiln_error_set(err, EINVAL,
                                                              "invalid NAR in export archive");
                                f->body_len = len;
                                f->left = len + (-len & 7);
                                f->tok_len = 0;
                                if (!f->left) {
                                        f->len_have = 0;
                                        framed_token(f);
                                }
                        }
                        continue;
                }
                size_t k = (size_t)KILN_MIN((uint64_t)(n - got), f->left);
                r = kiln_nix_read_raw(f->c, out + got, k, err);
                if (r < 0)
                        return r;
                uint64_t pos = f->body_len + (-f->body_len & 7) - f->left;
                for (size_t i = 0; i < k; i++, pos++)
                        if (pos < f->body_len && f->tok_len < sizeof(f->tok))
                                f->tok[f->tok_len++] = (char)out[got + i];
                got += k;
                f->left -= k;
                if (!f->left) {
                        f->len_have = 0;
                        framed_token(f);
                }
        }
        return (ssize_t)got;
}

#define EXPORT_MAGIC 0x4558494eu

/* `nix-store --export` archives: {1 NAR EXPORT_MAGIC path refs deriver 0} 0. */
static int import_paths(struct serve *s, struct kiln_error **err)
{
        if (!s->write)
                return kiln_error_set(err, EPERM, "importing paths is not allowed");
        for (;;) {
                uint64_t more, magic, sig;
                int r = kiln_nix_read_u64(&s->c, &more, err);
                if (r < 0)
                        return r;
                if (more == 0)
                        break;
                if (more != 1)
                        return kiln_error_set(err, EINVAL,
                                              "input doesn't look like something "
                                              "created by 'nix-store --export'");
                struct framed_source f = {.c = &s->c};
                struct kiln_nix_nar_source src = {.read = framed_read, .ctx = &f};
                struct kiln_node node = {0};
                struct kiln_nix_nar_info nar;
                r = kiln_nix_nar_import(s->o.blobs, s->o.dirs, &src, &node, &nar, err);
                if (r < 0)
                        return kiln_error_prefix(err, r, "import paths");
                _cleanup_free_ char *path = NULL, *deriver = NULL, *sigstr = NULL;
                _cleanup_(kiln_strv_done) struct kiln_strv refs = {0};
                struct kiln_nix_store_path sp;
                r = kiln_nix_read_u64(&s->c, &magic, err);
                if (r == 0 && magic != EXPORT_MAGIC)
                        r = kiln_error_set(err, EINVAL,
                                           "Nix archive cannot be imported; wrong format");
                if (r == 0)
                        r = kiln_nix_read_string(&s->c, STRING_PATH, &path, NULL, err);
                if (r == 0)
                        r = kiln_nix_read_strings(&s->c, MAX_PATHS, STRING_PATH, &refs, err);
                if (r == 0)
                        r = kiln_nix_read_string(&s->c, STRING_PATH, &deriver, NULL, err);
                if (r == 0)
                        r = kiln_nix_read_u64(&s->c, &sig, err);
                if (r == 0 && sig == 1)
                        r = kiln_nix_read_string(&s->c, 4096, &sigstr, NULL, err);
                if (r == 0)
                        r = kiln_nix_store_path_parse(path, strlen(path), &sp, err);
                if (r == 0 && *deriver)
                        r = kiln_nix_store_path_parse(deriver, strlen(deriver), &sp, err);
                if (r == 0)
                        r = check_refs(s, path, &refs, err);
                if (r == 0)
                        r = record_path(s, path, &refs, deriver, NULL, &node, &nar, err);
                kiln_node_done(&node);
                if (r < 0)
                        return path ? kiln_error_prefix(err, r, "import '%s'", path) : r;
        }
        kiln_nix_write_u64(&s->c, 1);
        return 0;
}

/* The same archive for paths kiln holds, in the order given. */
static int export_paths(struct serve *s, struct kiln_error **err)
{
        uint64_t obsolete;
        _cleanup_(kiln_strv_done) struct kiln_strv paths = {0};
        int r = kiln_nix_read_u64(&s->c, &obsolete, err);
        if (r == 0)
                r = kiln_nix_read_strings(&s->c, MAX_PATHS, STRING_PATH, &paths, err);
        for (size_t i = 0; r == 0 && i < paths.n; i++) {
                struct kiln_nix_pathinfo pi;
                r = get_held(s, paths.v[i], &pi, err);
                if (r < 0)
                        break;
                kiln_nix_write_u64(&s->c, 1);
                struct kiln_nix_nar_sink sink = {.write = conn_sink_write, .ctx = &s->c};
                r = kiln_nix_nar_dump_node(s->o.blobs, s->o.dirs, &pi.node, &sink, NULL, err);
                if (r == 0) {
                        kiln_nix_write_u64(&s->c, EXPORT_MAGIC);
                        kiln_nix_write_string(&s->c, pi.path);
                        write_strv(s, &pi.references);
                        kiln_nix_write_string(&s->c, pi.deriver ? pi.deriver : "");
                        kiln_nix_write_u64(&s->c, 0);
                }
                kiln_nix_pathinfo_done(&pi);
        }
        if (r == 0)
                kiln_nix_write_u64(&s->c, 0);
        return r;
}

/* The settings a build command carries (getBuildSettings). */
static int read_build_settings(struct serve *s, struct kiln_error **err)
{
        /* maxSilentTime, buildTimeout, maxLogSize (2.2), buildRepeat,
         * enforceDeterminism (2.3), keepFailed (2.7) */
        uint64_t v[6] = {0};
        unsigned n = 2 + (s->minor >= 2) + 2 * (s->minor >= 3) + (s->minor >= 7);
        for (unsigned i = 0; i < n; i++) {
                int r = kiln_nix_read_u64(&s->c, &v[i], err);
                if (r < 0)
                        return r;
        }
        /* The client's limits replace the service's for its builds, as
         * nix-store --serve takes them; a limit beyond a week (or that does
         * not fit) is no limit given. Repeats are run (at most
         * MAX_REPEAT); keep-failed keeps a failed build's bundle. */
        const uint64_t week = 7 * 24 * 3600;
        s->o.max_silent = v[0] <= week ? (unsigned)v[0] : 0;
        s->o.timeout = v[1] <= week ? (unsigned)v[1] : 0;
        s->o.max_log = v[2];
        if (v[3] > MAX_REPEAT)
                return kiln_error_set(err, EINVAL, "a build repeated %llu times (at most %u)",
                                      (unsigned long long)v[3], MAX_REPEAT);
        s->o.repeat = (unsigned)v[3];
        s->o.enforce_determinism = v[4] != 0;
        s->o.keep_failed = v[5] != 0;
        return 0;
}

static void aterm_string(struct kiln_buf *b, const char *p)
{
        kiln_buf_append_byte(b, '"');
        for (; *p; p++) {
                const char *e = NULL;
                switch (*p) {
                case '"':
                        e = "\\\"";
                        break;
                case '\\':
                        e = "\\\\";
                        break;
                case '\n':
                        e = "\\n";
                        break;
                case '\r':
                        e = "\\r";
                        break;
                case '\t':
                        e = "\\t";
                        break;
                }
                if (e)
                        kiln_buf_append(b, e, strlen(e));
                else
                        kiln_buf_append_byte(b, (uint8_t)*p);
        }
        kiln_buf_append_byte(b, '"');
}

static int read_aterm_string(struct serve *s, struct kiln_buf *b, struct kiln_error **err)
{
        _cleanup_free_ char *v = NULL;
        int r = kiln_nix_read_string(&s->c, MAX_STRING, &v, NULL, err);
        if (r == 0)
                aterm_string(b, v);
        return r;
}

/* A list of strings, as ATerm, with `sep` between items. */
static int read_aterm_list(struct serve *s, struct kiln_buf *b, struct kiln_error **err)
{
        uint64_t n;
        int r = kiln_nix_read_u64(&s->c, &n, err);
        if (r == 0 && n > MAX_PATHS)
                r = kiln_error_set(err, EINVAL, "derivation: list of %" PRIu64 " items", n);
        kiln_buf_append_byte(b, '[');
        for (uint64_t i = 0; r == 0 && i < n; i++) {
                if (i)
                        kiln_buf_append_byte(b, ',');
                r = read_aterm_string(s, b, err);
        }
        kiln_buf_append_byte(b, ']');
        return r;
}

/* Reads a BasicDerivation (outputs, inputSrcs, platform, builder, args,
 * env) and writes it as ATerm text with no input derivations, so the
 * strict parser checks it exactly as it checks a .drv file. */
static int read_basic_derivation(struct serve *s, struct kiln_buf *b, struct kiln_error **err)
{
        uint64_t n;
        kiln_buf_append(b, "Derive([", 8);
        int r = kiln_nix_read_u64(&s->c, &n, err);
        if (r == 0 && n > 1024)
                r = kiln_error_set(err, EINVAL, "derivation: %" PRIu64 " outputs", n);
        for (uint64_t i = 0; r == 0 && i < n; i++) {
                kiln_buf_append(b, i ? ",(" : "(", i ? 2 : 1);
                for (int k = 0; r == 0 && k < 4; k++) {
                        if (k)
                                kiln_buf_append_byte(b, ',');
                        r = read_aterm_string(s, b, err);
                }
                kiln_buf_append_byte(b, ')');
        }
        kiln_buf_append(b, "],[],", 5);
        if (r == 0)
                r = read_aterm_list(s, b, err);
        for (int k = 0; r == 0 && k < 2; k++) {
                kiln_buf_append_byte(b, ',');
                r = read_aterm_string(s, b, err);
        }
        kiln_buf_append_byte(b, ',');
        if (r == 0)
                r = read_aterm_list(s, b, err);
        kiln_buf_append(b, ",[", 2);
        if (r == 0)
                r = kiln_nix_read_u64(&s->c, &n, err);
        if (r == 0 && n > MAX_PATHS)
                r = kiln_error_set(err, EINVAL, "derivation: %" PRIu64 " variables", n);
        for (uint64_t i = 0; r == 0 && i < n; i++) {
                kiln_buf_append(b, i ? ",(" : "(", i ? 2 : 1);
                r = read_aterm_string(s, b, err);
                kiln_buf_append_byte(b, ',');
                if (r == 0)
                        r = read_aterm_string(s, b, err);
                kiln_buf_append_byte(b, ')');
        }
        kiln_buf_append(b, "])", 2);
        return r;
}

/* While a build runs the client sends nothing; its end of the connection
 * hanging up means it dropped the build, which is then cancelled (Nix's
 * MonitorFdHup). */
struct hup_watch {
        const struct serve *s;
        int fd;
        struct kiln_cancel *cancel;
        int stop_fd[2];
};

static void *watch_hup(void *arg)
{
        struct hup_watch *w = arg;
        for (;;) {
                struct pollfd p[2] = {{.fd = w->fd, .events = POLLRDHUP},
                                      {.fd = w->stop_fd[0], .events = POLLIN}};
                int n = poll(p, 2, -1);
                if (n < 0 && errno == EINTR)
                        continue;
                if (n < 0 || p[1].revents)
                        return NULL;
                if (p[0].revents & (POLLHUP | POLLRDHUP | POLLERR | POLLNVAL)) {
                        say(w->s, "kiln nix serve: the client hung up, cancelling the build");
                        kiln_cancel_trigger(w->cancel);
                        return NULL;
                }
                if (p[0].revents) /* unexpected input: stop watching, never spin */
                        return NULL;
        }
}

/* Builds d (no input derivations) while watching the client for a
 * hang-up; *dropped says the build was cancelled for one. */
static int watched_build(struct serve *s, const struct kiln_nix_derivation *d,
                         const char *drv_path, struct kiln_nixbuild_result *res, bool *dropped,
                         struct kiln_error **e)
{
        _cleanup_(kiln_cancel_freep) struct kiln_cancel *cancel = kiln_cancel_new();
        struct hup_watch w = {.s = s, .fd = s->c.in_fd, .cancel = cancel};
        pthread_t t;
        bool watching = !s->ignore_hangup && pipe2(w.stop_fd, O_CLOEXEC) == 0;
        if (watching && pthread_create(&t, NULL, watch_hup, &w)) {
                close(w.stop_fd[0]);
                close(w.stop_fd[1]);
                watching = false;
        }
        s->o.cancel = cancel;
        int r = kiln_nixbuild_build_basic(&s->o, d, drv_path, res, e);
        s->o.cancel = NULL;
        if (watching) {
                close(w.stop_fd[1]);
                pthread_join(t, NULL);
                close(w.stop_fd[0]);
        }
        *dropped = r < 0 && kiln_cancel_is_set(cancel);
        return r;
}

/* BuildResult::Status of a build's outcome. */
static uint64_t result_status(int r, const struct kiln_error *e)
{
        if (r == 0)
                return BUILT;
        if (r == -ETIMEDOUT)
                return TIMED_OUT;
        if (r == -KILN_NIXBUILD_NOT_DETERMINISTIC)
                return NOT_DETERMINISTIC;
        if (e && strstr(e->msg, "(max-log-size)"))
                return LOG_LIMIT_EXCEEDED;
        return r == -EBADMSG ? MISC_FAILURE : PERMANENT_FAILURE;
}

static int build_derivation(struct serve *s, struct kiln_error **err)
{
        if (!s->write)
                return kiln_error_set(err, EPERM, "building paths is not allowed");
        _cleanup_free_ char *drv_path = NULL, *name = NULL;
        _cleanup_(kiln_buf_done) struct kiln_buf text = KILN_BUF_INIT;
        _cleanup_(kiln_nix_derivation_freep) struct kiln_nix_derivation *d = NULL;
        struct kiln_nix_store_path sp;
        int r = kiln_nix_read_string(&s->c, STRING_PATH, &drv_path, NULL, err);
        if (r == 0)
                r = kiln_nix_store_path_parse(drv_path, strlen(drv_path), &sp, err);
        if (r == 0)
                r = kiln_nix_drv_name_from_path(&sp, &name, err);
        if (r == 0)
                r = read_basic_derivation(s, &text, err);
        if (r == 0)
                r = read_build_settings(s, err);
        if (r < 0)
                return r;
        r = kiln_nix_derivation_parse(text.data, text.len, &d, err);
        if (r < 0)
                return kiln_error_prefix(err, r, "derivation '%s'", drv_path);

        uint64_t start = (uint64_t)time(NULL);
        _cleanup_(kiln_error_freep) struct kiln_error *e = NULL;
        bool dropped;
        struct kiln_nixbuild_result res;
        r = watched_build(s, d, drv_path, &res, &dropped, &e);
        if (dropped)
                return kiln_error_set(err, ECANCELED, "the client dropped the build of '%s'",
                                      drv_path);
        uint64_t stop = (uint64_t)time(NULL);
        if (r < 0)
                say(s, "error: %s", e->msg);
        kiln_nix_write_u64(&s->c, result_status(r, e));
        kiln_nix_write_string(&s->c, r < 0 ? e->msg : "");
        if (s->minor >= 3) {
                kiln_nix_write_u64(&s->c, res.times_built);
                kiln_nix_write_u64(&s->c, res.non_deterministic);
                kiln_nix_write_u64(&s->c, start);
                kiln_nix_write_u64(&s->c, stop);
        }
        if (s->minor >= 6)
                kiln_nix_write_u64(&s->c, 0); /* builtOutputs: only for floating outputs */
        return 0;
}

static void nar_token(struct kiln_buf *b, const char *t)
{
        static const uint8_t zero[8];
        size_t n = strlen(t);
        uint8_t le[8];
        for (int i = 0; i < 8; i++)
                le[i] = (uint8_t)((uint64_t)n >> (8 * i));
        kiln_buf_append(b, le, 8);
        kiln_buf_append(b, t, n);
        kiln_buf_append(b, zero, -n & 7);
}

struct buf_sink {
        struct kiln_buf *b;
        uint64_t max;
};

static int buf_sink_write(void *ctx, const void *p, size_t n, struct kiln_error **err)
{
        struct buf_sink *bs = ctx;
        if (bs->b->len + n > bs->max)
                return kiln_error_set(err, EFBIG, "derivation larger than its recorded NAR");
        kiln_buf_append(bs->b, p, n);
        return 0;
}

#define MAX_DRV_NAR (256u << 20)

/* A .drv path kiln holds (copied in by the client), read back from castore
 * through its NAR, which must have the recorded hash, and parsed. */
static int read_held_drv(struct serve *s, const char *path, struct kiln_nix_derivation **ret,
                         struct kiln_error **err)
{
        struct kiln_nix_pathinfo pi;
        int r = get_held(s, path, &pi, err);
        if (r < 0)
                return r;
        _cleanup_(kiln_buf_done) struct kiln_buf nar = KILN_BUF_INIT;
        _cleanup_(kiln_buf_done) struct kiln_buf head = KILN_BUF_INIT;
        struct buf_sink bs = {.b = &nar, .max = pi.nar_size};
        struct kiln_nix_nar_sink sink = {.write = buf_sink_write, .ctx = &bs};
        struct kiln_nix_nar_info info;
        if (pi.nar_size > MAX_DRV_NAR)
                r = kiln_error_set(err, EFBIG, "derivation '%s' is too large", path);
        if (r == 0)
                r = kiln_nix_nar_dump_node(s->o.blobs, s->o.dirs, &pi.node, &sink, &info, err);
        if (r == 0 && (info.size != pi.nar_size || !kiln_nix_hash_eq(&info.hash, &pi.nar_hash)))
                r = kiln_error_set(err, EBADMSG, "the NAR of '%s' differs from its recorded hash",
                                   path);
        kiln_nix_pathinfo_done(&pi);
        if (r < 0)
                return r;
        /* a regular file: its contents follow a fixed head */
        const char *t[] = {"nix-archive-1", "(", "type", "regular", "contents"};
        for (size_t i = 0; i < 5; i++)
                nar_token(&head, t[i]);
        uint64_t len = 0;
        if (nar.len >= head.len + 8 && !memcmp(nar.data, head.data, head.len))
                for (int i = 7; i >= 0; i--)
                        len = len << 8 | nar.data[head.len + (size_t)i];
        if (nar.len < head.len + 8 || memcmp(nar.data, head.data, head.len) ||
            len > nar.len - head.len - 8)
                return kiln_error_set(err, EINVAL, "'%s' is not a derivation file", path);
        r = kiln_nix_derivation_parse(nar.data + head.len + 8, (size_t)len, ret, err);
        return r < 0 ? kiln_error_prefix(err, r, "derivation '%s'", path) : 0;
}

static bool held(struct serve *s, const struct kiln_nix_store_path *p, struct kiln_error **err,
                 int *r)
{
        _cleanup_free_ char *path = kiln_nix_store_path_to_string(p);
        bool ok = false;
        *r = valid_path(s, path, &ok, err);
        return *r == 0 && ok;
}

static int cmp_path(const void *a, const void *b)
{
        return kiln_nix_store_path_cmp(a, b);
}

#define MAX_DRV_DEPTH 512

/* Builds the derivation drv_path that kiln holds, after the input
 * derivations whose outputs it does not hold (each held too), unless its
 * outputs are all held already. */
static int realise_drv(struct serve *s, const char *drv_path, unsigned depth, bool *dropped,
                       struct kiln_error **err)
{
        if (depth > MAX_DRV_DEPTH)
                return kiln_error_set(err, ELOOP, "'%s': input derivations nested too deep",
                                      drv_path);
        _cleanup_(kiln_nix_derivation_freep) struct kiln_nix_derivation *d = NULL;
        int r = read_held_drv(s, drv_path, &d, err);
        if (r < 0)
                return r;
        bool all = true;
        for (size_t i = 0; r == 0 && all && i < d->n_outputs; i++)
                all = (d->outputs[i].kind == KILN_NIX_OUTPUT_INPUT_ADDRESSED ||
                       d->outputs[i].kind == KILN_NIX_OUTPUT_FIXED) &&
                      held(s, &d->outputs[i].path, err, &r);
        if (r < 0 || all)
                return r;
        /* The inputs' outputs become input sources, as the build hook makes a
         * BasicDerivation. */
        size_t cap = d->n_input_srcs;
        for (size_t i = 0; i < d->n_input_drvs; i++)
                cap += d->input_drvs[i].n_outputs;
        struct kiln_nix_store_path *srcs = kiln_calloc(cap ? cap : 1, sizeof(*srcs));
        size_t n = 0;
        for (size_t i = 0; i < d->n_input_srcs; i++)
                srcs[n++] = d->input_srcs[i];
        for (size_t i = 0; r == 0 && i < d->n_input_drvs; i++) {
                const struct kiln_nix_drv_input *in = &d->input_drvs[i];
                _cleanup_free_ char *in_path = kiln_nix_store_path_to_string(&in->drv);
                _cleanup_(kiln_nix_derivation_freep) struct kiln_nix_derivation *id = NULL;
                r = read_held_drv(s, in_path, &id, err);
                for (size_t k = 0; r == 0 && k < in->n_outputs; k++) {
                        const struct kiln_nix_drv_output *o = NULL;
                        for (size_t m = 0; m < id->n_outputs; m++)
                                if (!strcmp(id->outputs[m].name, in->outputs[k]))
                                        o = &id->outputs[m];
                        if (!o || (o->kind != KILN_NIX_OUTPUT_INPUT_ADDRESSED &&
                                   o->kind != KILN_NIX_OUTPUT_FIXED)) {
                                r = kiln_error_set(err, EINVAL,
                                                   "'%s' has no output '%s' with a known path",
                                                   in_path, in->outputs[k]);
                                break;
                        }
                        if (!held(s, &o->path, err, &r) && r == 0)
                                r = realise_drv(s, in_path, depth + 1, dropped, err);
                        if (r == 0 && !held(s, &o->path, err, &r) && r == 0)
                                r = kiln_error_set(err, EIO, "building '%s' did not give '%s'",
                                                   in_path, in->outputs[k]);
                        if (r == 0)
                                srcs[n++] = o->path;
                }
        }
        if (r < 0) {
                free(srcs);
                return r;
        }
        qsort(srcs, n, sizeof(*srcs), cmp_path);
        size_t u = 0;
        for (size_t i = 0; i < n; i++)
                if (!u || kiln_nix_store_path_cmp(&srcs[u - 1], &srcs[i]))
                        srcs[u++] = srcs[i];
        /* The derivation lent as a basic one: its own arrays go back after. */
        struct kiln_nix_drv_input *in_drvs = d->input_drvs;
        size_t n_in_drvs = d->n_input_drvs;
        struct kiln_nix_store_path *in_srcs = d->input_srcs;
        size_t n_in_srcs = d->n_input_srcs;
        d->input_drvs = NULL;
        d->n_input_drvs = 0;
        d->input_srcs = srcs;
        d->n_input_srcs = u;
        r = watched_build(s, d, drv_path, NULL, dropped, err);
        d->input_drvs = in_drvs;
        d->n_input_drvs = n_in_drvs;
        d->input_srcs = in_srcs;
        d->n_input_srcs = n_in_srcs;
        free(srcs);
        return r;
}

/* cmdBuildPaths: store paths, each "path" or "path!outputs" (all outputs
 * of a derivation are built). A .drv must be held (copied in first, as
 * `nix copy --derivation` does) with its input derivations; any other path
 * must be held, since kiln substitutes nothing. */
static int build_paths(struct serve *s, struct kiln_error **err)
{
        if (!s->write)
                return kiln_error_set(err, EPERM, "building paths is not allowed");
        _cleanup_(kiln_strv_done) struct kiln_strv paths = {0};
        int r = kiln_nix_read_strings(&s->c, MAX_PATHS, STRING_PATH, &paths, err);
        if (r == 0)
                r = read_build_settings(s, err);
        if (r < 0)
                return r;
        _cleanup_(kiln_error_freep) struct kiln_error *e = NULL;
        bool dropped = false;
        for (size_t i = 0; r == 0 && i < paths.n; i++) {
                char *path = paths.v[i];
                char *bang = strchr(path, '!');
                if (bang)
                        *bang = '\0';
                struct kiln_nix_store_path sp;
                size_t len = strlen(path);
                r = kiln_nix_store_path_parse(path, len, &sp, &e);
                if (r == 0 && len > 4 && !strcmp(path + len - 4, ".drv")) {
                        r = realise_drv(s, path, 0, &dropped, &e);
                } else if (r == 0) {
                        bool ok;
                        r = valid_path(s, path, &ok, &e);
                        if (r == 0 && !ok)
                                r = kiln_error_set(&e, ENOENT,
                                                   "path '%s' is not valid and kiln "
                                                   "substitutes nothing",
                                                   path);
                }
        }
        if (dropped)
                return kiln_error_set(err, ECANCELED, "the client dropped the build");
        if (r < 0) {
                say(s, "error: %s", e->msg);
                kiln_nix_write_u64(&s->c, result_status(r, e));
                kiln_nix_write_string(&s->c, e->msg);
        } else {
                kiln_nix_write_u64(&s->c, BUILT);
        }
        return 0;
}

static int serve_loop(struct serve *s, struct kiln_error **err)
{
        uint64_t magic, client;
        int r = kiln_nix_read_u64(&s->c, &magic, err);
        if (r < 0)
                return r;
        if (magic != SERVE_MAGIC_1)
                return kiln_error_set(err, EPROTO, "protocol mismatch");
        kiln_nix_write_u64(&s->c, SERVE_MAGIC_2);
        kiln_nix_write_u64(&s->c, SERVE_VERSION);
        r = kiln_nix_flush(&s->c, err);
        if (r == 0)
                r = kiln_nix_read_u64(&s->c, &client, err);
        if (r < 0)
                return r;
        if ((client & 0xff00) != 0x200)
                return kiln_error_set(err, EPROTO, "unsupported serve protocol version %#" PRIx64,
                                      client);
        s->minor = (unsigned)KILN_MIN(client & 0xff, SERVE_VERSION & 0xff);
        for (;;) {
                uint64_t cmd;
                struct kiln_error *e = NULL;
                r = kiln_nix_read_u64(&s->c, &cmd, &e);
                if (r == -EPIPE) {
                        kiln_error_free(e);
                        return 0; /* the client is done */
                }
                if (r < 0) {
                        if (err)
                                *err = e;
                        else
                                kiln_error_free(e);
                        return r;
                }
                switch (cmd) {
                case CMD_QUERY_VALID_PATHS:
                        r = query_valid_paths(s, err);
                        break;
                case CMD_QUERY_PATH_INFOS:
                        r = query_path_infos(s, err);
                        break;
                case CMD_DUMP_STORE_PATH:
                        r = dump_store_path(s, err);
                        break;
                case CMD_QUERY_CLOSURE:
                        r = query_closure(s, err);
                        break;
                case CMD_ADD_TO_STORE_NAR:
                        r = add_to_store_nar(s, err);
                        break;
                case CMD_BUILD_DERIVATION:
                        r = build_derivation(s, err);
                        break;
                case CMD_BUILD_PATHS:
                        r = build_paths(s, err);
                        break;
                case CMD_IMPORT_PATHS:
                        r = import_paths(s, err);
                        break;
                case CMD_EXPORT_PATHS:
                        r = export_paths(s, err);
                        break;
                default:
                        r = kiln_error_set(err, EPROTO, "unknown serve command %" PRIu64, cmd);
                }
                if (r == 0)
                        r = kiln_nix_flush(&s->c, err);
                if (r < 0)
                        return r;
        }
}

int kiln_nixbuild_serve(const struct kiln_nixbuild_serve_options *o, int in_fd, int out_fd,
                        struct kiln_error **err)
{
        struct serve s = {.write = o->write, .ignore_hangup = o->ignore_hangup, .o = o->build};
        s.o.pathinfo_only = true;
        s.o.jobs = 1;
        kiln_nix_conn_init(&s.c, in_fd, out_fd, "the Nix client");
        int r = serve_loop(&s, err);
        kiln_nix_conn_done(&s.c);
        return r;
}
