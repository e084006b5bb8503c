/* Importing a filesystem tree.
 *
 * The calling thread walks the tree depth-first with directory fds (never
 * following symlinks) and opens each regular file; worker threads read the
 * open files into reused buffers, stream them into blob writers (which hash)
 * and through the reference scanner. Directories are finished in walk
 * post-order by the walking thread once their files are done, so they reach
 * the directory putter strictly leaves to root. The job queue is bounded, so
 * memory and open descriptors stay bounded whatever the tree. */
#include <dirent.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <sys/stat.h>

#include <kiln/blake3/blake3.h>
#include <kiln/ingest/import.h>
#include <kiln/ingest/refscan.h>

/* Fits the L2 cache: data is hashed right after the kernel copies it in. */
#define READ_BUF_SIZE   (128 * 1024)
/* A lone file this big is hashed on all CPUs: nothing else runs until its
 * digest is known (the store is asked for it before any byte is sent). */
#define PARALLEL_HASH_MIN (8u << 20)
#define QUEUE_CAPACITY  128

struct pdir;

struct file_job {
        struct file_job *next;      /* queue link, then the owning directory's done list */
        struct pdir *dir;           /* NULL when the root itself is a file (no queue) */
        size_t slot;                /* index of the node in dir->dir.nodes */
        int fd;
        uint64_t size;              /* from fstat at open */
        char *path;                 /* for messages */
        struct kiln_digest digest;  /* result */
};

struct pdir {
        struct pdir *parent;
        size_t slot; /* our placeholder in parent->dir.nodes */
        struct kiln_directory dir;
        char *path;
        unsigned pending; /* file jobs not finished, under imp->lock */
        struct file_job *jobs; /* finished jobs to apply */
        struct pdir *next_final;
};

struct frame {
        DIR *d;
        struct pdir *pd;
};

struct importer {
        const struct kiln_import_options *o;
        pthread_mutex_t lock;
        pthread_cond_t work; /* workers: a job is queued, or closing */
        pthread_cond_t main; /* the walking thread: queue space, a job done */
        struct file_job *qhead, *qtail;
        size_t qlen;
        bool closing;
        bool cancelled; /* the walk failed: skip queued jobs */
        struct kiln_error *error; /* first failure, under lock */
        pthread_t *workers;
        unsigned n_workers;
        unsigned hash_threads; /* hashing a lone file; 0 in a tree (its workers fill the CPUs) */

        struct pdir *final_head, *final_tail; /* walk post-order */
        struct kiln_directory_putter *putter;
        struct kiln_buf scratch;
        bool have_root;
        struct kiln_node root;
        struct kiln_digest last_dir;
        dev_t root_dev; /* with o->untrusted: the filesystem of the tree */
};

/* Records the first error (takes ownership of *e). */
static void record_error(struct importer *imp, struct kiln_error **e)
{
        pthread_mutex_lock(&imp->lock);
        if (!imp->error) {
                imp->error = *e;
                *e = NULL;
        }
        pthread_cond_broadcast(&imp->work);
        pthread_cond_signal(&imp->main);
        pthread_mutex_unlock(&imp->lock);
        kiln_error_clear(e);
}

static void job_free(struct file_job *j)
{
        if (j->fd >= 0)
                close(j->fd);
        free(j->path);
        free(j);
}

/* Reads the whole file from offset 0 through `each`; returns the byte count
 * or < 0. */
static int64_t read_all(struct file_job *j, uint8_t *buf, size_t *ret_reads,
                        int (*each)(void *ctx, const uint8_t *p, size_t n, struct kiln_error **err),
                        void *ctx, struct kiln_error **err)
{
        uint64_t total = 0;
        size_t reads = 0;
        for (;;) {
                ssize_t n = read(j->fd, buf, READ_BUF_SIZE);
                if (n < 0) {
                        if (errno == EINTR)
                                continue;
                        return kiln_error_errno(err, errno, "unable to read %s", j->path);
                }
                if (n == 0)
                        break;
                reads++;
                total += (uint64_t)n;
                int r = each(ctx, buf, (size_t)n, err);
                if (r < 0)
                        return r;
        }
        if (ret_reads)
                *ret_reads = reads;
        return (int64_t)total;
}

struct hash_pass {
        struct kiln_blake3 h;
        struct kiln_refscan_stream *scan;
};

