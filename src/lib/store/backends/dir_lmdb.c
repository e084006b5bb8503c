/* lmdb:///abs/path: kiln's embedded directory store. One LMDB environment
 * directory at the path holds one database, "directories", mapping the
 * 32-byte digest to the canonical encoding of the Directory.
 *
 * Locking: LMDB serialises writers (also across processes) and lets readers
 * run beside them. Every call uses its own short transaction (MDB_NOTLS, so
 * any thread may run any number of them); nothing stays open between calls.
 * LMDB forbids opening one environment twice in a process, so services for
 * the same directory share one environment, found by device and inode (a
 * forked child opens its own: it must not use its parent's). The
 * map size may only change while this process has no transaction open:
 * every transaction holds the environment's resize lock shared, and growing
 * the map (on MDB_MAP_FULL) or adopting another process's growth (on
 * MDB_MAP_RESIZED) takes it exclusively.
 *
 * get re-hashes and decodes the stored value and reports a mismatch as
 * -EBADMSG. put_multiple validates the closure and writes all of
 * it in one transaction on close; until then nothing is written. */
#include <lmdb.h>
#include <pthread.h>
#include <sys/stat.h>

#include "backends.h"

#define LMDB_DB_NAME     "directories"
#define LMDB_MAX_READERS 1024
/* The map is address space, not disk: the data file grows as written.
 * $KILN_LMDB_MAP_SIZE (bytes) overrides the initial size, e.g. to test
 * growth; the map doubles whenever it fills up. */
#define LMDB_MAP_SIZE (sizeof(size_t) >= 8 ? ((size_t)64 << 30) : ((size_t)1 << 30))

static size_t lmdb_map_size(void)
{
        const char *v = getenv("KILN_LMDB_MAP_SIZE");
        if (v && *v) {
                char *end;
                errno = 0;
                unsigned long long n = strtoull(v, &end, 10);
                if (!errno && !*end && n > 0 && n <= SIZE_MAX)
                        return (size_t)n;
        }
        return LMDB_MAP_SIZE;
}

struct lmdb_env {
        dev_t dev;
        ino_t ino;
        pid_t pid; /* a forked child must not use its parent's environment */
        MDB_env *env;
        MDB_dbi dbi;
        pthread_rwlock_t resize_lock;
        unsigned refs; /* under envs_lock */
        struct lmdb_env *next;
};

static pthread_mutex_t envs_lock = PTHREAD_MUTEX_INITIALIZER;
static struct lmdb_env *envs;

struct lmdb_dir_service {
        struct kiln_directory_service base;
        struct lmdb_env *e;
        char *path;
};

static int lmdb_errno(int rc)
{
        switch (rc) {
        case MDB_MAP_FULL:
                return ENOSPC;
        case MDB_READERS_FULL:
                return EAGAIN;
        case MDB_CORRUPTED:
        case MDB_PAGE_NOTFOUND:
        case MDB_INVALID:
        case MDB_VERSION_MISMATCH:
                return EBADMSG;
        default:
                return rc > 0 ? rc : EIO;
        }
}

static int lmdb_fail(struct kiln_error **err, int rc, const char *what, const char *path)
{
        return kiln_error_set(err, lmdb_errno(rc), "lmdb %s: %s: %s", path, what, mdb_strerror(rc));
}

/* --- environments shared within the process --- */

static int mkdir_p(const char *path, mode_t mode, struct kiln_error **err)
{
        _cleanup_free_ char *p = kiln_strdup(path);
        for (char *s = p + 1;; s++) {
                if (*s != '/' && *s != '\0')
                        continue;
                char saved = *s;
                *s = '\0';
                if (mkdir(p, mode) < 0 && errno != EEXIST)
                        return kiln_error_errno(err, errno, "create directory '%s'", p);
                *s = saved;
                if (!saved)
                        break;
        }
        struct stat st;
        if (stat(path, &st) < 0)
                return kiln_error_errno(err, errno, "stat '%s'", path);
        if (!S_ISDIR(st.st_mode))
                return kiln_error_set(err, ENOTDIR, "'%s' is not a directory", path);
        return 0;
}

static void lmdb_env_close(struct lmdb_env *e)
{
        if (e->env)
                mdb_env_close(e->env);
        pthread_rwlock_destroy(&e->resize_lock);
        free(e);
}

