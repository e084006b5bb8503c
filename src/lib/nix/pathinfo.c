/* The PathInfo store: see pathinfo.h. Records are written canonically by
 * hand (fields in number order, defaults omitted) and read back through
 * protobuf-c, then checked field by field. */
#include <lmdb.h>
#include <sys/stat.h>

#include <kiln/nix/nixbase32.h>
#include <kiln/nix/pathinfo.h>
#include <kiln/store/store.h>
#include <kiln/util/fsutil.h>

#include "pathinfo.pb-c.h"

/* Sparse: the file grows with what is stored. About 300 bytes a record. */
#define PATHINFO_MAP_SIZE ((size_t)16 << 30)

void kiln_nix_pathinfo_done(struct kiln_nix_pathinfo *p)
{
        free(p->path);
        kiln_node_done(&p->node);
        kiln_strv_done(&p->references);
        free(p->deriver);
        free(p->ca);
        *p = (struct kiln_nix_pathinfo){0};
}

/* --- encoding --- */

static void put_tag(struct kiln_buf *b, unsigned field, unsigned wire)
{
        kiln_buf_append_varint(b, (uint64_t)field << 3 | wire);
}

static void put_bytes(struct kiln_buf *b, unsigned field, const void *p, size_t n)
{
        put_tag(b, field, 2);
        kiln_buf_append_varint(b, n);
        kiln_buf_append(b, p, n);
}

static void put_varint(struct kiln_buf *b, unsigned field, uint64_t v)
{
        if (!v)
                return;
        put_tag(b, field, 0);
        kiln_buf_append_varint(b, v);
}

/* The CA's textual form and its enum, in the order of the proto's enum. */
static const struct {
        const char *prefix;
        enum kiln_nix_hash_algo algo;
} ca_kinds[] = {
        {"fixed:r:sha256:", KILN_NIX_HASH_SHA256}, {"fixed:r:sha1:", KILN_NIX_HASH_SHA1},
        {"fixed:r:sha512:", KILN_NIX_HASH_SHA512}, {"fixed:r:md5:", KILN_NIX_HASH_MD5},
        {"text:sha256:", KILN_NIX_HASH_SHA256},    {"fixed:sha1:", KILN_NIX_HASH_SHA1},
        {"fixed:md5:", KILN_NIX_HASH_MD5},         {"fixed:sha256:", KILN_NIX_HASH_SHA256},
        {"fixed:sha512:", KILN_NIX_HASH_SHA512},
};

static int ca_parse(const char *ca, unsigned *ret_type, struct kiln_nix_hash *ret,
                    struct kiln_error **err)
{
        for (unsigned i = 0; i < KILN_ARRAY_SIZE(ca_kinds); i++) {
                size_t n = strlen(ca_kinds[i].prefix);
                if (strncmp(ca, ca_kinds[i].prefix, n))
                        continue;
                *ret_type = i;
                return kiln_nix_hash_parse_bare(ca + n, strlen(ca + n), ca_kinds[i].algo, ret, err);
        }
        return kiln_error_set(err, EINVAL, "unsupported content address '%s'", ca);
}

static int store_path_of(const char *abs, struct kiln_nix_store_path *ret, struct kiln_error **err)
{
        return kiln_nix_store_path_parse(abs, strlen(abs), ret, err);
}

