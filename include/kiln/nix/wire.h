/* The framing of Nix's protocols (the daemon's worker protocol, `nix-store
 * --serve`): little-endian u64 numbers, and strings as a u64 length, the
 * bytes and zero padding to a multiple of 8. A connection buffers both
 * directions over a pair of file descriptors; while it waits to write, it
 * keeps reading what the peer sends, so neither side can block the other
 * on full pipes. One thread at a time. */
#pragma once

#include <kiln/util/util.h>
#include <kiln/util/error.h>

struct kiln_nix_conn {
        int in_fd, out_fd;
        uint8_t *rbuf;
        size_t rpos, rlen, rcap;
        uint8_t *wbuf;
        size_t wlen, wcap;
        const char *peer; /* for messages, e.g. "nix-daemon" */
};

KILN_PUBLIC void kiln_nix_conn_init(struct kiln_nix_conn *c, int in_fd, int out_fd,
                                    const char *peer);
/* Frees the buffers; the descriptors stay the caller's. */
KILN_PUBLIC void kiln_nix_conn_done(struct kiln_nix_conn *c);

/* Writers buffer; kiln_nix_flush() sends. Errors: -EPIPE when the peer is
 * gone, other -errno of write(2). */
KILN_PUBLIC void kiln_nix_write_u64(struct kiln_nix_conn *c, uint64_t v);
KILN_PUBLIC void kiln_nix_write_bytes(struct kiln_nix_conn *c, const void *p, size_t n);
KILN_PUBLIC void kiln_nix_write_string(struct kiln_nix_conn *c, const char *s);
/* Raw bytes, no length or padding (NAR frames, for instance). */
KILN_PUBLIC void kiln_nix_write_raw(struct kiln_nix_conn *c, const void *p, size_t n);
KILN_PUBLIC int kiln_nix_flush(struct kiln_nix_conn *c, struct kiln_error **err);

/* Readers: -EPIPE "<peer> closed the connection" at the end of input,
 * -EBADMSG for a string longer than max or non-zero padding. */
KILN_PUBLIC int kiln_nix_read_u64(struct kiln_nix_conn *c, uint64_t *ret,
                                  struct kiln_error **err);
/* A string as a heap copy with a NUL after it (*ret_len may be NULL); a
 * string holding NUL fails with -EBADMSG. */
KILN_PUBLIC int kiln_nix_read_string(struct kiln_nix_conn *c, size_t max, char **ret,
                                     size_t *ret_len, struct kiln_error **err);
KILN_PUBLIC int kiln_nix_read_raw(struct kiln_nix_conn *c, void *p, size_t n,
                                  struct kiln_error **err);
/* Reads a list of strings (u64 count, then each string). */
KILN_PUBLIC int kiln_nix_read_strings(struct kiln_nix_conn *c, size_t max_count, size_t max_len,
                                      struct kiln_strv *ret, struct kiln_error **err);