static int hash_each(void *ctx, const uint8_t *p, size_t n, struct kiln_error **err)
{
        (void)err;
        struct hash_pass *hp = ctx;
        kiln_blake3_update(&hp->h, p, n);
        if (hp->scan)
                kiln_refscan_stream_feed(hp->scan, p, n);
        return 0;
}

static int write_each(void *ctx, const uint8_t *p, size_t n, struct kiln_error **err)
{
        return kiln_blob_writer_write(ctx, p, n, err);
}

static int changed(const struct file_job *j, struct kiln_error **err)
{
        return kiln_error_set(err, EAGAIN, "%s changed while being imported", j->path);
}

/* Hashes (and scans) the file as b3sum would and asks the store for the
 * blob; only a blob the store lacks is read again into a writer. Importing a
 * tree again, the common case, then costs one hashing pass, and a file that
 * fits the buffer is read once either way. */
static int upload_file(struct importer *imp, struct file_job *j, uint8_t *buf,
                       struct kiln_refscan_stream *scan, struct kiln_error **err)
{
        const struct kiln_import_options *o = imp->o;
        struct hash_pass hp = {.scan = scan};
        kiln_blake3_init(&hp.h);
        if (scan)
                kiln_refscan_stream_begin(scan, o->found);
        size_t reads = 0;
        int64_t total;
        if (!scan && imp->hash_threads > 1 && j->size >= PARALLEL_HASH_MIN &&
            j->size <= SIZE_MAX) {
                int r = kiln_blake3_parallel_fd(j->fd, (size_t)j->size, imp->hash_threads,
                                                j->digest.b);
                if (r == -EIO)
                        return changed(j, err);
                if (r < 0)
                        return kiln_error_errno(err, -r, "unable to read %s", j->path);
                total = (int64_t)j->size;
                reads = 2; /* not in the buffer: read again below */
        } else {
                total = read_all(j, buf, &reads, hash_each, &hp, err);
                if (scan)
                        kiln_refscan_stream_end(scan);
                if (total < 0)
                        return (int)total;
                if ((uint64_t)total != j->size)
                        return changed(j, err);
                kiln_blake3_final(&hp.h, j->digest.b);
        }

        int r = kiln_blob_has(o->blobs, &j->digest, err);
        if (r < 0)
                return kiln_error_prefix(err, r, "unable to upload %s", j->path);
        if (r > 0)
                return 0;

        _cleanup_(kiln_blob_writer_freep) struct kiln_blob_writer *w = NULL;
        r = kiln_blob_open_write(o->blobs, &w, err);
        if (r < 0)
                return kiln_error_prefix(err, r, "unable to upload %s", j->path);
        if (reads <= 1) {
                /* the whole file is still in the buffer */
                r = kiln_blob_writer_write(w, buf, (size_t)total, err);
        } else if (lseek(j->fd, 0, SEEK_SET) < 0) {
                r = kiln_error_errno(err, errno, "unable to read %s", j->path);
        } else {
                int64_t again = read_all(j, buf, NULL, write_each, w, err);
                r = again < 0 ? (int)again : again != total ? changed(j, err) : 0;
        }
        if (r < 0)
                return kiln_error_prefix(err, r, "unable to upload %s", j->path);
        struct kiln_digest d;
        r = kiln_blob_writer_close(w, &d, err);
        if (r < 0)
                return kiln_error_prefix(err, r, "unable to finalize blob %s", j->path);
        if (!kiln_digest_eq(&d, &j->digest))
                return changed(j, err);
        return 0;
}

static void *worker_main(void *arg)
{
        struct importer *imp = arg;
        uint8_t *buf = kiln_malloc(READ_BUF_SIZE);
        struct kiln_refscan_stream *scan =
                imp->o->needles ? kiln_refscan_stream_new(imp->o->needles) : NULL;
        for (;;) {
                pthread_mutex_lock(&imp->lock);
                while (!imp->qhead && !imp->closing)
                        pthread_cond_wait(&imp->work, &imp->lock);
                struct file_job *j = imp->qhead;
                if (!j) {
                        pthread_mutex_unlock(&imp->lock);
                        break;
                }
                imp->qhead = j->next;
                if (!imp->qhead)
                        imp->qtail = NULL;
                imp->qlen--;
                bool skip = imp->error != NULL || imp->cancelled;
                pthread_cond_signal(&imp->main);
                pthread_mutex_unlock(&imp->lock);

                struct kiln_error *e = NULL;
                if (!skip && upload_file(imp, j, buf, scan, &e) < 0)
                        record_error(imp, &e);
                close(j->fd);
                j->fd = -1;

                pthread_mutex_lock(&imp->lock);
                j->next = j->dir->jobs;
                j->dir->jobs = j;
                j->dir->pending--;
                pthread_cond_signal(&imp->main);
                pthread_mutex_unlock(&imp->lock);
        }
        kiln_refscan_stream_free(scan);
        free(buf);
        return NULL;
}