int kiln_nix_pathinfo_encode(const struct kiln_nix_pathinfo *p, struct kiln_buf *out,
                             struct kiln_error **err)
{
        struct kiln_buf node = KILN_BUF_INIT, narinfo = KILN_BUF_INIT, sub = KILN_BUF_INIT;
        int r = 0;
        kiln_node_encode(&p->node, &node);
        put_bytes(out, 1, node.data, node.len);
        struct kiln_nix_store_path sp;
        for (size_t i = 0; r == 0 && i < p->references.n; i++) {
                r = store_path_of(p->references.v[i], &sp, err);
                if (r == 0)
                        put_bytes(out, 2, sp.digest, sizeof(sp.digest));
        }
        put_varint(&narinfo, 1, p->nar_size);
        put_bytes(&narinfo, 2, p->nar_hash.b, 32);
        for (size_t i = 0; r == 0 && i < p->references.n; i++) {
                const char *base = strrchr(p->references.v[i], '/') + 1;
                put_bytes(&narinfo, 4, base, strlen(base));
        }
        if (r == 0 && p->deriver) {
                r = store_path_of(p->deriver, &sp, err);
                size_t n = strlen(sp.name);
                if (r == 0 && (n < 4 || strcmp(sp.name + n - 4, ".drv")))
                        r = kiln_error_set(err, EINVAL, "deriver %s is not a .drv path",
                                           p->deriver);
                if (r == 0) {
                        put_bytes(&sub, 1, sp.name, n - 4);
                        put_bytes(&sub, 2, sp.digest, sizeof(sp.digest));
                        put_bytes(&narinfo, 5, sub.data, sub.len);
                }
        }
        if (r == 0 && p->ca) {
                unsigned type = 0;
                struct kiln_nix_hash h;
                r = ca_parse(p->ca, &type, &h, err);
                if (r == 0) {
                        sub.len = 0;
                        put_varint(&sub, 1, type);
                        put_bytes(&sub, 2, h.b, kiln_nix_hash_algo_size(h.algo));
                        put_bytes(&narinfo, 6, sub.data, sub.len);
                }
        }
        if (r == 0)
                put_bytes(out, 3, narinfo.data, narinfo.len);
        kiln_buf_done(&node);
        kiln_buf_done(&narinfo);
        kiln_buf_done(&sub);
        return r;
}

/* --- decoding --- */

static int bad(struct kiln_error **err, const char *path, const char *what)
{
        return kiln_error_set(err, EBADMSG, "PathInfo of %s: %s", path, what);
}

static char *abs_path(const uint8_t digest[KILN_NIX_PATH_DIGEST], const char *name, size_t len)
{
        char hash[KILN_NIX_HASH_PART_LEN + 1];
        kiln_nixbase32_encode(digest, KILN_NIX_PATH_DIGEST, hash);
        hash[KILN_NIX_HASH_PART_LEN] = '\0';
        return kiln_asprintf("/nix/store/%s-%.*s", hash, (int)len, name);
}

static int decode_narinfo(const char *path, const Tvix__Store__V1__NARInfo *ni,
                          const Tvix__Store__V1__PathInfo *pi, struct kiln_nix_pathinfo *p,
                          struct kiln_error **err)
{
        if (ni->nar_sha256.len != 32)
                return bad(err, path, "NAR hash is not 32 bytes");
        p->nar_hash.algo = KILN_NIX_HASH_SHA256;
        memcpy(p->nar_hash.b, ni->nar_sha256.data, 32);
        p->nar_size = ni->nar_size;
        if (ni->n_reference_names != pi->n_references)
                return bad(err, path, "references and their names differ in number");
        for (size_t i = 0; i < pi->n_references; i++) {
                if (pi->references[i].len != KILN_NIX_PATH_DIGEST)
                        return bad(err, path, "a reference is not 20 bytes");
                const char *name = ni->reference_names[i];
                struct kiln_nix_store_path sp;
                if (kiln_nix_store_path_parse_base(name, strlen(name), &sp, NULL) < 0 ||
                    memcmp(sp.digest, pi->references[i].data, KILN_NIX_PATH_DIGEST))
                        return bad(err, path, "a reference name does not match its digest");
                kiln_strv_push(&p->references, "");
                free(p->references.v[p->references.n - 1]);
                p->references.v[p->references.n - 1] = kiln_asprintf("/nix/store/%s", name);
        }
        if (ni->deriver) {
                struct kiln_nix_store_path sp;
                _cleanup_free_ char *n = kiln_asprintf("%s.drv", ni->deriver->name);
                if (ni->deriver->digest.len != KILN_NIX_PATH_DIGEST ||
                    kiln_nix_store_name_validate(n, strlen(n), NULL) < 0)
                        return bad(err, path, "bad deriver");
                memcpy(sp.digest, ni->deriver->digest.data, KILN_NIX_PATH_DIGEST);
                p->deriver = abs_path(sp.digest, n, strlen(n));
        }
        if (ni->ca) {
                unsigned t = (unsigned)ni->ca->type;
                if (t >= KILN_ARRAY_SIZE(ca_kinds) ||
                    ni->ca->digest.len != kiln_nix_hash_algo_size(ca_kinds[t].algo))
                        return bad(err, path, "bad content address");
                struct kiln_nix_hash h = {.algo = ca_kinds[t].algo};
                memcpy(h.b, ni->ca->digest.data, ni->ca->digest.len);
                p->ca = kiln_asprintf("%s%s", ca_kinds[t].prefix,
                                      KILN_NIX_HASH_STR(&h, KILN_NIX_NIXBASE32, false));
        }
        return 0;
}