static int lmdb_env_open(const char *path, struct lmdb_env **ret, struct kiln_error **err)
{
        struct lmdb_env *e = kiln_calloc(1, sizeof(*e));
        pthread_rwlockattr_t attr;
        pthread_rwlockattr_init(&attr);
        /* A waiting resize must not starve behind a stream of readers. */
        pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
        pthread_rwlock_init(&e->resize_lock, &attr);
        pthread_rwlockattr_destroy(&attr);

        int rc = mdb_env_create(&e->env);
        if (rc) {
                e->env = NULL;
                lmdb_env_close(e);
                return lmdb_fail(err, rc, "create environment", path);
        }
        mdb_env_set_maxdbs(e->env, 4);
        mdb_env_set_maxreaders(e->env, LMDB_MAX_READERS);
        mdb_env_set_mapsize(e->env, lmdb_map_size());
        rc = mdb_env_open(e->env, path, MDB_NOTLS, 0644);
        if (rc) {
                lmdb_env_close(e);
                return lmdb_fail(err, rc, "open environment", path);
        }
        MDB_txn *txn;
        rc = mdb_txn_begin(e->env, NULL, 0, &txn);
        if (rc == 0) {
                rc = mdb_dbi_open(txn, LMDB_DB_NAME, MDB_CREATE, &e->dbi);
                if (rc == 0)
                        rc = mdb_txn_commit(txn);
                else
                        mdb_txn_abort(txn);
        }
        if (rc) {
                lmdb_env_close(e);
                return lmdb_fail(err, rc, "open database " LMDB_DB_NAME, path);
        }
        *ret = e;
        return 0;
}

static int lmdb_env_get(const char *path, struct lmdb_env **ret, struct kiln_error **err)
{
        int r = mkdir_p(path, 0755, err);
        if (r < 0)
                return r;
        struct stat st;
        if (stat(path, &st) < 0)
                return kiln_error_errno(err, errno, "stat '%s'", path);

        pthread_mutex_lock(&envs_lock);
        struct lmdb_env *e;
        for (e = envs; e; e = e->next)
                if (e->dev == st.st_dev && e->ino == st.st_ino && e->pid == getpid())
                        break;
        if (e) {
                e->refs++;
        } else {
                r = lmdb_env_open(path, &e, err);
                if (r == 0) {
                        e->dev = st.st_dev;
                        e->ino = st.st_ino;
                        e->pid = getpid();
                        e->refs = 1;
                        e->next = envs;
                        envs = e;
                }
        }
        pthread_mutex_unlock(&envs_lock);
        if (r < 0)
                return r;
        *ret = e;
        return 0;
}

static void lmdb_env_put(struct lmdb_env *e)
{
        pthread_mutex_lock(&envs_lock);
        if (--e->refs == 0) {
                for (struct lmdb_env **p = &envs; *p; p = &(*p)->next)
                        if (*p == e) {
                                *p = e->next;
                                break;
                        }
                lmdb_env_close(e);
        }
        pthread_mutex_unlock(&envs_lock);
}

/* --- transactions --- */

/* Adopts a map grown by another process (full_at == 0), or doubles ours,
 * which was full at size full_at, unless another thread grew it meanwhile.
 * Takes the resize lock exclusively: no transaction of this process is
 * open during the change. */
static int lmdb_resize(struct lmdb_dir_service *l, size_t full_at, struct kiln_error **err)
{
        MDB_envinfo info;
        pthread_rwlock_wrlock(&l->e->resize_lock);
        size_t size = 0;
        if (full_at) {
                mdb_env_info(l->e->env, &info);
                if (info.me_mapsize > full_at) {
                        pthread_rwlock_unlock(&l->e->resize_lock);
                        return 0;
                }
                if (__builtin_mul_overflow(info.me_mapsize, 2, &size)) {
                        pthread_rwlock_unlock(&l->e->resize_lock);
                        return lmdb_fail(err, MDB_MAP_FULL, "grow map", l->path);
                }
        }
        int rc = mdb_env_set_mapsize(l->e->env, size);
        pthread_rwlock_unlock(&l->e->resize_lock);
        if (rc)
                return lmdb_fail(err, rc, "resize map", l->path);
        return 0;
}

/* Begins a transaction holding the resize lock shared; lmdb_txn_abort()
 * and lmdb_txn_commit() release both. */
static int lmdb_txn_begin(struct lmdb_dir_service *l, unsigned flags, MDB_txn **ret,
                          struct kiln_error **err)
{
        for (;;) {
                pthread_rwlock_rdlock(&l->e->resize_lock);
                int rc = mdb_txn_begin(l->e->env, NULL, flags, ret);
                if (rc == 0)
                        return 0;
                pthread_rwlock_unlock(&l->e->resize_lock);
                if (rc != MDB_MAP_RESIZED)
                        return lmdb_fail(err, rc, "begin transaction", l->path);
                int r = lmdb_resize(l, 0, err);
                if (r < 0)
                        return r;
        }
}