static void pdir_free(struct pdir *pd)
{
        if (!pd)
                return;
        kiln_directory_done(&pd->dir);
        while (pd->jobs) {
                struct file_job *j = pd->jobs;
                pd->jobs = j->next;
                job_free(j);
        }
        free(pd->path);
        free(pd);
}

/* Finishes one directory: fill in file results, seal, upload, hand the node
 * to the parent (or keep it as the root). Walking thread only. */
static int finish_dir(struct importer *imp, struct pdir *pd, struct kiln_error **err)
{
        for (struct file_job *j = pd->jobs; j; j = j->next) {
                struct kiln_node *n = &pd->dir.nodes[j->slot];
                n->digest = j->digest;
                n->size = j->size;
        }
        int r = kiln_directory_seal(&pd->dir, err);
        if (r < 0)
                return kiln_error_prefix(err, r, "%s", pd->path);
        struct kiln_digest d;
        kiln_directory_digest(&pd->dir, &imp->scratch, &d);
        if (!imp->putter) {
                r = kiln_directory_put_multiple_start(imp->o->dirs, &imp->putter, err);
                if (r < 0)
                        return kiln_error_prefix(err, r, "failed to start directory upload");
        }
        r = kiln_directory_putter_put(imp->putter, &pd->dir, err);
        if (r < 0)
                return kiln_error_prefix(err, r, "failed to upload directory at %s", pd->path);
        imp->last_dir = d;

        struct kiln_node n;
        kiln_directory_to_node(&pd->dir, &d, NULL, 0, &n);
        if (pd->parent) {
                struct kiln_node *slot = &pd->parent->dir.nodes[pd->slot];
                slot->digest = n.digest;
                slot->size = n.size;
                kiln_node_done(&n);
        } else {
                imp->root = n;
                imp->have_root = true;
        }
        return 0;
}

/* Finishes the directories at the head of the post-order queue whose files
 * are all done. With `wait`, blocks until the whole queue is finished. */
static int drain_finished(struct importer *imp, bool wait, struct kiln_error **err)
{
        for (;;) {
                pthread_mutex_lock(&imp->lock);
                struct pdir *pd = imp->final_head;
                while (pd && pd->pending > 0 && wait && !imp->error)
                        pthread_cond_wait(&imp->main, &imp->lock);
                bool ready = pd && pd->pending == 0 && !imp->error;
                if (ready) {
                        imp->final_head = pd->next_final;
                        if (!imp->final_head)
                                imp->final_tail = NULL;
                }
                pthread_mutex_unlock(&imp->lock);
                if (!ready)
                        return 0;
                int r = finish_dir(imp, pd, err);
                pdir_free(pd);
                if (r < 0)
                        return r;
        }
}

static int importer_start(struct importer *imp, struct kiln_error **err)
{
        unsigned n = imp->o->threads;
        if (n == 0) {
                long c = sysconf(_SC_NPROCESSORS_ONLN);
                n = c > 0 ? (unsigned)c : 2;
        }
        imp->workers = kiln_calloc(n, sizeof(pthread_t));
        int e = 0;
        for (unsigned i = 0; i < n; i++) {
                e = pthread_create(&imp->workers[i], NULL, worker_main, imp);
                if (e != 0)
                        break;
                imp->n_workers++;
        }
        if (imp->n_workers == 0)
                return kiln_error_errno(err, e, "cannot start import threads");
        return 0;
}

