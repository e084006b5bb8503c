/* A client of Nix's worker protocol, spoken with `nix-daemon --stdio` (Nix's
 * own daemon, started as a child: as root it opens the local store itself,
 * otherwise it forwards to the system's daemon). kiln uses it to read path
 * information from the Nix store and to add paths to it with their full
 * metadata (NAR hash and size, references, deriver, content address), as
 * Nix's tools do. Protocol 1.25; one thread at a time per connection. */
#pragma once

#include <kiln/nix/hash.h>
#include <kiln/nix/nar.h>
#include <kiln/nix/store_path.h>
#include <kiln/nix/wire.h>

struct kiln_nix_daemon;

/* Starts `<program> --stdio` (program: NULL for "nix-daemon" from PATH) and
 * shakes hands. -ENOENT "cannot run nix-daemon: …", -EPROTO for a daemon
 * that speaks another protocol. */
KILN_PUBLIC int kiln_nix_daemon_open(const char *program, struct kiln_nix_daemon **ret,
                                     struct kiln_error **err);
/* Closes the connection and reaps the daemon. */
KILN_PUBLIC void kiln_nix_daemon_close(struct kiln_nix_daemon *d);
DEFINE_CLEANUP_FUNC(struct kiln_nix_daemon, kiln_nix_daemon_close)

/* What Nix knows of a valid store path. */
struct kiln_nix_path_info {
        char *path;              /* absolute */
        char *deriver;           /* absolute, or NULL */
        struct kiln_nix_hash nar_hash; /* SHA-256 */
        uint64_t nar_size;
        struct kiln_strv references; /* absolute, sorted */
        uint64_t registration_time;
        bool ultimate;
        struct kiln_strv sigs;
        char *ca; /* "fixed:r:sha256:…", "text:sha256:…", or NULL */
};
KILN_PUBLIC void kiln_nix_path_info_done(struct kiln_nix_path_info *i);

/* 1 and *ret filled when path is valid, 0 when it is not. */
KILN_PUBLIC int kiln_nix_daemon_query_path_info(struct kiln_nix_daemon *d, const char *path,
                                                struct kiln_nix_path_info *ret,
                                                struct kiln_error **err);

/* Writes a NAR into sink (called once, from kiln_nix_daemon_add_nar). */
typedef int (*kiln_nix_nar_producer)(void *ctx, const struct kiln_nix_nar_sink *sink,
                                     struct kiln_error **err);

/* Adds info->path with its metadata, the NAR streamed from produce (Nix
 * checks it against info->nar_hash and nar_size). Signatures are not
 * checked (the daemon must trust us: root, or a trusted user). Nix's own
 * error message is returned as -EIO. */
KILN_PUBLIC int kiln_nix_daemon_add_nar(struct kiln_nix_daemon *d,
                                        const struct kiln_nix_path_info *info,
                                        kiln_nix_nar_producer produce, void *ctx,
                                        struct kiln_error **err);