int kiln_nix_pathinfo_decode(const char *path, const void *data, size_t len,
                             struct kiln_nix_pathinfo *ret, struct kiln_error **err)
{
        const char *what = path ? path : "a record";
        Tvix__Store__V1__PathInfo *pi =
                tvix__store__v1__path_info__unpack(NULL, len, (const uint8_t *)data);
        if (!pi)
                return bad(err, what, "not a PathInfo message");
        struct kiln_nix_pathinfo p = {0};
        _cleanup_free_ uint8_t *nb = NULL;
        int r = 0;
        if (!pi->node || !pi->narinfo) {
                r = bad(err, what, "no node or no narinfo");
                goto out;
        }
        size_t n = protobuf_c_message_get_packed_size(&pi->node->base);
        nb = kiln_malloc(n ? n : 1);
        protobuf_c_message_pack(&pi->node->base, nb);
        r = kiln_node_decode(nb, n, KILN_NODE_NAMED, &p.node, err);
        if (r < 0) {
                r = kiln_error_prefix(err, -EBADMSG, "PathInfo of %s", what);
                goto out;
        }
        if (path) {
                const char *base = strrchr(path, '/') + 1;
                if (p.node.name.len != strlen(base) ||
                    memcmp(p.node.name.data, base, p.node.name.len)) {
                        r = bad(err, path, "node is not named by the path's basename");
                        goto out;
                }
                p.path = kiln_strdup(path);
        } else {
                struct kiln_nix_store_path sp;
                if (kiln_nix_store_path_parse_base((const char *)p.node.name.data,
                                                   p.node.name.len, &sp, NULL) < 0) {
                        r = bad(err, what, "node is not named by a store path");
                        goto out;
                }
                p.path = kiln_asprintf(KILN_NIX_STORE_DIR "/%.*s", (int)p.node.name.len,
                                       (const char *)p.node.name.data);
        }
        r = decode_narinfo(p.path, pi->narinfo, pi, &p, err);
out:
        tvix__store__v1__path_info__free_unpacked(pi, NULL);
        if (r < 0) {
                kiln_nix_pathinfo_done(&p);
                return r;
        }
        *ret = p;
        return 0;
}

/* --- the LMDB store --- */

struct kiln_nix_pathinfo_store {
        MDB_env *env;
        MDB_dbi dbi;
};

static int lmdb_fail(struct kiln_error **err, int rc, const char *what)
{
        return kiln_error_set(err, rc == MDB_MAP_FULL ? ENOSPC : EIO, "pathinfo store: %s: %s",
                              what, mdb_strerror(rc));
}