static int submit(struct importer *imp, struct file_job *j, struct kiln_error **err)
{
        /* Workers start with the first file: a tree of directories and
         * symlinks only (a build's empty output) needs none. */
        if (!imp->workers) {
                int r = importer_start(imp, err);
                if (r < 0) {
                        job_free(j);
                        return r;
                }
        }
        pthread_mutex_lock(&imp->lock);
        /* While the queue is full, finish what can be finished meanwhile. */
        while (imp->qlen >= QUEUE_CAPACITY && !imp->error) {
                pthread_mutex_unlock(&imp->lock);
                int r = drain_finished(imp, false, err);
                if (r < 0) {
                        job_free(j);
                        return r;
                }
                pthread_mutex_lock(&imp->lock);
                if (imp->qlen >= QUEUE_CAPACITY && !imp->error)
                        pthread_cond_wait(&imp->main, &imp->lock);
        }
        if (imp->error) {
                pthread_mutex_unlock(&imp->lock);
                job_free(j);
                return -ECANCELED;
        }
        if (j->dir)
                j->dir->pending++;
        j->next = NULL;
        if (imp->qtail)
                imp->qtail->next = j;
        else
                imp->qhead = j;
        imp->qtail = j;
        imp->qlen++;
        pthread_cond_signal(&imp->work);
        pthread_mutex_unlock(&imp->lock);
        return 0;
}

static char *join_path(const char *a, const char *b)
{
        return kiln_asprintf("%s/%s", a, b);
}

/* What an untrusted tree may not hold (see kiln_import_options.untrusted). */
static int check_untrusted(const struct kiln_import_options *o, const struct stat *st,
                           dev_t root_dev, const char *path, struct kiln_error **err)
{
        if (!o->untrusted)
                return 0;
        if ((S_ISREG(st->st_mode) || S_ISDIR(st->st_mode)) && (st->st_mode & (S_ISUID | S_ISGID)))
                return kiln_error_set(err, EPERM, "%s has the %s bit, which outputs may not have",
                                      path, st->st_mode & S_ISUID ? "setuid" : "setgid");
        if (st->st_dev != root_dev)
                return kiln_error_set(err, EPERM,
                                      "%s is on another filesystem than the output (a mount or "
                                      "a link from outside)",
                                      path);
        return 0;
}

static const char *type_name(mode_t m)
{
        switch (m & S_IFMT) {
        case S_IFIFO:
                return "fifo";
        case S_IFSOCK:
                return "socket";
        case S_IFCHR:
                return "character device";
        case S_IFBLK:
                return "block device";
        }
        return "unknown";
}

/* Opens a regular file for upload; the caller checked lstat said "regular". */
static int open_file(int dirfd, const char *name, const char *path, struct file_job **ret,
                     struct kiln_error **err)
{
        int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NOCTTY | O_NONBLOCK);
        if (fd < 0)
                return kiln_error_errno(err, errno, "unable to open %s", path);
        struct stat st;
        if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
                close(fd);
                return kiln_error_set(err, EAGAIN, "%s changed while being imported", path);
        }
        (void)posix_fadvise(fd, 0, 0, POSIX_FADV_SEQUENTIAL);
        struct file_job *j = kiln_calloc(1, sizeof(*j));
        j->fd = fd;
        j->size = (uint64_t)st.st_size;
        j->path = kiln_strdup(path);
        *ret = j;
        return 0;
}

static int read_symlink(int dirfd, const char *name, const char *path, struct kiln_node *n,
                        struct kiln_error **err)
{
        char target[4097];
        ssize_t len = readlinkat(dirfd, name, target, sizeof(target));
        if (len < 0)
                return kiln_error_errno(err, errno, "unable to read symlink %s", path);
        int r = kiln_symlink_target_validate(target, (size_t)len, err);
        if (r < 0)
                return kiln_error_prefix(err, r, "%s", path);
        n->kind = KILN_NODE_SYMLINK;
        n->target.data = kiln_memdup(target, (size_t)len);
        n->target.len = (size_t)len;
        return 0;
}

static void scan_bytes(struct importer *imp, const void *p, size_t n)
{
        if (imp->o->needles)
                kiln_refscan_scan(imp->o->needles, p, n, imp->o->found);
}

/* Adds an entry of the directory being read to its pdir; descends into
 * directories by pushing a frame. */
static int walk_entry(struct importer *imp, struct frame *top, const char *name,
                      struct frame *push, struct kiln_error **err)
{
        int dfd = dirfd(top->d);
        _cleanup_free_ char *path = join_path(top->pd->path, name);
        struct stat st;
        if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return kiln_error_errno(err, errno, "unable to stat %s", path);
        int r = check_untrusted(imp->o, &st, imp->root_dev, path, err);
        if (r < 0)
                return r;

        if (imp->o->scan_names)
                scan_bytes(imp, name, strlen(name));
        struct kiln_node n = {0};
        kiln_node_set_name(&n, name, strlen(name));
        size_t slot = top->pd->dir.n;

