/* lmdb:///abs/dir action cache: one LMDB environment with two databases:
 * "entries" (a request's 32-byte identity -> an 8-byte big-endian use
 * sequence number and the record) and "lru" (that sequence number -> the
 * identity), so the least recently used entry is the first of "lru". A put
 * takes the next number (the last of "lru" plus one) and evicts from the
 * front of "lru" while there are more than max_entries. A hit refreshes the
 * entry's number only once it has fallen into the older half of the cache
 * (a write transaction for every hit would cost more than the hit), so
 * eviction is least recently used at the granularity of half the bound.
 * Every call is one short transaction (MDB_NOTLS: any thread); LMDB
 * serialises writers, also across processes sharing the directory. */
#include <lmdb.h>

#include <kiln/util/fsutil.h>

#include "action_cache_backends.h"

/* Sparse: the file grows with what is stored; a record is a few hundred bytes. */
#define AC_MAP_SIZE (sizeof(size_t) >= 8 ? ((size_t)8 << 30) : ((size_t)256 << 20))
#define SEQ_LEN     8

struct lmdb_cache {
        struct kiln_action_cache base;
        MDB_env *env;
        MDB_dbi entries, lru;
        char *dir;
};

static int ac_fail(struct lmdb_cache *l, struct kiln_error **err, int rc, const char *what)
{
        return kiln_error_set(err, rc == MDB_MAP_FULL ? ENOSPC : EIO, "action cache %s: %s: %s",
                              l->dir, what, mdb_strerror(rc));
}

static void seq_put(uint8_t out[SEQ_LEN], uint64_t v)
{
        for (int i = SEQ_LEN - 1; i >= 0; i--, v >>= 8)
                out[i] = (uint8_t)v;
}

static uint64_t seq_get(const uint8_t in[SEQ_LEN])
{
        uint64_t v = 0;
        for (int i = 0; i < SEQ_LEN; i++)
                v = v << 8 | in[i];
        return v;
}

/* The last sequence number in use (0 when empty). */
static int last_seq(struct lmdb_cache *l, MDB_txn *txn, uint64_t *ret)
{
        MDB_cursor *cur;
        int rc = mdb_cursor_open(txn, l->lru, &cur);
        if (rc)
                return rc;
        MDB_val k, v;
        rc = mdb_cursor_get(cur, &k, &v, MDB_LAST);
        mdb_cursor_close(cur);
        if (rc == MDB_NOTFOUND) {
                *ret = 0;
                return 0;
        }
        if (rc)
                return rc;
        *ret = k.mv_size == SEQ_LEN ? seq_get(k.mv_data) : 0;
        return 0;
}

/* Deletes key's entry and its lru record, if any. */
static int drop(struct lmdb_cache *l, MDB_txn *txn, const struct kiln_digest *key, bool *ret_found)
{
        MDB_val k = {.mv_size = KILN_DIGEST_LEN, .mv_data = (void *)key->b}, v;
        int rc = mdb_get(txn, l->entries, &k, &v);
        *ret_found = false;
        if (rc == MDB_NOTFOUND)
                return 0;
        if (rc)
                return rc;
        *ret_found = true;
        if (v.mv_size >= SEQ_LEN) {
                uint8_t s[SEQ_LEN];
                memcpy(s, v.mv_data, SEQ_LEN);
                MDB_val sk = {.mv_size = SEQ_LEN, .mv_data = s};
                rc = mdb_del(txn, l->lru, &sk, NULL);
                if (rc && rc != MDB_NOTFOUND)
                        return rc;
        }
        return mdb_del(txn, l->entries, &k, NULL);
}