static void lmdb_txn_abort(struct lmdb_dir_service *l, MDB_txn *txn)
{
        mdb_txn_abort(txn);
        pthread_rwlock_unlock(&l->e->resize_lock);
}

static int lmdb_txn_commit(struct lmdb_dir_service *l, MDB_txn *txn)
{
        int rc = mdb_txn_commit(txn);
        pthread_rwlock_unlock(&l->e->resize_lock);
        return rc;
}

/* --- operations --- */

static int lmdb_dir_get(struct kiln_directory_service *s, const struct kiln_digest *d,
                        struct kiln_directory *ret, struct kiln_error **err)
{
        struct lmdb_dir_service *l = (struct lmdb_dir_service *)s;
        MDB_txn *txn;
        int r = lmdb_txn_begin(l, MDB_RDONLY, &txn, err);
        if (r < 0)
                return r;
        MDB_val key = {KILN_DIGEST_LEN, (void *)d->b}, val;
        int rc = mdb_get(txn, l->e->dbi, &key, &val);
        if (rc == MDB_NOTFOUND) {
                lmdb_txn_abort(l, txn);
                return 0;
        }
        if (rc) {
                lmdb_txn_abort(l, txn);
                return lmdb_fail(err, rc, "read", l->path);
        }
        /* The value points into the map: check and decode it before the
         * transaction ends. */
        struct kiln_digest got;
        kiln_digest_of(val.mv_data, val.mv_size, &got);
        if (!kiln_digest_eq(&got, d)) {
                lmdb_txn_abort(l, txn);
                return kiln_error_set(err, EBADMSG, "directory %s: stored data has digest %s",
                                      KILN_DIGEST_B64(d), KILN_DIGEST_B64(&got));
        }
        _cleanup_(kiln_error_freep) struct kiln_error *e = NULL;
        r = kiln_directory_decode(val.mv_data, val.mv_size, ret, &e);
        lmdb_txn_abort(l, txn);
        if (r < 0)
                return kiln_error_set(err, EBADMSG, "directory %s: stored data is invalid: %s",
                                      KILN_DIGEST_B64(d), kiln_error_msg(e));
        return 1;
}

/* Stores one encoded Directory inside txn. A differing value already under
 * the key (damaged data) is replaced. */
static int lmdb_put_in(struct lmdb_dir_service *l, MDB_txn *txn, const struct kiln_digest *d,
                       const struct kiln_buf *bytes)
{
        MDB_val key = {KILN_DIGEST_LEN, (void *)d->b};
        static uint8_t empty;
        void *data = bytes->len ? bytes->data : &empty; /* the empty Directory */
        MDB_val val = {bytes->len, data};
        int rc = mdb_put(txn, l->e->dbi, &key, &val, MDB_NOOVERWRITE);
        if (rc != MDB_KEYEXIST)
                return rc;
        /* val now holds the stored value */
        if (val.mv_size == bytes->len &&
            (bytes->len == 0 || !memcmp(val.mv_data, data, bytes->len)))
                return 0;
        val = (MDB_val){bytes->len, data};
        return mdb_put(txn, l->e->dbi, &key, &val, 0);
}

/* Writes the Directories in one transaction, growing the map when full. */
/* Which of the digests are not stored intact yet (a damaged value counts as
 * missing, so a put repairs it). A write transaction costs an fsync; an
 * import of things already stored needs none. */
static int lmdb_missing(struct lmdb_dir_service *l, const struct kiln_digest *digests, size_t n,
                        bool *missing, size_t *ret_count, struct kiln_error **err)
{
        MDB_txn *txn;
        int r = lmdb_txn_begin(l, MDB_RDONLY, &txn, err);
        if (r < 0)
                return r;
        size_t count = 0;
        for (size_t i = 0; i < n; i++) {
                MDB_val key = {KILN_DIGEST_LEN, (void *)digests[i].b}, val;
                int rc = mdb_get(txn, l->e->dbi, &key, &val);
                if (rc && rc != MDB_NOTFOUND) {
                        lmdb_txn_abort(l, txn);
                        return lmdb_fail(err, rc, "read", l->path);
                }
                struct kiln_digest got;
                if (rc == 0)
                        kiln_digest_of(val.mv_data, val.mv_size, &got);
                missing[i] = rc == MDB_NOTFOUND || !kiln_digest_eq(&got, &digests[i]);
                count += missing[i];
        }
        lmdb_txn_abort(l, txn);
        *ret_count = count;
        return 0;
}

