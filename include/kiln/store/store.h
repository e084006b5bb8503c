/* Blob and directory services: the content-addressed store, chosen by URL.
 *
 * Every operation may be called from many threads at once on the same
 * service; readers, writers, streams and putters are used by one thread at a
 * time. Return values follow error.h: 1 = found, 0 = absent, < 0 = failure.
 * Every byte a reader returns has been verified against its digest (a store
 * that cannot verify before returning, such as a remote stream, fails the read
 * at the end with -EBADMSG instead of reporting success). */
#pragma once

#include <sys/types.h>

#include <kiln/castore/castore.h>

struct kiln_blob_service;
struct kiln_blob_reader;
struct kiln_blob_writer;
struct kiln_directory_service;
struct kiln_directory_stream;
struct kiln_directory_putter;

/* One chunk of a blob: its digest and length. */
struct kiln_chunk {
        struct kiln_digest digest;
        uint64_t size;
};

/* --- blob service --- */

/* Creates a blob service from a URL: memory://,
 * objectstore+file:///abs/path, objectstore+memory://, grpc+unix:///abs/path,
 * grpc+http://host:port, grpc+https://host:port. -EINVAL with a message naming
 * what is wrong with the URL. */
KILN_PUBLIC int kiln_blob_service_open(const char *url, struct kiln_blob_service **ret,
                                       struct kiln_error **err);
KILN_PUBLIC void kiln_blob_service_free(struct kiln_blob_service *s);
DEFINE_CLEANUP_FUNC(struct kiln_blob_service, kiln_blob_service_free)
/* Short backend name for messages ("memory", "objectstore", "grpc"). */
KILN_PUBLIC const char *kiln_blob_service_name(const struct kiln_blob_service *s);

/* 1 if stored (on chunking stores also for a chunk's own digest), 0 if not. */
KILN_PUBLIC int kiln_blob_has(struct kiln_blob_service *s, const struct kiln_digest *d,
                              struct kiln_error **err);
/* Opens a seekable reader; 0 (and *ret untouched) when absent. */
KILN_PUBLIC int kiln_blob_open_read(struct kiln_blob_service *s, const struct kiln_digest *d,
                                    struct kiln_blob_reader **ret, struct kiln_error **err);
/* Opens a streaming writer; nothing is visible until close succeeds. */
KILN_PUBLIC int kiln_blob_open_write(struct kiln_blob_service *s, struct kiln_blob_writer **ret,
                                     struct kiln_error **err);
/* The chunk list: 1 with *ret (caller frees; may be an empty list meaning "no
 * finer chunking"), 0 when the blob is absent. */
KILN_PUBLIC int kiln_blob_chunks(struct kiln_blob_service *s, const struct kiln_digest *d,
                                 struct kiln_chunk **ret, size_t *ret_n,
                                 struct kiln_error **err);

/* kiln_blob_reader_size() of a reader whose length is not known before the
 * end of the data (a remote blob from a server that does not announce it);
 * it becomes the real length once the end has been read. Such a reader
 * cannot seek from the end (-ENOTSUP). */
#define KILN_BLOB_SIZE_UNKNOWN UINT64_MAX

/* Reads up to n bytes; returns the count, 0 at the end, or < 0. */
KILN_PUBLIC ssize_t kiln_blob_reader_read(struct kiln_blob_reader *r, void *buf, size_t n,
                                          struct kiln_error **err);
/* The same, without a copy where the reader holds the bytes already: *ret
 * points at them (at buf, or into the reader, valid until its next call). */
KILN_PUBLIC ssize_t kiln_blob_reader_read_view(struct kiln_blob_reader *r, void *buf, size_t n,
                                               const void **ret, struct kiln_error **err);
/* Seeks (SEEK_SET, SEEK_CUR, SEEK_END) as lseek does; *ret_pos (may be NULL)
 * gets the new position. -EINVAL "seeked beyond EOF" or "over/underflow while
 * seeking". */
KILN_PUBLIC int kiln_blob_reader_seek(struct kiln_blob_reader *r, int64_t offset, int whence,
                                      uint64_t *ret_pos, struct kiln_error **err);
/* Total length of the blob. */
KILN_PUBLIC uint64_t kiln_blob_reader_size(const struct kiln_blob_reader *r);
KILN_PUBLIC void kiln_blob_reader_free(struct kiln_blob_reader *r);
DEFINE_CLEANUP_FUNC(struct kiln_blob_reader, kiln_blob_reader_free)

KILN_PUBLIC int kiln_blob_writer_write(struct kiln_blob_writer *w, const void *p, size_t n,
                                       struct kiln_error **err);
/* Commits and returns the BLAKE3 digest of everything written. Closing again
 * returns the same digest; writing after close fails ("already closed"). */