/* Writes key's entry with the next sequence number, then evicts. */
static int insert(struct lmdb_cache *l, MDB_txn *txn, const struct kiln_digest *key,
                  const void *data, size_t len)
{
        bool found;
        int rc = drop(l, txn, key, &found);
        uint64_t seq = 0;
        if (rc == 0)
                rc = last_seq(l, txn, &seq);
        if (rc)
                return rc;
        uint8_t s[SEQ_LEN];
        seq_put(s, seq + 1);
        MDB_val k = {.mv_size = KILN_DIGEST_LEN, .mv_data = (void *)key->b};
        MDB_val v = {.mv_size = SEQ_LEN + len};
        rc = mdb_put(txn, l->entries, &k, &v, MDB_RESERVE);
        if (rc)
                return rc;
        memcpy(v.mv_data, s, SEQ_LEN);
        if (len)
                memcpy((uint8_t *)v.mv_data + SEQ_LEN, data, len);
        MDB_val sk = {.mv_size = SEQ_LEN, .mv_data = s};
        rc = mdb_put(txn, l->lru, &sk, &k, 0);
        if (rc)
                return rc;
        MDB_stat st;
        rc = mdb_stat(txn, l->entries, &st);
        if (rc)
                return rc;
        MDB_cursor *cur;
        rc = mdb_cursor_open(txn, l->lru, &cur);
        if (rc)
                return rc;
        for (size_t n = st.ms_entries; rc == 0 && n > l->base.max_entries; n--) {
                MDB_val ok, ov;
                rc = mdb_cursor_get(cur, &ok, &ov, MDB_FIRST);
                if (rc)
                        break;
                MDB_val ek = ov; /* the identity; deleted from entries below */
                struct kiln_digest victim;
                if (ek.mv_size != KILN_DIGEST_LEN) {
                        rc = mdb_cursor_del(cur, 0);
                        continue;
                }
                memcpy(victim.b, ek.mv_data, KILN_DIGEST_LEN);
                rc = mdb_cursor_del(cur, 0);
                if (rc == 0) {
                        MDB_val dk = {.mv_size = KILN_DIGEST_LEN, .mv_data = victim.b};
                        rc = mdb_del(txn, l->entries, &dk, NULL);
                        if (rc == MDB_NOTFOUND)
                                rc = 0;
                }
        }
        mdb_cursor_close(cur);
        return rc;
}

static int lmdb_get(struct kiln_action_cache *c, const struct kiln_digest *key,
                    struct kiln_buf *ret, struct kiln_error **err)
{
        struct lmdb_cache *l = (struct lmdb_cache *)c;
        MDB_txn *txn;
        int rc = mdb_txn_begin(l->env, NULL, MDB_RDONLY, &txn);
        if (rc)
                return ac_fail(l, err, rc, "begin");
        MDB_val k = {.mv_size = KILN_DIGEST_LEN, .mv_data = (void *)key->b}, v;
        rc = mdb_get(txn, l->entries, &k, &v);
        if (rc == MDB_NOTFOUND) {
                mdb_txn_abort(txn);
                return 0;
        }
        uint64_t last = 0;
        if (rc == 0)
                rc = last_seq(l, txn, &last);
        if (rc) {
                mdb_txn_abort(txn);
                return ac_fail(l, err, rc, "get");
        }
        if (v.mv_size < SEQ_LEN) {
                mdb_txn_abort(txn);
                return kiln_error_set(err, EBADMSG, "action cache %s: record %s is truncated",
                                      l->dir, KILN_DIGEST_B64(key));
        }
        uint64_t seq = seq_get(v.mv_data);
        size_t start = ret->len;
        kiln_buf_append(ret, (uint8_t *)v.mv_data + SEQ_LEN, v.mv_size - SEQ_LEN);
        mdb_txn_abort(txn);
        if (last - seq <= l->base.max_entries / 2)
                return 1;
        /* Fallen into the older half: refresh (a failure only costs recency). */
        rc = mdb_txn_begin(l->env, NULL, 0, &txn);
        if (rc == 0) {
                rc = insert(l, txn, key, ret->data + start, ret->len - start);
                if (rc == 0)
                        rc = mdb_txn_commit(txn);
                else
                        mdb_txn_abort(txn);
        }
        return 1;
}