static int lmdb_write(struct lmdb_dir_service *l, const struct kiln_directory *const *dirs,
                      const struct kiln_digest *digests, size_t n, struct kiln_error **err)
{
        _cleanup_free_ bool *missing = kiln_calloc(n, sizeof(bool));
        size_t count = 0;
        int r = lmdb_missing(l, digests, n, missing, &count, err);
        if (r < 0 || count == 0)
                return r;
        struct kiln_buf b = KILN_BUF_INIT;
        for (;;) {
                MDB_txn *txn;
                r = lmdb_txn_begin(l, 0, &txn, err);
                if (r < 0)
                        break;
                MDB_envinfo info;
                mdb_env_info(l->e->env, &info); /* stable while the txn is open */
                size_t map_size = info.me_mapsize;
                int rc = 0;
                for (size_t i = 0; i < n && rc == 0; i++) {
                        if (!missing[i])
                                continue;
                        kiln_buf_clear(&b);
                        kiln_directory_encode(dirs[i], &b);
                        rc = lmdb_put_in(l, txn, &digests[i], &b);
                }
                if (rc == 0) {
                        rc = lmdb_txn_commit(l, txn);
                } else {
                        lmdb_txn_abort(l, txn);
                }
                if (rc == MDB_MAP_FULL) {
                        r = lmdb_resize(l, map_size, err);
                        if (r < 0)
                                break;
                        continue;
                }
                r = rc ? lmdb_fail(err, rc, "write", l->path) : 0;
                break;
        }
        kiln_buf_done(&b);
        return r;
}

static int lmdb_dir_put(struct kiln_directory_service *s, const struct kiln_directory *dir,
                        struct kiln_digest *ret_digest, struct kiln_error **err)
{
        struct lmdb_dir_service *l = (struct lmdb_dir_service *)s;
        struct kiln_digest d;
        kiln_directory_digest(dir, NULL, &d);
        int r = lmdb_write(l, &dir, &d, 1, err);
        if (r < 0)
                return r;
        *ret_digest = d;
        return 0;
}

static int lmdb_dir_put_closure(struct kiln_directory_service *s,
                                const struct kiln_directory **dirs,
                                const struct kiln_digest *digests, size_t n,
                                struct kiln_error **err)
{
        return lmdb_write((struct lmdb_dir_service *)s, dirs, digests, n, err);
}

static void lmdb_dir_free(struct kiln_directory_service *s)
{
        struct lmdb_dir_service *l = (struct lmdb_dir_service *)s;
        if (l->e)
                lmdb_env_put(l->e);
        free(l->path);
        free(l);
}

static const struct kiln_directory_service_ops lmdb_dir_ops = {
    .name = "lmdb",
    .get = lmdb_dir_get,
    .put = lmdb_dir_put,
    .put_closure = lmdb_dir_put_closure,
    .put_closure_order = KILN_CLOSURE_LEAVES_TO_ROOT,
    .free = lmdb_dir_free,
};

#define LMDB_URL_HINT                                                                              \
        "lmdb:// needs an absolute directory path, e.g. lmdb:///var/lib/kiln/directories"

int kiln_directory_lmdb_new(const struct kiln_url *u, struct kiln_directory_service **ret,
                            struct kiln_error **err)
{
        if (u->host || u->port)
                return kiln_error_set(err, EINVAL, "invalid URL: lmdb:// takes no host; %s",
                                      LMDB_URL_HINT);
        if (u->path[0] != '/')
                return kiln_error_set(err, EINVAL, "invalid URL: %s", LMDB_URL_HINT);
        if (u->path[strspn(u->path, "/")] == '\0')
                return kiln_error_set(
                    err, EINVAL, "invalid URL: lmdb:// refuses to use '/' as its directory; %s",
                    LMDB_URL_HINT);
        static const char *const allowed[] = {NULL};
        int r = kiln_url_query_check(u, allowed, "lmdb://", err);
        if (r < 0)
                return r;

        struct lmdb_dir_service *l = kiln_calloc(1, sizeof(*l));
        l->base.ops = &lmdb_dir_ops;
        l->path = kiln_strdup(u->path);
        r = lmdb_env_get(l->path, &l->e, err);
        if (r < 0) {
                lmdb_dir_free(&l->base);
                return r;
        }
        *ret = &l->base;
        return 0;
}