int kiln_nix_pathinfo_store_open(const char *dir, struct kiln_nix_pathinfo_store **ret,
                                 struct kiln_error **err)
{
        _cleanup_free_ char *def = NULL;
        if (!dir) {
                _cleanup_free_ char *home = kiln_home();
                dir = def = kiln_asprintf("%s/pathinfo", home);
        }
        int r = kiln_mkdir_p(dir, 0755);
        if (r < 0)
                return kiln_error_errno(err, -r, "create %s", dir);
        struct kiln_nix_pathinfo_store *s = kiln_calloc(1, sizeof(*s));
        int rc = mdb_env_create(&s->env);
        if (rc == 0)
                rc = mdb_env_set_mapsize(s->env, PATHINFO_MAP_SIZE);
        if (rc == 0)
                rc = mdb_env_set_maxreaders(s->env, 1024);
        if (rc == 0)
                rc = mdb_env_open(s->env, dir, MDB_NOTLS, 0644);
        MDB_txn *txn = NULL;
        if (rc == 0)
                rc = mdb_txn_begin(s->env, NULL, 0, &txn);
        if (rc == 0)
                rc = mdb_dbi_open(txn, NULL, 0, &s->dbi);
        if (rc == 0)
                rc = mdb_txn_commit(txn);
        else if (txn)
                mdb_txn_abort(txn);
        if (rc) {
                if (s->env)
                        mdb_env_close(s->env);
                free(s);
                return kiln_error_set(err, EIO, "cannot open the pathinfo store %s: %s", dir,
                                      mdb_strerror(rc));
        }
        *ret = s;
        return 0;
}

void kiln_nix_pathinfo_store_close(struct kiln_nix_pathinfo_store *s)
{
        if (!s)
                return;
        mdb_env_close(s->env);
        free(s);
}

int kiln_nix_pathinfo_get(struct kiln_nix_pathinfo_store *s, const char *path,
                          struct kiln_nix_pathinfo *ret, struct kiln_error **err)
{
        struct kiln_nix_store_path sp;
        int r = store_path_of(path, &sp, err);
        if (r < 0)
                return r;
        MDB_txn *txn;
        int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
        if (rc)
                return lmdb_fail(err, rc, "begin");
        MDB_val k = {.mv_size = sizeof(sp.digest), .mv_data = sp.digest}, v;
        rc = mdb_get(txn, s->dbi, &k, &v);
        if (rc == MDB_NOTFOUND) {
                mdb_txn_abort(txn);
                return 0;
        }
        if (rc) {
                mdb_txn_abort(txn);
                return lmdb_fail(err, rc, "get");
        }
        /* Keyed by the hash part: the same hash with another name is another
         * path, and not here. */
        r = kiln_nix_pathinfo_decode(NULL, v.mv_data, v.mv_size, ret, err);
        mdb_txn_abort(txn);
        if (r < 0)
                return kiln_error_prefix(err, r, "%s", path);
        if (strcmp(ret->path, path)) {
                kiln_nix_pathinfo_done(ret);
                return 0;
        }
        return 1;
}