static int lmdb_put(struct kiln_action_cache *c, const struct kiln_digest *key, const void *data,
                    size_t len, struct kiln_error **err)
{
        struct lmdb_cache *l = (struct lmdb_cache *)c;
        MDB_txn *txn;
        int rc = mdb_txn_begin(l->env, NULL, 0, &txn);
        if (rc)
                return ac_fail(l, err, rc, "begin");
        rc = insert(l, txn, key, data, len);
        if (rc) {
                mdb_txn_abort(txn);
                return ac_fail(l, err, rc, "put");
        }
        rc = mdb_txn_commit(txn);
        return rc ? ac_fail(l, err, rc, "commit") : 0;
}

static int lmdb_remove(struct kiln_action_cache *c, const struct kiln_digest *key,
                       struct kiln_error **err)
{
        struct lmdb_cache *l = (struct lmdb_cache *)c;
        MDB_txn *txn;
        int rc = mdb_txn_begin(l->env, NULL, 0, &txn);
        if (rc)
                return ac_fail(l, err, rc, "begin");
        bool found;
        rc = drop(l, txn, key, &found);
        if (rc) {
                mdb_txn_abort(txn);
                return ac_fail(l, err, rc, "remove");
        }
        rc = mdb_txn_commit(txn);
        if (rc)
                return ac_fail(l, err, rc, "commit");
        return found ? 1 : 0;
}

static int lmdb_count(struct kiln_action_cache *c, uint64_t *ret, struct kiln_error **err)
{
        struct lmdb_cache *l = (struct lmdb_cache *)c;
        MDB_txn *txn;
        int rc = mdb_txn_begin(l->env, NULL, MDB_RDONLY, &txn);
        if (rc)
                return ac_fail(l, err, rc, "begin");
        MDB_stat st;
        rc = mdb_stat(txn, l->entries, &st);
        mdb_txn_abort(txn);
        if (rc)
                return ac_fail(l, err, rc, "stat");
        *ret = st.ms_entries;
        return 0;
}

static void lmdb_free(struct kiln_action_cache *c)
{
        struct lmdb_cache *l = (struct lmdb_cache *)c;
        if (l->env)
                mdb_env_close(l->env);
        free(l->dir);
        free(l);
}

static const struct kiln_action_cache_ops lmdb_ops = {
        .name = "lmdb",
        .get = lmdb_get,
        .put = lmdb_put,
        .remove = lmdb_remove,
        .count = lmdb_count,
        .free = lmdb_free,
};

int kiln_action_cache_lmdb_new(const char *dir, uint64_t max_entries,
                               struct kiln_action_cache **ret, struct kiln_error **err)
{
        int r = kiln_mkdir_p(dir, 0755);
        if (r < 0)
                return kiln_error_errno(err, -r, "create action cache %s", dir);
        struct lmdb_cache *l = kiln_calloc(1, sizeof(*l));
        l->base.ops = &lmdb_ops;
        l->base.max_entries = max_entries;
        l->dir = kiln_strdup(dir);
        int rc = mdb_env_create(&l->env);
        if (rc == 0)
                rc = mdb_env_set_maxdbs(l->env, 2);
        if (rc == 0)
                rc = mdb_env_set_mapsize(l->env, AC_MAP_SIZE);
        if (rc == 0)
                rc = mdb_env_set_maxreaders(l->env, 1024);
        if (rc == 0)
                rc = mdb_env_open(l->env, dir, MDB_NOTLS, 0644);
        MDB_txn *txn = NULL;
        if (rc == 0)
                rc = mdb_txn_begin(l->env, NULL, 0, &txn);
        if (rc == 0)
                rc = mdb_dbi_open(txn, "entries", MDB_CREATE, &l->entries);
        if (rc == 0)
                rc = mdb_dbi_open(txn, "lru", MDB_CREATE, &l->lru);
        if (rc == 0)
                rc = mdb_txn_commit(txn);
        else if (txn)
                mdb_txn_abort(txn);
        if (rc) {
                kiln_error_set(err, EIO, "cannot open the action cache %s: %s", dir,
                               mdb_strerror(rc));
                lmdb_free(&l->base);
                return -EIO;
        }
        *ret = &l->base;
        return 0;
}