        if (S_ISDIR(st.st_mode)) {
                int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
                DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
                if (!d) {
                        int e = errno;
                        if (fd >= 0)
                                close(fd);
                        kiln_node_done(&n);
                        return kiln_error_errno(err, e, "unable to open directory %s", path);
                }
                n.kind = KILN_NODE_DIRECTORY;
                kiln_directory_add(&top->pd->dir, &n);
                struct pdir *pd = kiln_calloc(1, sizeof(*pd));
                pd->parent = top->pd;
                pd->slot = slot;
                pd->path = TAKE_PTR(path);
                *push = (struct frame){.d = d, .pd = pd};
                return 1;
        }
        if (S_ISREG(st.st_mode)) {
                struct file_job *j;
                r = open_file(dfd, name, path, &j, err);
                if (r < 0) {
                        kiln_node_done(&n);
                        return r;
                }
                n.kind = KILN_NODE_FILE;
                n.executable = (st.st_mode & S_IXUSR) != 0;
                kiln_directory_add(&top->pd->dir, &n);
                j->dir = top->pd;
                j->slot = slot;
                return submit(imp, j, err);
        }
        if (S_ISLNK(st.st_mode)) {
                r = read_symlink(dfd, name, path, &n, err);
                if (r < 0) {
                        kiln_node_done(&n);
                        return r;
                }
                scan_bytes(imp, n.target.data, n.target.len);
                kiln_directory_add(&top->pd->dir, &n);
                return 0;
        }
        kiln_node_done(&n);
        return kiln_error_set(err, EINVAL, "unsupported file type at %s: %s", path,
                              type_name(st.st_mode));
}

static void enqueue_final(struct importer *imp, struct pdir *pd)
{
        pthread_mutex_lock(&imp->lock);
        pd->next_final = NULL;
        if (imp->final_tail)
                imp->final_tail->next_final = pd;
        else
                imp->final_head = pd;
        imp->final_tail = pd;
        pthread_mutex_unlock(&imp->lock);
}

static int walk_tree(struct importer *imp, DIR *root_dir, const char *path,
                     struct kiln_error **err)
{
        size_t depth = 0, cap = 16;
        struct frame *stack = kiln_malloc(cap * sizeof(*stack));
        struct pdir *root = kiln_calloc(1, sizeof(*root));
        root->path = kiln_strdup(path);
        stack[depth++] = (struct frame){.d = root_dir, .pd = root};
        int r = 0;

        while (depth > 0 && r >= 0) {
                struct frame *top = &stack[depth - 1];
                errno = 0;
                struct dirent *de = readdir(top->d);
                if (!de) {
                        if (errno) {
                                r = kiln_error_errno(err, errno, "unable to read directory %s",
                                                     top->pd->path);
                                break;
                        }
                        closedir(top->d);
                        enqueue_final(imp, top->pd);
                        depth--;
                        r = drain_finished(imp, false, err);
                        continue;
                }
                if (!strcmp(de->d_name, ".") || !strcmp(de->d_name, ".."))
                        continue;
                struct frame child;
                r = walk_entry(imp, top, de->d_name, &child, err);
                if (r == 1) {
                        if (depth == cap) {
                                cap *= 2;
                                stack = kiln_reallocarray(stack, cap, sizeof(*stack));
                        }
                        stack[depth++] = child;
                        r = 0;
                }
        }
        /* On failure, close what is still open; the caller frees the pdirs
         * once the workers have stopped. */
        while (depth > 0) {
                depth--;
                closedir(stack[depth].d);
                enqueue_final(imp, stack[depth].pd);
        }
        free(stack);
        return r;
}

static void importer_stop(struct importer *imp)
{
        pthread_mutex_lock(&imp->lock);
        imp->closing = true;
        pthread_cond_broadcast(&imp->work);
        pthread_mutex_unlock(&imp->lock);
        for (unsigned i = 0; i < imp->n_workers; i++)
                pthread_join(imp->workers[i], NULL);
        free(imp->workers);
        imp->workers = NULL;
        imp->n_workers = 0;
}