int kiln_nix_pathinfo_put(struct kiln_nix_pathinfo_store *s, const struct kiln_nix_pathinfo *p,
                          struct kiln_error **err)
{
        struct kiln_nix_store_path sp;
        int r = store_path_of(p->path, &sp, err);
        if (r < 0)
                return r;
        struct kiln_buf b = KILN_BUF_INIT;
        r = kiln_nix_pathinfo_encode(p, &b, err);
        if (r < 0) {
                kiln_buf_done(&b);
                return r;
        }
        MDB_txn *txn;
        int rc = mdb_txn_begin(s->env, NULL, 0, &txn);
        if (rc) {
                kiln_buf_done(&b);
                return lmdb_fail(err, rc, "begin");
        }
        /* Checked in the write transaction, so that two writers cannot both
         * find the key free. */
        MDB_val k = {.mv_size = sizeof(sp.digest), .mv_data = sp.digest};
        MDB_val v;
        rc = mdb_get(txn, s->dbi, &k, &v);
        if (rc == 0) {
                struct kiln_nix_pathinfo held;
                r = kiln_nix_pathinfo_decode(NULL, v.mv_data, v.mv_size, &held, err);
                mdb_txn_abort(txn);
                kiln_buf_done(&b);
                if (r < 0)
                        return kiln_error_prefix(err, r, "%s", p->path);
                if (strcmp(held.path, p->path))
                        r = kiln_error_set(err, EEXIST,
                                           "cannot add '%s': the store holds '%s', "
                                           "whose hash part is the same",
                                           p->path, held.path);
                kiln_nix_pathinfo_done(&held);
                return r;
        }
        if (rc == MDB_NOTFOUND) {
                v = (MDB_val){.mv_size = b.len, .mv_data = b.data};
                rc = mdb_put(txn, s->dbi, &k, &v, 0);
        }
        if (rc == 0)
                rc = mdb_txn_commit(txn);
        else
                mdb_txn_abort(txn);
        kiln_buf_done(&b);
        return rc ? lmdb_fail(err, rc, "put") : 0;
}

int kiln_nix_pathinfo_list(struct kiln_nix_pathinfo_store *s,
                           int (*fn)(void *ctx, const struct kiln_nix_pathinfo *p,
                                     struct kiln_error **err),
                           void *ctx, struct kiln_error **err)
{
        MDB_txn *txn;
        MDB_cursor *cur;
        int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
        if (rc)
                return lmdb_fail(err, rc, "begin");
        rc = mdb_cursor_open(txn, s->dbi, &cur);
        if (rc) {
                mdb_txn_abort(txn);
                return lmdb_fail(err, rc, "cursor");
        }
        MDB_val k, v;
        int r = 0;
        for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0 && r >= 0;
             rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
                if (k.mv_size != KILN_NIX_PATH_DIGEST) {
                        r = kiln_error_set(err, EBADMSG, "pathinfo store: bad key");
                        break;
                }
                struct kiln_nix_pathinfo p;
                r = kiln_nix_pathinfo_decode(NULL, v.mv_data, v.mv_size, &p, err);
                if (r == 0) {
                        r = fn(ctx, &p, err);
                        kiln_nix_pathinfo_done(&p);
                }
        }
        mdb_cursor_close(cur);
        mdb_txn_abort(txn);
        if (r < 0)
                return r;
        return rc == MDB_NOTFOUND ? 0 : lmdb_fail(err, rc, "list");
}

int kiln_nix_pathinfo_closure(struct kiln_nix_pathinfo_store *s, const struct kiln_strv *roots,
                              struct kiln_strv *ret, struct kiln_error **err)
{
        _cleanup_(kiln_strv_done) struct kiln_strv todo = {0}, seen = {0};
        int r = 0;
        for (size_t i = 0; i < roots->n; i++)
                kiln_strv_push(&todo, roots->v[i]);
        for (size_t i = 0; r >= 0 && i < todo.n; i++) {
                bool dup = false;
                for (size_t k = 0; k < seen.n && !dup; k++)
                        dup = !strcmp(seen.v[k], todo.v[i]);
                if (dup)
                        continue;
                struct kiln_nix_pathinfo pi;
                r = kiln_nix_pathinfo_get(s, todo.v[i], &pi, err);
                if (r == 0)
                        r = kiln_error_set(err, ENOENT, "path '%s' is not valid", todo.v[i]);
                if (r < 0)
                        break;
                kiln_strv_push(&seen, todo.v[i]);
                for (size_t k = 0; k < pi.references.n; k++)
                        kiln_strv_push(&todo, pi.references.v[k]);
                kiln_nix_pathinfo_done(&pi);
        }
        if (r < 0)
                return r;
        *ret = seen;
        seen = (struct kiln_strv){0};
        return 0;
}