KILN_PUBLIC int kiln_blob_writer_close(struct kiln_blob_writer *w, struct kiln_digest *ret,
                                       struct kiln_error **err);
/* Frees; an unclosed writer is aborted and leaves nothing behind. */
KILN_PUBLIC void kiln_blob_writer_free(struct kiln_blob_writer *w);
DEFINE_CLEANUP_FUNC(struct kiln_blob_writer, kiln_blob_writer_free)

/* Makes every blob written so far durable (one syncfs on the on-disk store,
 * whose writes are atomic but not fsynced one by one). Call it before
 * storing anything that refers to the blobs, such as their Directories. */
KILN_PUBLIC int kiln_blob_sync(struct kiln_blob_service *s, struct kiln_error **err);

/* Convenience: stores a buffer, returns its digest. */
KILN_PUBLIC int kiln_blob_put(struct kiln_blob_service *s, const void *p, size_t n,
                              struct kiln_digest *ret, struct kiln_error **err);
/* Convenience: reads a whole blob into *ret. 0 when absent. */
KILN_PUBLIC int kiln_blob_get(struct kiln_blob_service *s, const struct kiln_digest *d,
                              struct kiln_buf *ret, struct kiln_error **err);

/* --- directory service --- */

/* Creates a directory service from a URL: memory://,
 * lmdb:///abs/path, objectstore+file:///abs/path, objectstore+memory://,
 * grpc+…; redb://… is refused with a hint to use lmdb://. */
KILN_PUBLIC int kiln_directory_service_open(const char *url, struct kiln_directory_service **ret,
                                            struct kiln_error **err);
KILN_PUBLIC void kiln_directory_service_free(struct kiln_directory_service *s);
DEFINE_CLEANUP_FUNC(struct kiln_directory_service, kiln_directory_service_free)
KILN_PUBLIC const char *kiln_directory_service_name(const struct kiln_directory_service *s);

/* Fetches a Directory, verified against d and validated; 0 when absent. */
KILN_PUBLIC int kiln_directory_get(struct kiln_directory_service *s, const struct kiln_digest *d,
                                   struct kiln_directory *ret, struct kiln_error **err);
/* Stores one Directory; *ret_digest (may be NULL) gets its digest. */
KILN_PUBLIC int kiln_directory_put(struct kiln_directory_service *s,
                                   const struct kiln_directory *dir,
                                   struct kiln_digest *ret_digest, struct kiln_error **err);
/* Streams the closure of root, root first, each Directory after one that
 * refers to it, each once. A missing root gives an empty stream. */
KILN_PUBLIC int kiln_directory_get_recursive(struct kiln_directory_service *s,
                                             const struct kiln_digest *root,
                                             struct kiln_directory_stream **ret,
                                             struct kiln_error **err);
/* 1 with the next Directory (and its digest), 0 at the end, < 0 on failure
 * (e.g. -ENOENT "directory b3:… does not exist" for a missing descendant). */
KILN_PUBLIC int kiln_directory_stream_next(struct kiln_directory_stream *st,
                                           struct kiln_directory *ret,
                                           struct kiln_digest *ret_digest,
                                           struct kiln_error **err);
KILN_PUBLIC void kiln_directory_stream_free(struct kiln_directory_stream *st);
DEFINE_CLEANUP_FUNC(struct kiln_directory_stream, kiln_directory_stream_free)

/* Multi-put: Directories go in leaves to root; close validates the closure
 *, stores it and returns the root digest. Freeing an unclosed
 * putter stores nothing (stores may have kept already-valid parts). */
KILN_PUBLIC int kiln_directory_put_multiple_start(struct kiln_directory_service *s,
                                                  struct kiln_directory_putter **ret,
                                                  struct kiln_error **err);
KILN_PUBLIC int kiln_directory_putter_put(struct kiln_directory_putter *p,
                                          const struct kiln_directory *dir,
                                          struct kiln_error **err);
KILN_PUBLIC int kiln_directory_putter_close(struct kiln_directory_putter *p,
                                            struct kiln_digest *ret_root,
                                            struct kiln_error **err);
KILN_PUBLIC void kiln_directory_putter_free(struct kiln_directory_putter *p);
DEFINE_CLEANUP_FUNC(struct kiln_directory_putter, kiln_directory_putter_free)

/* --- the default store --- */

/* $KILN_HOME, else /var/lib/kiln for root, else $XDG_DATA_HOME/kiln (or
 * ~/.local/share/kiln). Heap string. */
KILN_PUBLIC char *kiln_home(void);
/* The default URLs: objectstore+file://$KILN_HOME/blobs and
 * lmdb://$KILN_HOME/directories. Heap strings. */
KILN_PUBLIC char *kiln_default_blob_url(void);
KILN_PUBLIC char *kiln_default_directory_url(void);