/* A lone file: uploaded on this thread. */
static int import_file(struct importer *imp, int dirfd, const char *path, const struct stat *st,
                       struct kiln_node *ret, struct kiln_error **err)
{
        const struct kiln_import_options *o = imp->o;
        struct file_job *j;
        int r = open_file(dirfd, path, path, &j, err);
        if (r < 0)
                return r;
        uint8_t *buf = kiln_malloc(READ_BUF_SIZE);
        struct kiln_refscan_stream *scan = o->needles ? kiln_refscan_stream_new(o->needles) : NULL;
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        imp->hash_threads = o->threads ? o->threads : cpus > 0 ? (unsigned)cpus : 1;
        r = upload_file(imp, j, buf, scan, err);
        kiln_refscan_stream_free(scan);
        free(buf);
        if (r == 0)
                r = kiln_blob_sync(o->blobs, err);
        if (r == 0)
                *ret = (struct kiln_node){.kind = KILN_NODE_FILE, .digest = j->digest,
                                          .size = j->size,
                                          .executable = (st->st_mode & S_IXUSR) != 0};
        job_free(j);
        return r;
}

/* A tree: walked on this thread, files uploaded by the workers, the
 * Directories put leaves first; made durable in that order on success. */
static int import_tree(struct importer *imp, int dirfd, const char *path, struct kiln_node *ret,
                       struct kiln_error **err)
{
        int fd = openat(dirfd, path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
        if (!d) {
                int e = errno;
                if (fd >= 0)
                        close(fd);
                return kiln_error_errno(err, e, "unable to open directory %s", path);
        }
        int r = walk_tree(imp, d, path, err);
        if (r >= 0)
                r = drain_finished(imp, true, err);
        if (r < 0) {
                pthread_mutex_lock(&imp->lock);
                imp->cancelled = true;
                pthread_mutex_unlock(&imp->lock);
        }
        importer_stop(imp);
        if (imp->error) {
                /* A worker's failure is the real cause; report it. */
                r = -imp->error->code;
                if (err) {
                        kiln_error_free(*err);
                        *err = TAKE_PTR(imp->error);
                }
        }
        /* The Directories refer to the blobs: make those durable first. */
        if (r >= 0) {
                r = kiln_blob_sync(imp->o->blobs, err);
                if (r < 0)
                        r = kiln_error_prefix(err, r, "failed to sync the blob store");
        }
        if (r >= 0) {
                r = kiln_directory_putter_close(imp->putter, NULL, err);
                if (r < 0)
                        r = kiln_error_prefix(err, r, "failed to finalize directory upload");
        }
        if (r >= 0) {
                *ret = imp->root;
                imp->have_root = false;
        }
        /* Anything left in the post-order queue belongs to a failed import. */
        while (imp->final_head) {
                struct pdir *p = imp->final_head;
                imp->final_head = p->next_final;
                pdir_free(p);
        }
        return r;
}

int kiln_import_path(const struct kiln_import_options *o, int dirfd, const char *path,
                     struct kiln_node *ret, struct kiln_error **err)
{
        struct stat st;
        if (fstatat(dirfd, path, &st, AT_SYMLINK_NOFOLLOW) < 0)
                return kiln_error_errno(err, errno, "unable to stat %s", path);

        if (S_ISLNK(st.st_mode)) {
                struct kiln_node n = {0};
                int r = read_symlink(dirfd, path, path, &n, err);
                if (r < 0)
                        return r;
                if (o->needles)
                        kiln_refscan_scan(o->needles, n.target.data, n.target.len, o->found);
                *ret = n;
                return 0;
        }
        if (!S_ISREG(st.st_mode) && !S_ISDIR(st.st_mode))
                return kiln_error_set(err, EINVAL, "unsupported file type at %s: %s", path,
                                      type_name(st.st_mode));
        int r = check_untrusted(o, &st, st.st_dev, path, err);
        if (r < 0)
                return r;

        struct importer imp = {.o = o, .root_dev = st.st_dev};
        pthread_mutex_init(&imp.lock, NULL);
        pthread_cond_init(&imp.work, NULL);
        pthread_cond_init(&imp.main, NULL);
        r = S_ISREG(st.st_mode) ? import_file(&imp, dirfd, path, &st, ret, err)
                                : import_tree(&imp, dirfd, path, ret, err);
        if (imp.have_root)
                kiln_node_done(&imp.root);
        kiln_directory_putter_free(imp.putter);
        kiln_buf_done(&imp.scratch);
        kiln_error_free(imp.error);
        pthread_mutex_destroy(&imp.lock);
        pthread_cond_destroy(&imp.work);
        pthread_cond_destroy(&imp.main);
        return r < 0 ? r : 0;
}
